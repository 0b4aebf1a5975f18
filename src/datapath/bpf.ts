/**
 * libbpf (libbpf.so.1, the Debian package libbpf1) called through koffi: the
 * only place in xlb that talks to the kernel's BPF subsystem. Objects are
 * opened, configured (`const volatile` data, map sizes, pin root) and loaded
 * by libbpf; maps are read and written with libbpf's thin syscall wrappers;
 * XDP and tc programs are attached with bpf_xdp_attach and bpf_tc_attach.
 *
 * Error convention (libbpf >= 1.0): functions return a negative errno, or
 * NULL with errno set. Every failure here becomes a {@link BpfError} that
 * names the call, the object (map, program, file, interface) and the errno,
 * with libbpf's own log lines (e.g. the verifier log) attached.
 *
 * Source: libbpf API, https://libbpf.readthedocs.io/en/latest/api.html;
 * kernel Documentation/bpf/.
 */
import koffi from 'koffi';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

const lib = koffi.load('libbpf.so.1');
const libc = koffi.load('libc.so.6');

const bpf_object = koffi.opaque('bpf_object');
const bpf_map = koffi.opaque('bpf_map');
const bpf_program = koffi.opaque('bpf_program');

const OpenOpts = koffi.struct('bpf_object_open_opts', {
  sz: 'size_t',
  object_name: 'const char *',
  relaxed_maps: 'bool',
  pin_root_path: 'const char *',
  attach_prog_fd_stub: 'uint32_t',
  kconfig: 'const char *',
  btf_custom_path: 'const char *',
  kernel_log_buf: 'void *',
  kernel_log_size: 'size_t',
  kernel_log_level: 'uint32_t',
});

const TestRunOpts = koffi.struct('bpf_test_run_opts', {
  sz: 'size_t',
  data_in: 'void *',
  data_out: 'void *',
  data_size_in: 'uint32_t',
  data_size_out: 'uint32_t',
  ctx_in: 'void *',
  ctx_out: 'void *',
  ctx_size_in: 'uint32_t',
  ctx_size_out: 'uint32_t',
  retval: 'uint32_t',
  repeat: 'int',
  duration: 'uint32_t',
  flags: 'uint32_t',
  cpu: 'uint32_t',
  batch_size: 'uint32_t',
});

const MapCreateOpts = koffi.struct('bpf_map_create_opts', {
  sz: 'size_t',
  btf_fd: 'uint32_t',
  btf_key_type_id: 'uint32_t',
  btf_value_type_id: 'uint32_t',
  btf_vmlinux_value_type_id: 'uint32_t',
  inner_map_fd: 'uint32_t',
  map_flags: 'uint32_t',
  map_extra: 'uint64_t',
  numa_node: 'uint32_t',
  map_ifindex: 'uint32_t',
});

const BatchOpts = koffi.struct('bpf_map_batch_opts', {
  sz: 'size_t',
  elem_flags: 'uint64_t',
  flags: 'uint64_t',
});

const TcHook = koffi.struct('bpf_tc_hook', {
  sz: 'size_t',
  ifindex: 'int',
  attach_point: 'int',
  parent: 'uint32_t',
});

const TcOpts = koffi.struct('bpf_tc_opts', {
  sz: 'size_t',
  prog_fd: 'int',
  flags: 'uint32_t',
  prog_id: 'uint32_t',
  handle: 'uint32_t',
  priority: 'uint32_t',
});

const PrintFn = koffi.proto('int xlb_libbpf_print_fn(int level, const char *fmt, void *args)');
const SampleFn = koffi.proto('int xlb_ring_buffer_sample_fn(void *ctx, void *data, size_t size)');

