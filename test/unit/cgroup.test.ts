/**
 * cgroup v2 helpers without root: mountinfo and /proc/PID/cgroup parsing
 * (the layouts of man 5 proc and the kernel's cgroup-v2.rst), joining a
 * cgroup path to its mount, the run-in-cgroup wrapper against a plain
 * directory, and removeCgroup's refusals. Making, filling and removing real
 * cgroups needs root: test/e2e/lab-dns.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  cgroupDirOf,
  cgroupExecArgv,
  cgroupOfPid,
  findCgroup2Mount,
  parseMountinfo,
  parseProcCgroup,
  removeCgroup,
} from '../../src/util/cgroup.js';

/** A hybrid layout (v1 controllers and cgroup2 at /sys/fs/cgroup/unified), as on this project's CI machine. */
const HYBRID = `22 27 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;

/** A unified layout (systemd's default since v243), with optional fields before the separator. */
const UNIFIED = `25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
27 25 0:25 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:9 - bpf bpf rw,mode=700
`;

/** v1 only: no cgroup2 anywhere. */
const V1_ONLY = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
`;

test('mountinfo: fields 4 and 5, the type and source after the "-" separator, optional fields skipped', () => {
  const m = parseMountinfo(UNIFIED);
  assert.equal(m.length, 3);
  assert.deepEqual(m[1], { root: '/', mountPoint: '/sys/fs/cgroup', fsType: 'cgroup2', source: 'cgroup2' });
  assert.deepEqual(m[2], { root: '/', mountPoint: '/sys/fs/bpf', fsType: 'bpf', source: 'bpf' });
});

test('mountinfo: octal escapes in paths are undone; malformed lines are skipped', () => {
  const m = parseMountinfo('50 20 0:40 /a\\040b /mnt/my\\040cg\\134x rw - cgroup2 none rw\nnot a mountinfo line\n\n');
  assert.deepEqual(m, [{ root: '/a b', mountPoint: '/mnt/my cg\\x', fsType: 'cgroup2', source: 'none' }]);
});

test('the cgroup2 mount: /sys/fs/cgroup/unified on hybrid, /sys/fs/cgroup on unified, none on v1 only', () => {
  assert.equal(findCgroup2Mount(HYBRID), '/sys/fs/cgroup/unified');
  assert.equal(findCgroup2Mount(UNIFIED), '/sys/fs/cgroup');
  assert.equal(findCgroup2Mount(V1_ONLY), null);
});

test('the cgroup2 mount: a mount of a subtree (root not "/") is not the hierarchy root', () => {
  const bind = '60 20 0:38 /xlb-lab-1a2b /mnt/lab rw - cgroup2 cgroup2 rw\n';
  assert.equal(findCgroup2Mount(bind), null);
  assert.equal(findCgroup2Mount(bind + HYBRID), '/sys/fs/cgroup/unified');
});

test('this machine: the mount found is a cgroup2 directory', (t) => {
  const mount = findCgroup2Mount();
  if (!mount) return t.skip('no cgroup2 mounted here');
  assert.ok(fs.existsSync(path.join(mount, 'cgroup.procs')), `${mount}/cgroup.procs`);
});

test('/proc/PID/cgroup: the 0:: line, v1 lines ignored; none on v1 only', () => {
  assert.equal(parseProcCgroup('9:name=systemd:/\n4:memory:/x/y\n0::/xlb-lab-1a2b/node1/n1p1\n'), '/xlb-lab-1a2b/node1/n1p1');
  assert.equal(parseProcCgroup('0::/\n'), '/');
  assert.equal(parseProcCgroup('0::/gone (deleted)\n'), '/gone');
  assert.equal(parseProcCgroup('4:memory:/\n1:cpu:/\n'), null);
});

