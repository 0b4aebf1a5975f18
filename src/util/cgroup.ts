/**
 * cgroup v2 directories: finding (or mounting) the cgroup2 hierarchy,
 * making and removing cgroups, running a command inside one, and telling
 * which cgroup a process is in.
 *
 * The rules, from the kernel's Documentation/admin-guide/cgroup-v2.rst:
 * - The v2 hierarchy is a filesystem of type `cgroup2`, mounted wherever the
 *   distribution chose: /sys/fs/cgroup (unified layout), /sys/fs/cgroup/unified
 *   (hybrid layout, v1 controllers beside it), or nowhere. Cilium mounts it at
 *   /run/cilium/cgroupv2 when it finds none; xlb mounts it at /run/xlb/cgroupv2.
 * - A cgroup is a directory: mkdir makes one, rmdir removes one that has no
 *   processes and no child cgroups.
 * - A process moves into a cgroup by writing its pid to that cgroup's
 *   `cgroup.procs`; its children are born where it is.
 * - `/proc/PID/cgroup` has one line `0::PATH` for the v2 hierarchy, PATH
 *   relative to the hierarchy's root (as the reader's cgroup namespace sees it).
 * - Writing `1` to `cgroup.kill` (Linux 5.14+) SIGKILLs every process of the
 *   cgroup and its descendants, new forks included; `cgroup.events` says
 *   `populated 0` once none is left (exited zombies do not count).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { waitFor } from './wait.js';

/** Where xlb mounts cgroup2 when the machine has no cgroup2 mount (Cilium: /run/cilium/cgroupv2). */
export const XLB_CGROUP2_MOUNT = '/run/xlb/cgroupv2';

/** One line of /proc/PID/mountinfo (man 5 proc), the fields xlb reads. */
export interface MountInfo {
  /** Field 4: the directory of the filesystem that is mounted here ("/" for a whole hierarchy). */
  root: string;
  /** Field 5: where it is mounted. */
  mountPoint: string;
  /** The field after the "-" separator, e.g. `cgroup2`, `cgroup`, `tmpfs`. */
  fsType: string;
  /** The field after the type. */
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as three octal digits (`\040`). */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * Parse /proc/PID/mountinfo text. Lines that do not have the format
 * (fewer than 10 fields, no "-" separator) are skipped.
 */
export function parseMountinfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    // Fields 7.. are optional tags, ended by a lone "-".
    const sep = f.indexOf('-', 6);
    if (f.length < 10 || sep < 0 || sep + 2 >= f.length) continue;
    out.push({ root: unescapeMountField(f[3]), mountPoint: unescapeMountField(f[4]), fsType: f[sep + 1], source: unescapeMountField(f[sep + 2]) });
  }
  return out;
}

/**
 * The mount point of the whole cgroup2 hierarchy (a `cgroup2` mount whose
 * root is "/"), the first such mount listed; null when there is none.
 * @param mountinfo mountinfo text; default: this process's /proc/self/mountinfo
 */
export function findCgroup2Mount(mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8')): string | null {
  return parseMountinfo(mountinfo).find((m) => m.fsType === 'cgroup2' && m.root === '/')?.mountPoint ?? null;
}

/**
 * The root of the cgroup2 hierarchy: where it is mounted, or (as Cilium does
 * when none is mounted) a new cgroup2 mount at {@link XLB_CGROUP2_MOUNT}.
 * Needs root (CAP_SYS_ADMIN) only when it has to mount.
 * @returns an absolute directory, e.g. `/sys/fs/cgroup` or `/sys/fs/cgroup/unified`
 * @throws Error when no cgroup2 is mounted and mounting one fails (the kernel lacks cgroup2, or no privilege)
 */
export function ensureCgroup2Root(): string {
  const found = findCgroup2Mount();
  if (found) return found;
  fs.mkdirSync(XLB_CGROUP2_MOUNT, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'cgroup2', 'none', XLB_CGROUP2_MOUNT], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const why = String((e as { stderr?: Buffer }).stderr ?? '').trim() || (e as Error).message;
    throw new Error(`no cgroup2 hierarchy is mounted and mounting one at ${XLB_CGROUP2_MOUNT} failed: ${why}`);
  }
  return XLB_CGROUP2_MOUNT;
}