const f = {
  open_file: lib.func('bpf_object *bpf_object__open_file(const char *path, const bpf_object_open_opts *opts)'),
  load: lib.func('int bpf_object__load(bpf_object *obj)'),
  close: lib.func('void bpf_object__close(bpf_object *obj)'),
  find_map: lib.func('bpf_map *bpf_object__find_map_by_name(const bpf_object *obj, const char *name)'),
  find_prog: lib.func('bpf_program *bpf_object__find_program_by_name(const bpf_object *obj, const char *name)'),
  next_map: lib.func('bpf_map *bpf_object__next_map(const bpf_object *obj, const bpf_map *map)'),
  map_name: lib.func('const char *bpf_map__name(const bpf_map *map)'),
  map_pin_path: lib.func('const char *bpf_map__pin_path(const bpf_map *map)'),
  map_fd: lib.func('int bpf_map__fd(const bpf_map *map)'),
  map_type: lib.func('int bpf_map__type(const bpf_map *map)'),
  map_key_size: lib.func('uint32_t bpf_map__key_size(const bpf_map *map)'),
  map_value_size: lib.func('uint32_t bpf_map__value_size(const bpf_map *map)'),
  map_max_entries: lib.func('uint32_t bpf_map__max_entries(const bpf_map *map)'),
  map_set_max_entries: lib.func('int bpf_map__set_max_entries(bpf_map *map, uint32_t max_entries)'),
  map_initial_value: lib.func('void *bpf_map__initial_value(bpf_map *map, _Out_ size_t *psize)'),
  map_set_initial_value: lib.func('int bpf_map__set_initial_value(bpf_map *map, const void *data, size_t size)'),
  map_reuse_fd: lib.func('int bpf_map__reuse_fd(bpf_map *map, int fd)'),
  prog_fd: lib.func('int bpf_program__fd(const bpf_program *prog)'),
  update_elem: lib.func('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
  // For calls on the thread pool: every pointer is a Buffer the caller
  // keeps alive until the call returns (no memory koffi marshals for it).
  update_batch_raw: lib.func('int bpf_map_update_batch(int fd, const void *keys, const void *values, void *count, const void *opts)'),
  lookup_elem: lib.func('int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
  delete_elem: lib.func('int bpf_map_delete_elem(int fd, const void *key)'),
  get_next_key: lib.func('int bpf_map_get_next_key(int fd, const void *key, void *next_key)'),
  update_batch: lib.func(
    'int bpf_map_update_batch(int fd, const void *keys, const void *values, _Inout_ uint32_t *count, const bpf_map_batch_opts *opts)',
  ),
  delete_batch: lib.func(
    'int bpf_map_delete_batch(int fd, const void *keys, _Inout_ uint32_t *count, const bpf_map_batch_opts *opts)',
  ),
  map_create: lib.func(
    'int bpf_map_create(int map_type, const char *name, uint32_t key_size, uint32_t value_size, uint32_t max_entries, const bpf_map_create_opts *opts)',
  ),
  obj_get: lib.func('int bpf_obj_get(const char *pathname)'),
  ring_buffer_new: lib.func('void *ring_buffer__new(int map_fd, xlb_ring_buffer_sample_fn *sample_cb, void *ctx, const void *opts)'),
  ring_buffer_consume: lib.func('int ring_buffer__consume(void *rb)'),
  ring_buffer_free: lib.func('void ring_buffer__free(void *rb)'),
  test_run: lib.func('int bpf_prog_test_run_opts(int prog_fd, _Inout_ bpf_test_run_opts *opts)'),
  xdp_attach: lib.func('int bpf_xdp_attach(int ifindex, int prog_fd, uint32_t flags, const void *opts)'),
  xdp_detach: lib.func('int bpf_xdp_detach(int ifindex, uint32_t flags, const void *opts)'),
  xdp_query_id: lib.func('int bpf_xdp_query_id(int ifindex, int flags, _Out_ uint32_t *prog_id)'),
  tc_hook_create: lib.func('int bpf_tc_hook_create(bpf_tc_hook *hook)'),
  tc_hook_destroy: lib.func('int bpf_tc_hook_destroy(bpf_tc_hook *hook)'),
  tc_attach: lib.func('int bpf_tc_attach(const bpf_tc_hook *hook, _Inout_ bpf_tc_opts *opts)'),
  tc_detach: lib.func('int bpf_tc_detach(const bpf_tc_hook *hook, const bpf_tc_opts *opts)'),
  num_cpus: lib.func('int libbpf_num_possible_cpus(void)'),
  set_print: lib.func('void *libbpf_set_print(xlb_libbpf_print_fn *fn)'),
  strerror: lib.func('int libbpf_strerror(int err, _Out_ char *buf, size_t size)'),
  vsnprintf: libc.func('int vsnprintf(_Out_ char *buf, size_t size, const char *fmt, void *args)'),
  close_fd: libc.func('int close(int fd)'),
  if_nametoindex: libc.func('unsigned int if_nametoindex(const char *ifname)'),
  mmap: libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)'),
  munmap: libc.func('int munmap(void *addr, size_t length)'),
  dup: libc.func('int dup(int fd)'),
  lookup_batch: lib.func(
    'int bpf_map_lookup_batch(int fd, const void *in_batch, _Out_ uint8_t *out_batch, _Out_ uint8_t *keys, _Out_ uint8_t *values, _Inout_ uint32_t *count, const bpf_map_batch_opts *opts)',
  ),
  map_set_pin_path: lib.func('int bpf_map__set_pin_path(bpf_map *map, const char *path)'),
  map_map_flags: lib.func('uint32_t bpf_map__map_flags(const bpf_map *map)'),
  obj_get_info: lib.func('int bpf_obj_get_info_by_fd(int fd, _Inout_ uint8_t *info, _Inout_ uint32_t *len)'),
  map_get_fd_by_id: lib.func('int bpf_map_get_fd_by_id(uint32_t id)'),
  obj_pin: lib.func('int bpf_obj_pin(int fd, const char *pathname)'),
  link_create: lib.func('int bpf_link_create(int prog_fd, int target_fd, int attach_type, const void *opts)'),
  link_update: lib.func('int bpf_link_update(int link_fd, int new_prog_fd, const void *opts)'),
  prog_attach: lib.func('int bpf_prog_attach(int prog_fd, int attachable_fd, int type, unsigned int flags)'),
  prog_detach2: lib.func('int bpf_prog_detach2(int prog_fd, int attachable_fd, int type)'),
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  getsockopt: libc.func('int getsockopt(int fd, int level, int name, _Out_ uint8_t *value, _Inout_ uint32_t *len)'),
  if_nameindex: libc.func('void *if_nameindex(void)'),
  if_freenameindex: libc.func('void if_freenameindex(void *ptr)'),
  sigfillset: libc.func('int sigfillset(_Out_ uint8_t *set)'),
  pthread_sigmask: libc.func('int pthread_sigmask(int how, const uint8_t *set, _Out_ uint8_t *oldset)'),
};

/** pthread_sigmask(3) `how` (asm-generic/signal-defs.h). */
const SIG_BLOCK = 0;
const SIG_SETMASK = 2;
/** glibc's sigset_t: 1,024 bits. */
const SIGSET_BYTES = 128;

/**
 * Run `fn` with every signal blocked on this thread. The verifier gives up
 * with EAGAIN when a signal is pending for the loading thread (kernel/bpf/
 * verifier.c checks signal_pending() as it goes), and libbpf retries only a
 * few times: a sampling profiler's SIGPROF every millisecond (node
 * --cpu-prof, node:inspector's Profiler) made every load of xlb_xdp fail
 * (measured), and any other signal (SIGCHLD of a child process, SIGTERM)
 * costs a retry. A blocked signal is not pending for signal_pending(); it
 * is delivered when the mask is restored (or to another thread of the
 * process meanwhile). SIGKILL and SIGSTOP cannot be blocked, and need not.
 */
function withSignalsBlocked<T>(fn: () => T): T {
  const all = Buffer.alloc(SIGSET_BYTES);
  const old = Buffer.alloc(SIGSET_BYTES);
  f.sigfillset(all);
  const blocked = f.pthread_sigmask(SIG_BLOCK, all, old) === 0;
  try {
    return fn();
  } finally {
    if (blocked) f.pthread_sigmask(SIG_SETMASK, old, null);
  }
}

/** mmap(2) constants (asm-generic/mman-common.h): read and write, shared with the kernel. */
const PROT_READ_WRITE = 0x3;
const MAP_SHARED = 0x1;

/** BPF map types used by xlb (include/uapi/linux/bpf.h, enum bpf_map_type). */
export const BPF_MAP_TYPE = {
  HASH: 1,
  ARRAY: 2,
  PERCPU_ARRAY: 6,
  LRU_HASH: 9,
  ARRAY_OF_MAPS: 12,
  HASH_OF_MAPS: 13,
} as const;

/** Map update flags (include/uapi/linux/bpf.h). */
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;
/** Map creation flag: an array whose values user space may mmap (kernel 5.5). */
export const BPF_F_MMAPABLE = 0x400;

/** XDP attach flags (include/uapi/linux/if_link.h). */
export const XDP_FLAGS = { UPDATE_IF_NOEXIST: 1, SKB_MODE: 2, DRV_MODE: 4, HW_MODE: 8, REPLACE: 16 } as const;

/** XDP verdicts (enum xdp_action) and tc verdicts (TC_ACT_*). */
export const XDP = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3, REDIRECT: 4 } as const;
export const TC_ACT = { OK: 0, SHOT: 2, REDIRECT: 7 } as const;

/** libbpf's enum bpf_tc_attach_point. */
export const BPF_TC = { INGRESS: 1, EGRESS: 2 } as const;

/** A failed libbpf call. `errno` is positive (e.g. 2 for ENOENT). */
export class BpfError extends Error {
  readonly errno: number;
  readonly log: string[];
  constructor(what: string, errno: number, log: string[] = []) {
    const buf = Buffer.alloc(256);
    f.strerror(-errno, buf, buf.length);
    const reason = buf.toString('utf8', 0, buf.indexOf(0) >= 0 ? buf.indexOf(0) : undefined);
    const tail = log.length ? `\n${log.slice(-40).join('')}` : '';
    super(`${what}: ${reason} (errno ${errno})${tail}`);
    this.name = 'BpfError';
    this.errno = errno;
    this.log = log;
  }
}