test('a cgroup path joins to the mount of the whole hierarchy, or to a subtree mount whose root holds it', () => {
  assert.equal(cgroupDirOf('/xlb-lab-1a2b/node1/host', parseMountinfo(HYBRID)), '/sys/fs/cgroup/unified/xlb-lab-1a2b/node1/host');
  assert.equal(cgroupDirOf('/', parseMountinfo(UNIFIED)), '/sys/fs/cgroup');
  const sub = parseMountinfo('60 20 0:38 /xlb-lab-1a2b /mnt/lab rw - cgroup2 cgroup2 rw\n');
  assert.equal(cgroupDirOf('/xlb-lab-1a2b/node2/n2p1', sub), '/mnt/lab/node2/n2p1');
  assert.equal(cgroupDirOf('/xlb-lab-1a2b', sub), '/mnt/lab');
  assert.equal(cgroupDirOf('/xlb-lab-1a2bc/node1', sub), null, 'a sibling with a longer name is not below the root');
  assert.equal(cgroupDirOf('/other', sub), null);
  assert.equal(cgroupDirOf('/x', parseMountinfo(V1_ONLY)), null);
});

test('cgroupOfPid: this process is where /proc/self/cgroup says', (t) => {
  const rel = parseProcCgroup(fs.readFileSync('/proc/self/cgroup', 'utf8'));
  const mount = findCgroup2Mount();
  if (rel === null || !mount) return t.skip('no cgroup2 here');
  assert.equal(cgroupOfPid(process.pid), path.join(mount, rel).replace(/(.)\/$/, '$1'));
  assert.ok(fs.existsSync(path.join(cgroupOfPid(process.pid), 'cgroup.procs')));
});

test('cgroupOfPid: a pid that does not exist is an error naming it', () => {
  // Above the largest pid_max the kernel allows (2^22).
  assert.throws(() => cgroupOfPid(5_000_000), /pid 5000000: cannot read \/proc\/5000000\/cgroup/);
});

test('the run-in-cgroup wrapper writes the pid of the process that then becomes the command', () => {
  // A plain directory stands in for the cgroup: its cgroup.procs is an ordinary file here.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-cg-'));
  try {
    const [cmd, ...args] = cgroupExecArgv(dir, ['sh', '-c', 'echo "$$ $1|$2"', 'inner', 'two words', `it's "quoted" $HOME`]);
    const out = execFileSync(cmd, args, { encoding: 'utf8' }).trim();
    const written = fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').trim();
    const [pid, rest] = [out.slice(0, out.indexOf(' ')), out.slice(out.indexOf(' ') + 1)];
    assert.equal(pid, written, 'exec kept the pid that joined the cgroup');
    assert.equal(rest, `two words|it's "quoted" $HOME`, 'arguments pass through unchanged, never re-parsed');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the run-in-cgroup wrapper does not run the command when joining fails', () => {
  const dir = path.join(os.tmpdir(), `xlb-cg-missing-${process.pid}`);
  const marker = path.join(os.tmpdir(), `xlb-cg-marker-${process.pid}`);
  const [cmd, ...args] = cgroupExecArgv(dir, ['touch', marker]);
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /cgroup\.procs/);
  assert.equal(fs.existsSync(marker), false, 'the command never ran');
});

test('the run-in-cgroup wrapper needs a command', () => {
  assert.throws(() => cgroupExecArgv('/sys/fs/cgroup/x', []), /empty command/);
});

test('removeCgroup: a directory that does not exist is already removed', async () => {
  await removeCgroup(path.join(os.tmpdir(), `xlb-cg-none-${process.pid}`, 'a', 'b'));
});

test('removeCgroup: refuses a directory that is not a cgroup, and leaves it', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-cg-'));
  try {
    await assert.rejects(removeCgroup(dir), new RegExp(`cgroup ${dir}: not a cgroup2 directory`));
    assert.ok(fs.existsSync(dir));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('removeCgroup: refuses the root of the cgroup2 hierarchy', async (t) => {
  const mount = findCgroup2Mount();
  if (!mount) return t.skip('no cgroup2 mounted here');
  await assert.rejects(removeCgroup(mount), /is a cgroup2 mount point, refusing/);
  await assert.rejects(removeCgroup(`${mount}/`), /is a cgroup2 mount point, refusing/);
  assert.ok(fs.existsSync(path.join(mount, 'cgroup.procs')));
});
