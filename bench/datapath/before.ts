/**
 * The datapath as it was before new flows were made cheap (issue 20): its
 * XDP object is built from git at {@link BEFORE_COMMIT} so that
 * bench/datapath measures it in the same run, rig and wrapper as today's,
 * and reports today's figures as ratios to it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { repoRoot } from '../lib/paths.js';

/** The last commit with the two-insert new flow path (conntrack + reverse NAT LRUs, linear SNAT probing, a FIB lookup per packet). */
export const BEFORE_COMMIT = 'f98c5276d1';

/**
 * Build xlb_xdp.bpf.o of `commit` (its xdp/ tree from git, its own
 * Makefile) under the system's temporary directory, once per commit.
 * @returns the object's path
 * @throws Error when the repository has no such commit (a shallow clone) or the build fails
 */
export function buildBefore(commit = BEFORE_COMMIT): string {
  const dir = path.join(os.tmpdir(), `xlb-bench-before-${commit}`);
  const obj = path.join(dir, 'xdp/build/xlb_xdp.bpf.o');
  if (fs.existsSync(obj)) return obj;
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  try {
    const tar = execFileSync('git', ['-C', repoRoot, 'archive', commit, 'xdp'], { maxBuffer: 64 << 20 });
    execFileSync('tar', ['-x', '-C', dir], { input: tar });
    execFileSync('make', ['-s', '-C', path.join(dir, 'xdp'), 'build/xlb_xdp.bpf.o'], { stdio: ['ignore', 'ignore', 'inherit'] });
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`bench/datapath: cannot build the datapath of ${commit} (a shallow clone has no history: git fetch --unshallow): ${(e as Error).message.split('\n')[0]}`);
  }
  return obj;
}