// libbpf reports warnings and verifier logs through a print callback; collect
// them so that an error carries them instead of losing them on stderr.
let captured: string[] = [];
const printBuf = Buffer.alloc(8192);
const printCallback = koffi.register((level: number, fmt: string, args: unknown) => {
  const n = f.vsnprintf(printBuf, printBuf.length, fmt, args);
  const line = printBuf.toString('utf8', 0, Math.max(0, Math.min(n, printBuf.length - 1)));
  captured.push(level === 0 ? `warn: ${line}` : line);
  if (captured.length > 2000) captured = captured.slice(-1000);
  return 0;
}, koffi.pointer(PrintFn));
f.set_print(printCallback);

function drainLog(): string[] {
  const out = captured;
  captured = [];
  return out;
}

function check(rc: number, what: string): number {
  if (rc < 0) throw new BpfError(what, -rc, drainLog());
  return rc;
}

/** Number of possible CPUs: the number of values of a per-CPU map entry. */
export const possibleCpus: number = check(f.num_cpus(), 'libbpf_num_possible_cpus');

/** Interface index of `name` in the calling thread's network namespace; throws if absent. */
export function ifIndex(name: string): number {
  const idx = f.if_nametoindex(name);
  if (!idx) throw new Error(`interface ${name}: not found in this network namespace`);
  return idx;
}

/** Options for {@link BpfObject.open}. */
export interface OpenOptions {
  /** Directory for LIBBPF_PIN_BY_NAME maps; created if missing. Maps already pinned there are reused. */
  pinRoot?: string;
  /** `const volatile` globals by name: numbers (sized by BTF), bigints or raw Buffers. */
  rodata?: Record<string, number | bigint | Buffer>;
  /** max_entries overrides, by map name, applied before load. */
  maxEntries?: Record<string, number>;
}

/** Where each `const volatile` global sits in .rodata, from the object's BTF. */
export type RodataLayout = Record<string, { offset: number; size: number }>;

/**
 * A BPF map: a libbpf-owned one inside a loaded object, or a standalone one
 * from {@link BpfMap.createArray} / {@link BpfMap.fromPin} (closed with close()).
 * Keys and values are raw Buffers in the C layout (see codec.ts).
 */
export class BpfMap {
  private readonly owned: boolean;
  private constructor(
    readonly name: string,
    readonly fd: number,
    readonly type: number,
    readonly keySize: number,
    readonly valueSize: number,
    readonly maxEntries: number,
    owned: boolean,
  ) {
    this.owned = owned;
  }

  /** @internal wraps a libbpf `struct bpf_map *` of a loaded object. */
  static fromLibbpf(ptr: unknown): BpfMap {
    return new BpfMap(
      f.map_name(ptr),
      f.map_fd(ptr),
      f.map_type(ptr),
      f.map_key_size(ptr),
      f.map_value_size(ptr),
      f.map_max_entries(ptr),
      false,
    );
  }

  /**
   * Create a standalone ARRAY map (e.g. a Maglev slab).
   * @param opts.flags map_flags such as {@link BPF_F_MMAPABLE}
   * @throws BpfError naming the map
   */
  static createArray(opts: { name: string; keySize?: number; valueSize: number; maxEntries: number; flags?: number }): BpfMap {
    return BpfMap.create({ ...opts, type: BPF_MAP_TYPE.ARRAY, keySize: opts.keySize ?? 4 });
  }

  /**
   * Create a standalone map of any type (`type`: BPF_MAP_TYPE_*).
   * @throws BpfError naming the map
   */
  static create(opts: { type: number; name: string; keySize: number; valueSize: number; maxEntries: number; flags?: number }): BpfMap {
    const co = { sz: koffi.sizeof(MapCreateOpts), map_flags: opts.flags ?? 0 };
    const fd = check(
      f.map_create(opts.type, opts.name.slice(0, 15), opts.keySize, opts.valueSize, opts.maxEntries, co),
      `bpf_map_create ${opts.name} (${opts.maxEntries} entries)`,
    );
    return new BpfMap(opts.name, fd, opts.type, opts.keySize, opts.valueSize, opts.maxEntries, true);
  }

  /** Open a pinned map by path; sizes are those the caller expects (checked by the kernel on use). */
  static fromPin(path: string, keySize: number, valueSize: number): BpfMap {
    const fd = check(f.obj_get(path), `bpf_obj_get ${path}`);
    return new BpfMap(path, fd, -1, keySize, valueSize, -1, true);
  }

  /**
   * Open a pinned map by path with its real type and sizes (the kernel's
   * bpf_map_info), owned by the caller.
   * @throws BpfError naming the path when it is not a pinned map
   */
  static openPinned(path: string): BpfMap {
    const fd = check(f.obj_get(path), `bpf_obj_get ${path}`);
    try {
      const i = mapInfo(fd);
      return new BpfMap(path, fd, i.type, i.keySize, i.valueSize, i.maxEntries, true);
    } catch (e) {
      f.close_fd(fd);
      throw e;
    }
  }


  /** Pin this map at `path` (bpffs; an existing pin there is replaced). @throws BpfError naming the path */
  pin(path: string): void {
    fs.rmSync(path, { force: true });
    check(f.obj_pin(this.fd, path), `bpf_obj_pin ${path}`);
  }

  /** Close a standalone map's fd (libbpf closes object maps itself). */
  close(): void {
    if (this.owned) f.close_fd(this.fd);
  }

  /** True when values are per CPU (one value per possible CPU). */
  get perCpu(): boolean {
    return this.type === BPF_MAP_TYPE.PERCPU_ARRAY;
  }

  /** @throws Error naming the map when `keys` and `values` are not `count` entries each */
  private checkBatch(keys: Buffer, values: Buffer, count: number): void {
    // Per-CPU maps take one 8-byte aligned value per possible CPU for each key.
    const valueBytes = this.perCpu ? Math.ceil(this.valueSize / 8) * 8 * possibleCpus : this.valueSize;
    if (keys.length !== count * this.keySize || values.length !== count * valueBytes)
      throw new Error(`map ${this.name}: batch of ${count} needs ${count * this.keySize}/${count * valueBytes} key/value bytes`);
  }

  private checkKey(key: Buffer): void {
    if (key.length !== this.keySize) throw new Error(`map ${this.name}: key is ${key.length} bytes, map wants ${this.keySize}`);
  }

  /** Insert or replace one entry. @param flags BPF_ANY, BPF_NOEXIST or BPF_EXIST */
  update(key: Buffer, value: Buffer, flags: number = BPF_ANY): void {
    this.checkKey(key);
    const want = this.perCpu ? this.valueSize * possibleCpus : this.valueSize;
    if (value.length !== want) throw new Error(`map ${this.name}: value is ${value.length} bytes, map wants ${want}`);
    check(f.update_elem(this.fd, key, value, flags), `bpf_map_update_elem ${this.name}`);
  }