/** True when `dir` is a cgroup2 directory (it has the interface file every cgroup has). */
export function isCgroup(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'cgroup.procs')) && fs.existsSync(path.join(dir, 'cgroup.events'));
}

/**
 * Make cgroup `dir` and any missing parents (mkdir -p); nothing when it exists.
 * @param dir absolute path inside a cgroup2 mount
 * @throws Error naming `dir` when it is not inside a cgroup2 hierarchy or mkdir fails
 */
export function createCgroup(dir: string): void {
  if (!path.isAbsolute(dir)) throw new Error(`cgroup ${dir}: not an absolute path`);
  fs.mkdirSync(dir, { recursive: true });
  // The cgroup filesystem fills a new directory with its interface files at mkdir.
  if (!isCgroup(dir)) throw new Error(`cgroup ${dir}: not inside a cgroup2 hierarchy (no cgroup.procs after mkdir)`);
}

/** Pids (thread-group IDs) of the processes directly in cgroup `dir` (not its children). */
export function cgroupProcs(dir: string): number[] {
  return fs
    .readFileSync(path.join(dir, 'cgroup.procs'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map(Number);
}

/** `dir` and every cgroup below it, parents before children. */
function cgroupTree(dir: string): string[] {
  const out = [dir];
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  for (const e of entries) if (e.isDirectory()) out.push(...cgroupTree(path.join(dir, e.name)));
  return out;
}

/** Pids in `dir` and below; a cgroup that vanished meanwhile counts as empty. */
function subtreeProcs(dir: string): number[] {
  return cgroupTree(dir).flatMap((d) => {
    try {
      return cgroupProcs(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  });
}

/** Whether anything runs in `dir` or below (`populated` of cgroup.events); false when it is gone. */
function populated(dir: string): boolean {
  try {
    return /^populated 1$/m.test(fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** Options of {@link removeCgroup}. */
export interface RemoveCgroupOptions {
  /** How long to wait for the processes to die and the directories to go (ms). Default 5000. */
  timeoutMs?: number;
  /**
   * Kill through `cgroup.kill` when the kernel has it (default true); false
   * sends SIGKILL to each listed process, round after round, as kernels
   * before 5.14 need.
   */
  useCgroupKill?: boolean;
}

/**
 * Remove cgroup `dir` and every cgroup below it: its processes are killed
 * first (SIGKILL), except the calling process itself, which is moved to the
 * hierarchy's root; then the directories are removed, deepest first.
 * Returns at once when `dir` does not exist; a process or cgroup that goes
 * away meanwhile is fine.
 * @throws Error naming `dir` when it is a cgroup2 mount point (never removed), is not a cgroup,
 *   or processes are still alive / a directory is still busy after `timeoutMs`
 */
export async function removeCgroup(dir: string, opts: RemoveCgroupOptions = {}): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  dir = path.resolve(dir);
  if (!fs.existsSync(dir)) return;
  const mounts = parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8')).filter((m) => m.fsType === 'cgroup2');
  if (mounts.some((m) => path.resolve(m.mountPoint) === dir)) throw new Error(`cgroup ${dir}: is a cgroup2 mount point, refusing to remove it`);
  if (!isCgroup(dir)) throw new Error(`cgroup ${dir}: not a cgroup2 directory, refusing to remove it`);

  // Never kill ourselves: move this process to the root of the hierarchy `dir` is in.
  if (subtreeProcs(dir).includes(process.pid)) {
    const mount = mounts.map((m) => path.resolve(m.mountPoint)).find((m) => dir.startsWith(`${m}/`));
    if (!mount) throw new Error(`cgroup ${dir}: holds this process and no cgroup2 mount above it was found to move it to`);
    fs.writeFileSync(path.join(mount, 'cgroup.procs'), String(process.pid));
  }

  const killFile = path.join(dir, 'cgroup.kill');
  const useKill = opts.useCgroupKill !== false && fs.existsSync(killFile);
  const killRound = () => {
    if (useKill) {
      try {
        fs.writeFileSync(killFile, '1');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      return;
    }
    for (const pid of subtreeProcs(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  };
  try {
    await waitFor(
      () => {
        if (!populated(dir)) return true;
        // A process may fork between listing and killing: kill again until none is left.
        killRound();
        return false;
      },
      timeoutMs,
      `the processes of cgroup ${dir} to die`,
      20,
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}; still there: ${subtreeProcs(dir).join(' ') || '(none listed)'}`);
  }

  // Deepest first; a dying task can keep a cgroup busy for a moment after populated drops.
  const dirs = cgroupTree(dir).reverse();
  for (const d of dirs) {
    await waitFor(
      () => {
        try {
          fs.rmdirSync(d);
          return true;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') return true;
          if (code === 'EBUSY') return false;
          throw e;
        }
      },
      timeoutMs,
      `cgroup ${d} to be removed`,
      20,
    );
  }
}

/**
 * The argv that runs `argv` inside cgroup `dir`: a shell writes its own pid
 * into `dir/cgroup.procs` and then execs `argv` (same process, so the command
 * and everything it starts are in the cgroup from their first instruction).
 * When the write fails, the command does not run and the shell exits non-zero.
 * Run the result with the caller's own means (execFile, spawn, spawnSync).
 * @param dir a cgroup directory; `argv` is passed as separate words, never through a shell's parsing
 * @returns `['sh', '-c', SCRIPT, 'sh', dir, ...argv]`
 */
export function cgroupExecArgv(dir: string, argv: string[]): string[] {
  if (!argv.length) throw new Error('cgroupExecArgv: empty command');
  return ['sh', '-c', 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', 'sh', dir, ...argv];
}

/**
 * The v2 cgroup path of /proc/PID/cgroup text: the `0::PATH` line's PATH,
 * relative to the hierarchy's root (e.g. `/xlb-lab-1a2b/node1/n1p1`); null
 * when there is no such line (a v1-only machine).
 */
export function parseProcCgroup(text: string): string | null {
  for (const line of text.split('\n')) {
    if (line.startsWith('0::')) return line.slice(3).replace(/ \(deleted\)$/, '');
  }
  return null;
}

/**
 * The directory of the cgroup that process `pid` is in, in the v2 hierarchy:
 * its /proc/PID/cgroup `0::` path joined to the cgroup2 mount.
 * @param mountinfo mountinfo text to find the mount in (default /proc/self/mountinfo)
 * @throws Error naming the pid when it does not exist, has no v2 cgroup, or no cgroup2 mount shows its cgroup
 */
export function cgroupOfPid(pid: number, mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8')): string {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch (e) {
    throw new Error(`pid ${pid}: cannot read /proc/${pid}/cgroup (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const rel = parseProcCgroup(text);
  if (rel === null) throw new Error(`pid ${pid}: no cgroup v2 line (0::) in /proc/${pid}/cgroup`);
  const dir = cgroupDirOf(rel, parseMountinfo(mountinfo));
  if (!dir) throw new Error(`pid ${pid}: its cgroup ${rel} is under no cgroup2 mount of this process`);
  return dir;
}

/**
 * Join a v2 cgroup path (as /proc/PID/cgroup gives it) to the cgroup2 mount
 * that shows it: the mount whose root holds the path (a mount of the whole
 * hierarchy has root "/"). Null when no mount does.
 */
export function cgroupDirOf(cgroupPath: string, mounts: MountInfo[]): string | null {
  const candidates = mounts.filter((m) => m.fsType === 'cgroup2').sort((a, b) => a.root.length - b.root.length);
  for (const m of candidates) {
    // path.resolve: no trailing slash for the root cgroup ("/").
    if (m.root === '/') return path.resolve(m.mountPoint, `.${cgroupPath}`);
    if (cgroupPath === m.root || cgroupPath.startsWith(`${m.root}/`)) return path.resolve(m.mountPoint, `.${cgroupPath.slice(m.root.length)}`);
  }
  return null;
}