  /** The value at `key`, or undefined when absent. Per-CPU maps: all CPUs' values concatenated. */
  lookup(key: Buffer): Buffer | undefined {
    this.checkKey(key);
    const out = Buffer.alloc(this.perCpu ? this.valueSize * possibleCpus : this.valueSize);
    const rc = f.lookup_elem(this.fd, key, out);
    if (rc === -2) return undefined; // ENOENT
    check(rc, `bpf_map_lookup_elem ${this.name}`);
    return out;
  }

  /** A per-CPU map's value at `key`, split into one Buffer per possible CPU. */
  lookupPerCpu(key: Buffer): Buffer[] {
    const all = this.lookup(key);
    if (!all) return [];
    const out: Buffer[] = [];
    // Per-CPU values are laid out with each CPU's slot rounded up to 8 bytes.
    const stride = Math.ceil(this.valueSize / 8) * 8;
    for (let cpu = 0; cpu < possibleCpus; cpu++) out.push(all.subarray(cpu * stride, cpu * stride + this.valueSize));
    return out;
  }

  /** Delete one entry; false when it was not there. */
  delete(key: Buffer): boolean {
    this.checkKey(key);
    const rc = f.delete_elem(this.fd, key);
    if (rc === -2) return false;
    check(rc, `bpf_map_delete_elem ${this.name}`);
    return true;
  }

  /**
   * Write `count` entries in one syscall (BPF_MAP_UPDATE_BATCH).
   * @param keys `count` keys back to back; @param values `count` values back to back
   */
  updateBatch(keys: Buffer, values: Buffer, count: number, elemFlags = 0): void {
    if (count === 0) return;
    this.checkBatch(keys, values, count);
    const n = [count];
    check(
      f.update_batch(this.fd, keys, values, n, { sz: koffi.sizeof(BatchOpts), elem_flags: elemFlags, flags: 0 }),
      `bpf_map_update_batch ${this.name} (${count} entries)`,
    );
  }

  /**
   * Map the first `len` bytes of an mmapable array map's values (entry i's value
   * at byte i x round_up(valueSize, 8)) until `unmap()`: for a map written often,
   * such as the Maglev slabs. What is written through `view`, programs see
   * at once. The mapping holds its own reference to the map, so it outlives
   * this fd; touching `view` after `unmap()` crashes the process.
   * @throws Error naming the map when `len` exceeds it or it cannot be mapped
   */
  mmap(len: number): { view: ArrayBuffer; unmap(): void } {
    if (len > this.maxEntries * Math.ceil(this.valueSize / 8) * 8) throw new Error(`map ${this.name}: ${len} bytes exceed its ${this.maxEntries} slots`);
    const p = f.mmap(null, len, PROT_READ_WRITE, MAP_SHARED, this.fd, 0);
    if (!p || koffi.address(p) === 0xffffffffffffffffn) throw new BpfError(`mmap of map ${this.name}`, koffi.errno());
    let mapped = true;
    return {
      view: koffi.view(p, len),
      unmap: () => {
        if (mapped) f.munmap(p, len);
        mapped = false;
      },
    };
  }

  /** A second fd of this map (dup(2)), owned by the caller and closed with close(). */
  dup(): BpfMap {
    const fd = f.dup(this.fd);
    if (fd < 0) throw new BpfError(`dup of map ${this.name}`, koffi.errno());
    return new BpfMap(this.name, fd, this.type, this.keySize, this.valueSize, this.maxEntries, true);
  }

  /**
   * {@link update} on a thread of libuv's pool, for updates that block: one
   * of a map-in-map waits for an RCU grace period (the kernel's
   * maybe_wait_bpf_programs). `done` gets null or the BpfError. The fd must
   * stay open until then.
   */
  updateAsync(key: Buffer, value: Buffer, done: (err: Error | null) => void, flags: number = BPF_ANY): void {
    this.checkKey(key);
    f.update_elem.async(this.fd, key, value, flags, (err: unknown, rc: number) => {
      void [key, value]; // alive until the call has returned
      if (err) return done(err instanceof Error ? err : new Error(String(err)));
      done(rc < 0 ? new BpfError(`bpf_map_update_elem ${this.name}`, -rc) : null);
    });
  }

  /**
   * {@link updateBatch} on a thread of libuv's pool (see {@link updateAsync}:
   * one update of a map-in-map, one grace period for all its entries).
   * `keys` and `values` must not change until `done`; so must the fd.
   */
  updateBatchAsync(keys: Buffer, values: Buffer, count: number, done: (err: Error | null) => void): void {
    this.checkBatch(keys, values, count);
    const n = Buffer.alloc(4);
    n.writeUInt32LE(count);
    const opts = Buffer.alloc(koffi.sizeof(BatchOpts)); // elem_flags and flags 0
    opts.writeBigUInt64LE(BigInt(opts.length), 0);
    f.update_batch_raw.async(this.fd, keys, values, n, opts, (err: unknown, rc: number) => {
      // The buffers are referenced here, so they live until the call has returned.
      void [keys, values, n, opts];
      if (err) return done(err instanceof Error ? err : new Error(String(err)));
      done(rc < 0 ? new BpfError(`bpf_map_update_batch ${this.name} (${count} entries)`, -rc) : null);
    });
  }

  /** Delete `count` keys in one syscall; ENOENT for any key fails the batch, so only pass present keys. */
  deleteBatch(keys: Buffer, count: number): void {
    if (count === 0) return;
    const n = [count];
    check(f.delete_batch(this.fd, keys, n, { sz: koffi.sizeof(BatchOpts), elem_flags: 0, flags: 0 }), `bpf_map_delete_batch ${this.name}`);
  }

  /**
   * Every value of an ARRAY map, back to back (entry i at i x valueSize),
   * read with BPF_MAP_LOOKUP_BATCH: one syscall for the whole map, where a
   * lookup per entry would take 262,144 for xlb_backends.
   */
  lookupArray(): Buffer {
    const n = this.maxEntries;
    const keys = Buffer.alloc(4 * n);
    const values = Buffer.alloc(this.valueSize * n);
    const count = [n];
    const rc = f.lookup_batch(this.fd, null, Buffer.alloc(4), keys, values, count, { sz: koffi.sizeof(BatchOpts), elem_flags: 0, flags: 0 });
    // ENOENT: the end of the map was reached (every entry read).
    if (rc < 0 && rc !== -2) check(rc, `bpf_map_lookup_batch ${this.name}`);
    if (count[0] !== n) throw new Error(`bpf_map_lookup_batch ${this.name}: read ${count[0]} of ${n} entries`);
    return values;
  }

  /**
   * Every entry of a hash map (LRU included; not per-CPU ones), read with
   * BPF_MAP_LOOKUP_BATCH, `chunk` entries a syscall: a 131,072-entry
   * conntrack table in 32 syscalls instead of 262,144. Entries that come and
   * go while it reads may or may not be in the result, as with any walk.
   * @throws BpfError naming the map when the kernel refuses the read
   */
  entries(chunk = 4096): Array<{ key: Buffer; value: Buffer }> {
    const out: Array<{ key: Buffer; value: Buffer }> = [];
    const walk = this.batchWalk(chunk);
    for (;;) {
      // Fresh buffers each batch: the entries are views into them.
      const keys = Buffer.alloc(this.keySize * chunk);
      const values = Buffer.alloc(this.valueSize * chunk);
      const { count, done } = walk(keys, values);
      for (let i = 0; i < count; i++) {
        out.push({ key: keys.subarray(i * this.keySize, (i + 1) * this.keySize), value: values.subarray(i * this.valueSize, (i + 1) * this.valueSize) });
      }
      if (done) return out;
    }
  }

  /**
   * Walk a hash map (LRU included; not per-CPU ones) as {@link entries}
   * reads it, without an object per entry and without holding the event
   * loop: `visit` gets `count` keys and values back to back (entry i at
   * i x keySize and i x valueSize), and the next batch is read after
   * setImmediate. The buffers are reused by the next batch: copy what must
   * outlive the call. Entries that come and go during the walk may or may
   * not be seen. For counting a large table (a metric).
   * @returns resolves after the last batch; rejects with a BpfError naming
   *   the map when the kernel refuses a read
   */
  async scanBatches(visit: (keys: Buffer, values: Buffer, count: number) => void, chunk = 4096): Promise<void> {
    const walk = this.batchWalk(chunk);
    const keys = Buffer.alloc(this.keySize * chunk);
    const values = Buffer.alloc(this.valueSize * chunk);
    for (;;) {
      const { count, done } = walk(keys, values);
      if (count > 0) visit(keys, values, count);
      if (done) return;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /**
   * One BPF_MAP_LOOKUP_BATCH walk: each call reads the next batch of up to
   * `chunk` entries into `keys` and `values`; `done` once the end was reached.
   */
  private batchWalk(chunk: number): (keys: Buffer, values: Buffer) => { count: number; done: boolean } {
    let inBatch: Buffer | null = null;
    // The batch token of hash maps is a bucket number (4 bytes); room for a key either way.
    const outBatch = Buffer.alloc(Math.max(8, this.keySize));
    return (keys, values) => {
      const count = [chunk];
      const rc = f.lookup_batch(this.fd, inBatch, outBatch, keys, values, count, { sz: koffi.sizeof(BatchOpts), elem_flags: 0, flags: 0 });
      if (rc < 0 && rc !== -2) check(rc, `bpf_map_lookup_batch ${this.name}`);
      inBatch = Buffer.from(outBatch);
      // ENOENT: the end of the map was reached.
      return { count: count[0], done: rc === -2 };
    };
  }

  /** Every key currently in the map (hash maps) or every index (arrays). */
  keys(): Buffer[] {
    const out: Buffer[] = [];
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.keySize);
      const rc = f.get_next_key(this.fd, prev, next);
      if (rc === -2) break;
      check(rc, `bpf_map_get_next_key ${this.name}`);
      out.push(next);
      prev = next;
    }
    return out;
  }
}

/** What the kernel says of a map (struct bpf_map_info, the fields xlb reads). */
export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
}

/** bpf_obj_get_info_by_fd of map fd `fd`. @throws BpfError */
export function mapInfo(fd: number): MapInfo {
  const buf = Buffer.alloc(256);
  check(f.obj_get_info(fd, buf, [buf.length]), 'bpf_obj_get_info_by_fd (map)');
  // include/uapi/linux/bpf.h struct bpf_map_info: type, id, key_size,
  // value_size, max_entries, map_flags (u32 each), then char name[16].
  const name = buf.subarray(24, 40);
  const end = name.indexOf(0);
  return {
    type: buf.readUInt32LE(0),
    id: buf.readUInt32LE(4),
    keySize: buf.readUInt32LE(8),
    valueSize: buf.readUInt32LE(12),
    maxEntries: buf.readUInt32LE(16),
    flags: buf.readUInt32LE(20),
    name: name.toString('utf8', 0, end < 0 ? 16 : end),
  };
}

/**
 * A cgroup attachment through a pinned BPF link (kernel 5.7): it stays when
 * the agent exits (the pin holds it), and a restarted agent swaps the
 * program in it with one bpf_link_update, so that no socket ever goes
 * through the hook without a program. Removing the pin (and closing every
 * fd) detaches it.
 * @returns whether an existing link was updated (false: created and pinned)
 * @throws BpfError naming the cgroup, hook and pin
 */
export function attachCgroupLink(progFd: number, dir: string, hook: CgroupHook, pin: string): boolean {
  if (fs.existsSync(pin)) {
    const link = f.obj_get(pin);
    if (link >= 0) {
      try {
        const target = linkCgroupId(link);
        if (target === undefined || target === BigInt(fs.statSync(dir).ino)) {
          check(f.link_update(link, progFd, null), `bpf_link_update ${hook} of cgroup ${dir} (${pin})`);
          return true;
        }
      } finally {
        f.close_fd(link);
      }
    }
    // Another cgroup (the configuration changed) or not a link: detach it and make a new one.
    fs.rmSync(pin, { force: true });
  }
  const cg = openCgroup(dir);
  try {
    const link = check(f.link_create(progFd, cg, CGROUP_ATTACH_TYPE[hook], null), `bpf_link_create ${hook} on cgroup ${dir}`);
    try {
      fs.mkdirSync(path.dirname(pin), { recursive: true });
      check(f.obj_pin(link, pin), `bpf_obj_pin ${pin}`);
    } finally {
      f.close_fd(link);
    }
  } finally {
    fs.closeSync(cg);
  }
  return false;
}

/** The cgroup ID (its directory's inode) a cgroup link is attached to, or undefined when unknown. */
function linkCgroupId(linkFd: number): bigint | undefined {
  const buf = Buffer.alloc(128);
  if (f.obj_get_info(linkFd, buf, [buf.length]) < 0) return undefined;
  // struct bpf_link_info: type, id, prog_id (u32), then (8-byte aligned) the
  // union; for BPF_LINK_TYPE_CGROUP (3): __u64 cgroup_id, __u32 attach_type.
  if (buf.readUInt32LE(0) !== 3) return undefined;
  return buf.readBigUInt64LE(16);
}

/** A program of a loaded object. */
export class BpfProgram {
  constructor(
    readonly name: string,
    readonly fd: number,
  ) {}

  /** Pin this program at `path` (bpffs; an existing pin there is replaced). @throws BpfError naming the path */
  pin(path: string): void {
    fs.rmSync(path, { force: true });
    check(f.obj_pin(this.fd, path), `bpf_obj_pin ${path}`);
  }

  /**
   * Run the program on `packet` with BPF_PROG_TEST_RUN (kernel
   * Documentation/bpf/bpf_prog_run.rst). With `repeat` > 1 the kernel reuses
   * the same buffer: each run sees the previous run's rewrite.
   * @returns retval (XDP_* or TC_ACT_*), the output frame, and the kernel's
   *   average duration per run in ns.
   */
  testRun(packet: Buffer, opts: { repeat?: number; dataSizeOut?: number; ctxIn?: Buffer } = {}): {
    retval: number;
    dataOut: Buffer;
    durationNs: number;
  } {
    const out = Buffer.alloc(opts.dataSizeOut ?? packet.length + 256);
    const o = {
      sz: koffi.sizeof(TestRunOpts),
      data_in: packet,
      data_out: out,
      data_size_in: packet.length,
      data_size_out: out.length,
      ctx_in: opts.ctxIn ?? null,
      ctx_out: null,
      ctx_size_in: opts.ctxIn?.length ?? 0,
      ctx_size_out: 0,
      retval: 0,
      repeat: opts.repeat ?? 1,
      duration: 0,
      flags: 0,
      cpu: 0,
      batch_size: 0,
    };
    check(f.test_run(this.fd, o), `bpf_prog_test_run_opts ${this.name}`);
    return { retval: o.retval, dataOut: out.subarray(0, o.data_size_out), durationNs: o.duration };
  }
}

/**
 * A BPF object file opened, configured and loaded by libbpf.
 * Lifecycle: open() → (configure) → load() → program()/map() → close().
 */
export class BpfObject {
  private ptr: unknown;
  private loaded = false;
  private constructor(
    readonly path: string,
    ptr: unknown,
    readonly pinRoot: string | undefined,
  ) {
    this.ptr = ptr;
  }

  /**
   * Open `path` (a clang -target bpf object) and apply `opts` before load.
   * @throws BpfError naming the file, or Error naming an unknown map or global
   */
  static open(path: string, opts: OpenOptions = {}): BpfObject {
    if (!fs.existsSync(path)) throw new Error(`BPF object ${path}: file not found (run make -C xdp)`);
    if (opts.pinRoot) fs.mkdirSync(opts.pinRoot, { recursive: true });
    const oo = { sz: koffi.sizeof(OpenOpts), pin_root_path: opts.pinRoot ?? null };
    const ptr = f.open_file(path, oo);
    if (!ptr) throw new BpfError(`bpf_object__open_file ${path}`, koffi.errno(), drainLog());
    const obj = new BpfObject(path, ptr, opts.pinRoot);
    try {
      // Without a pin root libbpf pins by-name maps under /sys/fs/bpf itself,
      // where they outlive every test and collide between instances.
      if (!opts.pinRoot) {
        for (let m = f.next_map(ptr, null); m; m = f.next_map(ptr, m)) {
          if (f.map_pin_path(m)) throw new Error(`BPF object ${path}: map ${f.map_name(m)} is pinned by name; give a pinRoot (it would be pinned at ${f.map_pin_path(m)})`);
        }
      }
      for (const [name, n] of Object.entries(opts.maxEntries ?? {})) {
        check(f.map_set_max_entries(obj.mapPtr(name), n), `bpf_map__set_max_entries ${name}=${n}`);
      }
      if (opts.rodata && Object.keys(opts.rodata).length) obj.setRodata(opts.rodata);
    } catch (e) {
      obj.close();
      throw e;
    }
    return obj;
  }

  private mapPtr(name: string): unknown {
    const m = f.find_map(this.ptr, name);
    if (!m) throw new Error(`BPF object ${this.path}: no map named ${name}`);
    return m;
  }

  private setRodata(values: Record<string, number | bigint | Buffer>): void {
    const layout = rodataLayout(this.path);
    const m = this.mapPtr(findRodataMapName(this.ptr));
    const size = [0];
    const cur = f.map_initial_value(m, size);
    if (!cur) throw new Error(`BPF object ${this.path}: no .rodata to configure`);
    const data = Buffer.from(koffi.decode(cur, koffi.array('uint8_t', size[0])) as number[]);
    for (const [name, v] of Object.entries(values)) {
      const slot = layout[name];
      if (!slot) throw new Error(`BPF object ${this.path}: no const volatile global named ${name}`);
      if (Buffer.isBuffer(v)) {
        if (v.length !== slot.size) throw new Error(`${name}: ${v.length} bytes given, global has ${slot.size}`);
        v.copy(data, slot.offset);
      } else if (slot.size === 8) data.writeBigUInt64LE(BigInt(v), slot.offset);
      else if (slot.size === 4) data.writeUInt32LE(Number(v) >>> 0, slot.offset);
      else if (slot.size === 2) data.writeUInt16LE(Number(v), slot.offset);
      else if (slot.size === 1) data.writeUInt8(Number(v), slot.offset);
      else throw new Error(`${name}: cannot set a ${slot.size}-byte global from a number`);
    }
    check(f.map_set_initial_value(m, data, data.length), `bpf_map__set_initial_value .rodata of ${this.path}`);
  }

  /** Load every program and create (or reuse pinned) maps. @throws BpfError with the verifier log */
  load(): void {
    drainLog();
    check(
      withSignalsBlocked(() => f.load(this.ptr)),
      `bpf_object__load ${this.path}`,
    );
    this.loaded = true;
  }

  /** A loaded program by its C function name. */
  program(name: string): BpfProgram {
    if (!this.loaded) throw new Error(`BPF object ${this.path}: program(${name}) before load()`);
    const p = f.find_prog(this.ptr, name);
    if (!p) throw new Error(`BPF object ${this.path}: no program named ${name}`);
    return new BpfProgram(name, check(f.prog_fd(p), `bpf_program__fd ${name}`));
  }

  /**
   * The maps libbpf will pin (LIBBPF_PIN_BY_NAME), as the object defines
   * them, before load: name, type, sizes, flags and pin path.
   */
  pinnedMapDefs(): Array<{ name: string; type: number; keySize: number; valueSize: number; maxEntries: number; flags: number; pinPath: string }> {
    const out = [];
    for (let m = f.next_map(this.ptr, null); m; m = f.next_map(this.ptr, m)) {
      const pinPath: string | null = f.map_pin_path(m);
      if (!pinPath) continue;
      out.push({
        name: f.map_name(m) as string,
        type: f.map_type(m) as number,
        keySize: f.map_key_size(m) as number,
        valueSize: f.map_value_size(m) as number,
        maxEntries: f.map_max_entries(m) as number,
        flags: f.map_map_flags(m) as number,
        pinPath,
      });
    }
    return out;
  }

  /** Pin map `name` at `pinPath` instead (before load): libbpf reuses a compatible map pinned there, or creates and pins one. */
  setPinPath(name: string, pinPath: string): void {
    check(f.map_set_pin_path(this.mapPtr(name), pinPath), `bpf_map__set_pin_path ${name} ${pinPath}`);
  }

  /**
   * Use `map` (of another object, loaded) as this object's map `name`
   * (before load): the two objects' programs then share it, as with maps
   * that are not pinned (bpf_map__reuse_fd).
   */
  reuseMap(name: string, map: BpfMap): void {
    check(f.map_reuse_fd(this.mapPtr(name), map.fd), `bpf_map__reuse_fd ${name}`);
  }

  /** A map by name (after load it has an fd). */
  map(name: string): BpfMap {
    return BpfMap.fromLibbpf(this.mapPtr(name));
  }

  /** Every map of the object, by name (including .rodata/.bss internals). */
  maps(): BpfMap[] {
    const out: BpfMap[] = [];
    for (let m = f.next_map(this.ptr, null); m; m = f.next_map(this.ptr, m)) out.push(BpfMap.fromLibbpf(m));
    return out;
  }

  /** Free libbpf's object; programs stay attached where attached, pins stay. */
  close(): void {
    if (this.ptr) f.close(this.ptr);
    this.ptr = null;
  }
}

function findRodataMapName(objPtr: unknown): string {
  for (let m = f.next_map(objPtr, null); m; m = f.next_map(objPtr, m)) {
    const n: string = f.map_name(m);
    if (n.endsWith('.rodata')) return n;
  }
  throw new Error('no .rodata map');
}

const rodataCache = new Map<string, RodataLayout>();

/**
 * Offsets of the `const volatile` globals in the object's .rodata section,
 * read from its BTF DATASEC with bpftool (which must be installed).
 */
export function rodataLayout(objPath: string): RodataLayout {
  const cached = rodataCache.get(objPath);
  if (cached) return cached;
  const out = execBpftoolJson(['btf', 'dump', 'file', objPath, 'format', 'raw', '-j']) as {
    types: Array<{ id: number; kind: string; name: string; size?: number; type_id?: number; vars?: Array<{ type_id: number; offset: number; size: number }> }>;
  };
  const byId = new Map(out.types.map((t) => [t.id, t]));
  const layout: RodataLayout = {};
  for (const t of out.types) {
    if (t.kind !== 'DATASEC' || t.name !== '.rodata') continue;
    for (const v of t.vars ?? []) {
      const vt = byId.get(v.type_id);
      if (vt?.kind === 'VAR') layout[vt.name] = { offset: v.offset, size: v.size };
    }
  }
  const offsets = Object.values(layout).map((v) => v.offset);
  if (offsets.length > 1 && new Set(offsets).size === 1)
    throw new Error(`BPF object ${objPath}: .rodata BTF has every variable at offset 0; link it with \`bpftool gen object\` (make -C xdp does)`);
  rodataCache.set(objPath, layout);
  return layout;
}

function execBpftoolJson(args: string[]): unknown {
  return JSON.parse(execFileSync('bpftool', args, { encoding: 'utf8', maxBuffer: 64 << 20 }));
}

/** XDP attach mode. */
export type XdpMode = 'native' | 'generic';

/**
 * Attach an XDP program to `ifindex` (bpf_xdp_attach, netlink underneath),
 * replacing whatever xlb attached before.
 * @throws BpfError naming the interface and mode
 */
export function attachXdp(ifindex: number, ifname: string, progFd: number, mode: XdpMode): void {
  const flags = mode === 'native' ? XDP_FLAGS.DRV_MODE : XDP_FLAGS.SKB_MODE;
  check(f.xdp_attach(ifindex, progFd, flags, null), `bpf_xdp_attach ${ifname} (${mode})`);
}

/** Detach the XDP program of `ifindex` in `mode`; a missing program is not an error. */
export function detachXdp(ifindex: number, ifname: string, mode: XdpMode): void {
  const flags = mode === 'native' ? XDP_FLAGS.DRV_MODE : XDP_FLAGS.SKB_MODE;
  const rc = f.xdp_detach(ifindex, flags, null);
  if (rc < 0 && rc !== -2 && rc !== -19) check(rc, `bpf_xdp_detach ${ifname}`);
}

/**
 * The kernel ID of the program pinned at `path` (struct bpf_prog_info's
 * id), or undefined when nothing is pinned there. (Opening a program by its
 * ID, to read its name, would need CAP_SYS_ADMIN; a pin needs none.)
 */
export function pinnedProgramId(path: string): number | undefined {
  if (!fs.existsSync(path)) return undefined;
  const fd = f.obj_get(path);
  if (fd < 0) return undefined;
  try {
    const buf = Buffer.alloc(256);
    if (f.obj_get_info(fd, buf, [buf.length]) < 0) return undefined;
    return buf.readUInt32LE(4); // struct bpf_prog_info: type, id
  } finally {
    f.close_fd(fd);
  }
}

/** ID of the XDP program attached to `ifindex` in `mode` (0 when none). */
export function xdpProgramId(ifindex: number, mode: XdpMode): number {
  const id = [0];
  const rc = f.xdp_query_id(ifindex, mode === 'native' ? XDP_FLAGS.DRV_MODE : XDP_FLAGS.SKB_MODE, id);
  return rc < 0 ? 0 : id[0];
}

/** Handle and priority xlb uses for its tc filters, so it can find and replace them. */
const TC_HANDLE = 0x786c;
const TC_PRIORITY = 1;

/**
 * Attach a tc (cls_bpf, direct-action) program at `point` of `ifindex`,
 * creating the clsact qdisc if needed (bpf_tc_hook_create, bpf_tc_attach).
 * @returns whether the qdisc was created here (so detach can remove it)
 */
export function attachTc(ifindex: number, ifname: string, progFd: number, point: 'ingress' | 'egress'): boolean {
  const hook = { sz: koffi.sizeof(TcHook), ifindex, attach_point: point === 'ingress' ? BPF_TC.INGRESS : BPF_TC.EGRESS, parent: 0 };
  const rc = f.tc_hook_create(hook);
  if (rc < 0 && rc !== -17) check(rc, `bpf_tc_hook_create ${ifname} ${point}`);
  const opts = { sz: koffi.sizeof(TcOpts), prog_fd: progFd, flags: 1 /* BPF_TC_F_REPLACE */, prog_id: 0, handle: TC_HANDLE, priority: TC_PRIORITY };
  check(f.tc_attach(hook, opts), `bpf_tc_attach ${ifname} ${point}`);
  return rc === 0;
}

/** Remove xlb's tc filter at `point`; with `destroyQdisc`, also the clsact qdisc. */
export function detachTc(ifindex: number, ifname: string, point: 'ingress' | 'egress', destroyQdisc: boolean): void {
  const hook = { sz: koffi.sizeof(TcHook), ifindex, attach_point: point === 'ingress' ? BPF_TC.INGRESS : BPF_TC.EGRESS, parent: 0 };
  const opts = { sz: koffi.sizeof(TcOpts), prog_fd: 0, flags: 0, prog_id: 0, handle: TC_HANDLE, priority: TC_PRIORITY };
  const rc = f.tc_detach(hook, opts);
  if (rc < 0 && rc !== -2 && rc !== -19 && rc !== -22) check(rc, `bpf_tc_detach ${ifname} ${point}`);
  if (destroyQdisc) {
    const all = { ...hook, attach_point: BPF_TC.INGRESS | BPF_TC.EGRESS };
    f.tc_hook_destroy(all);
  }
}

/**
 * cgroup socket hooks xlb attaches (include/uapi/linux/bpf.h, enum
 * bpf_attach_type), by the ELF section name of their program.
 */
export const CGROUP_ATTACH_TYPE = {
  'cgroup/connect4': 10, // BPF_CGROUP_INET4_CONNECT
  'cgroup/sendmsg4': 14, // BPF_CGROUP_UDP4_SENDMSG
  'cgroup/recvmsg4': 19, // BPF_CGROUP_UDP4_RECVMSG
  'cgroup/getpeername4': 29, // BPF_CGROUP_INET4_GETPEERNAME
} as const;
export type CgroupHook = keyof typeof CGROUP_ATTACH_TYPE;

/** BPF_F_ALLOW_MULTI: other programs (another agent's, systemd's) may sit on the same hook, and below it. */
const BPF_F_ALLOW_MULTI = 2;

/** An open directory file descriptor of cgroup `dir` (closed by the caller). @throws Error naming the directory */
function openCgroup(dir: string): number {
  try {
    return fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  } catch (e) {
    throw new Error(`cgroup ${dir}: ${(e as Error).message}`);
  }
}

/**
 * Attach a cgroup sock_addr program at `hook` of cgroup v2 directory `dir`
 * (bpf_prog_attach with BPF_F_ALLOW_MULTI): it runs for every socket of
 * every process in `dir` and its descendants. Attaching the same program
 * again is refused by the kernel (EEXIST), so a caller detaches first.
 * @throws BpfError naming the cgroup and hook
 */
export function attachCgroup(progFd: number, dir: string, hook: CgroupHook): void {
  const fd = openCgroup(dir);
  try {
    check(f.prog_attach(progFd, fd, CGROUP_ATTACH_TYPE[hook], BPF_F_ALLOW_MULTI), `bpf_prog_attach ${hook} to cgroup ${dir}`);
  } finally {
    fs.closeSync(fd);
  }
}

/** Detach program `progFd` from `hook` of cgroup `dir`; a program or cgroup already gone is not an error. */
export function detachCgroup(progFd: number, dir: string, hook: CgroupHook): void {
  let fd: number;
  try {
    fd = openCgroup(dir);
  } catch {
    return;
  }
  try {
    const rc = f.prog_detach2(progFd, fd, CGROUP_ATTACH_TYPE[hook]);
    if (rc < 0 && rc !== -2) check(rc, `bpf_prog_detach ${hook} from cgroup ${dir}`);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The cookie of the calling thread's network namespace (getsockopt
 * SO_NETNS_COOKIE on a throwaway socket, Linux 5.14): what
 * bpf_get_netns_cookie returns for a socket of this namespace.
 * @throws Error when the kernel does not support it
 */
export function netnsCookie(): bigint {
  const fd = f.socket(2 /* AF_INET */, 2 /* SOCK_DGRAM */, 0);
  if (fd < 0) throw new Error('netns cookie: socket() failed');
  try {
    const value = Buffer.alloc(8);
    const len = [8];
    if (f.getsockopt(fd, 1 /* SOL_SOCKET */, 71 /* SO_NETNS_COOKIE */, value, len) !== 0) {
      throw new Error('netns cookie: getsockopt(SO_NETNS_COOKIE) failed (Linux 5.14 or newer needed)');
    }
    return value.readBigUInt64LE(0);
  } finally {
    f.close_fd(fd);
  }
}

/**
 * Names of the interfaces of the calling thread's network namespace
 * (if_nameindex(3): netlink, so right inside a namespace entered with
 * setns, unlike /sys/class/net, which shows the namespace sysfs was
 * mounted in).
 */
export function interfaceNames(): string[] {
  const p = f.if_nameindex();
  if (!p) return [];
  const out: string[] = [];
  try {
    // struct if_nameindex { unsigned int if_index; char *if_name; }, ended by {0, NULL}.
    for (let i = 0; ; i++) {
      const entry = koffi.decode(p, i * 16, IfNameIndex) as { if_index: number; if_name: string };
      if (!entry.if_index) break;
      out.push(entry.if_name);
    }
  } finally {
    f.if_freenameindex(p);
  }
  return out;
}

const IfNameIndex = koffi.struct('xlb_if_nameindex', { if_index: 'uint32', if_name: 'const char *' });

/** Parent of every pin directory xlb makes: /sys/fs/bpf/xlb/<instance>. */
export const PIN_BASE = '/sys/fs/bpf/xlb';

/**
 * Remove a pin directory (`PIN_BASE/<name>`) with everything pinned in it,
 * and PIN_BASE itself once no other instance has pins there, so that a test
 * or benchmark leaves /sys/fs/bpf as it found it. Missing is not an error.
 */
export function removePins(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  if (path.dirname(dir) !== PIN_BASE) return;
  try {
    fs.rmdirSync(PIN_BASE);
  } catch {
    // Not empty (another instance) or gone: both fine.
  }
}

/** Mount bpffs at /sys/fs/bpf when it is not mounted (the agent and tests pin there). */
export function ensureBpffs(): void {
  try {
    const mounts = fs.readFileSync('/proc/self/mounts', 'utf8');
    if (mounts.split('\n').some((l) => l.split(' ')[1] === '/sys/fs/bpf' && l.split(' ')[2] === 'bpf')) return;
  } catch {
    /* fall through to mount */
  }
  execFileSync('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf']);
}


/**
 * A reader of a BPF ring buffer (BPF_MAP_TYPE_RINGBUF) through libbpf's
 * ring_buffer: {@link consume} hands every record written since the last
 * call to `onRecord`, on this thread, without blocking (call it from a
 * timer). Records are copied out: `onRecord` may keep them.
 */
export class RingBufferReader {
  private rb: unknown;
  private readonly callback: bigint;

  /**
   * @param map the ring buffer map
   * @throws BpfError when libbpf cannot set the reader up
   */
  constructor(map: BpfMap, onRecord: (record: Buffer) => void) {
    this.callback = koffi.register((_ctx: unknown, data: unknown, size: number | bigint) => {
      onRecord(Buffer.from(koffi.view(data, Number(size)).slice(0)));
      return 0;
    }, koffi.pointer(SampleFn));
    this.rb = f.ring_buffer_new(map.fd, this.callback, null, null);
    if (!this.rb) {
      koffi.unregister(this.callback);
      throw new BpfError(`ring_buffer__new ${map.name}`, 22);
    }
  }

  /**
   * Hand every waiting record to `onRecord`.
   * @returns how many there were
   * @throws BpfError when libbpf reports an error
   */
  consume(): number {
    if (!this.rb) return 0;
    const n = f.ring_buffer_consume(this.rb) as number;
    if (n < 0) throw new BpfError('ring_buffer__consume', -n);
    return n;
  }

  /** Free the reader (idempotent). */
  close(): void {
    if (!this.rb) return;
    f.ring_buffer_free(this.rb);
    this.rb = undefined;
    koffi.unregister(this.callback);
  }
}
