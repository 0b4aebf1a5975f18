/**
 * The datapath's lifetime clock (xdp/include/xlb_clock.h): jiffies shifted
 * right by `xlb_tick_shift`, a tick of about one second. User space needs
 * the kernel's HZ to pick the shift and to turn the configured lifetimes
 * (seconds) into ticks; the kernel does not publish HZ (USER_HZ, 100, is
 * what /proc and sysconf report), so it is read from the kernel's
 * configuration (CONFIG_HZ in /boot/config-<release> or /proc/config.gz,
 * where libbpf looks for Kconfig too) or, when neither is readable (as in a
 * container without /boot), measured: jiffies from the xlb_clock_probe
 * program (xdp/xlb_clock.bpf.c) 100 ms apart.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { BpfObject } from './bpf.js';
import { enums } from './codec.js';

/** HZ values Linux can be built with (kernel/Kconfig.hz). */
export const KERNEL_HZ_CHOICES = [100, 250, 300, 1000] as const;

/** Conntrack lifetimes in seconds, by state (docs/datapath.md, "Conntrack lifetimes"). */
export interface ConntrackLifetimes {
  /** TCP, established. */
  tcp: number;
  /** TCP, only SYNs from the client so far. */
  tcpSyn: number;
  /** TCP, a FIN or RST seen from either side. */
  tcpFin: number;
  /** UDP. */
  any: number;
}

/** The datapath's defaults (xlb_types.h), Cilium's. */
export const DEFAULT_CONNTRACK_LIFETIMES: ConntrackLifetimes = {
  tcp: enums.xlb_limits.XLB_CT_TIMEOUT_TCP,
  tcpSyn: enums.xlb_limits.XLB_CT_TIMEOUT_TCP_SYN,
  tcpFin: enums.xlb_limits.XLB_CT_TIMEOUT_TCP_FIN,
  any: enums.xlb_limits.XLB_CT_TIMEOUT_ANY,
};

/** CONFIG_HZ from a kernel configuration's text, or undefined. */
export function hzFromKconfig(text: string): number | undefined {
  const m = /^CONFIG_HZ=(\d+)$/m.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** The HZ choice nearest to a measured rate (jiffies per second). */
export function nearestHz(rate: number): number {
  return KERNEL_HZ_CHOICES.reduce((best, hz) => (Math.abs(hz - rate) < Math.abs(best - rate) ? hz : best));
}

/** CONFIG_HZ from /boot/config-<release> or /proc/config.gz, or undefined when neither is readable. */
export function hzFromConfigFiles(): number | undefined {
  for (const [file, gz] of [
    [`/boot/config-${os.release()}`, false],
    ['/proc/config.gz', true],
  ] as const) {
    try {
      const raw = fs.readFileSync(file);
      const hz = hzFromKconfig((gz ? zlib.gunzipSync(raw) : raw).toString('utf8'));
      if (hz) return hz;
    } catch {
      // not there: next
    }
  }
  return undefined;
}

/**
 * HZ measured: jiffies read through `probeObject` (xlb_clock.bpf.o; needs
 * CAP_BPF) `ms` milliseconds apart, rounded to the nearest HZ choice.
 * @throws BpfError when the probe cannot be loaded
 */
export function measureHz(probeObject: string, ms = 100): number {
  const probe = new ClockProbe(probeObject);
  try {
    const t0 = process.hrtime.bigint();
    const j0 = probe.jiffies();
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
    const j1 = probe.jiffies();
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return nearestHz(((j1 - j0) >>> 0) / seconds);
  } finally {
    probe.close();
  }
}

let cachedHz: number | undefined;

/**
 * The running kernel's HZ: {@link hzFromConfigFiles}, else
 * {@link measureHz} (100 ms). Cached for the process.
 * @throws BpfError when the configuration is unreadable and the probe fails
 */
export function kernelHz(probeObject: string): number {
  cachedHz ??= hzFromConfigFiles() ?? measureHz(probeObject);
  return cachedHz;
}

/** The shift that makes a tick of about one second at `hz`: round(log2 hz). */
export function tickShift(hz: number): number {
  return Math.round(Math.log2(hz));
}

/** Seconds as ticks at `hz`, rounded up. */
export function secondsToTicks(seconds: number, hz: number): number {
  return Math.ceil((seconds * hz) / 2 ** tickShift(hz));
}

/**
 * The clock's `const volatile` knobs for BpfObject.open: `xlb_tick_shift`
 * for every object that includes xlb_clock.h, and with `lifetimes` the
 * xlb_ct_timeout_* and xlb_snat_closed_reuse knobs of xlb_conntrack.h, in
 * ticks.
 */
export function clockRodata(hz: number, lifetimes?: ConntrackLifetimes): Record<string, number> {
  const out: Record<string, number> = { xlb_tick_shift: tickShift(hz) };
  if (lifetimes) {
    out.xlb_ct_timeout_tcp = secondsToTicks(lifetimes.tcp, hz);
    out.xlb_ct_timeout_tcp_syn = secondsToTicks(lifetimes.tcpSyn, hz);
    out.xlb_ct_timeout_tcp_fin = secondsToTicks(lifetimes.tcpFin, hz);
    out.xlb_ct_timeout_any = secondsToTicks(lifetimes.any, hz);
    out.xlb_snat_closed_reuse = secondsToTicks(enums.xlb_limits.XLB_SNAT_CLOSED_REUSE, hz);
  }
  return out;
}

/** Path of the probe object in an object directory. */
export function probeObjectIn(objectDir: string): string {
  return path.join(objectDir, 'xlb_clock.bpf.o');
}

/**
 * Reads the kernel's clock through xdp/xlb_clock.bpf.o under
 * BPF_PROG_TEST_RUN: jiffies, and the datapath's ticks at a given HZ.
 * Close it when done.
 */
export class ClockProbe {
  private readonly obj: BpfObject;
  /**
   * @param hz the kernel's HZ, for {@link now}; left out, only
   *   {@link jiffies} is meaningful
   * @throws BpfError when the object cannot be opened or loaded
   */
  constructor(objectPath: string, hz?: number) {
    this.obj = BpfObject.open(objectPath, hz ? { rodata: clockRodata(hz) } : {});
    try {
      this.obj.load();
    } catch (e) {
      this.obj.close();
      throw e;
    }
  }
  private run(prog: string): number {
    return this.obj.program(prog).testRun(Buffer.alloc(64)).retval >>> 0;
  }
  /** jiffies, modulo 2^32. */
  jiffies(): number {
    return this.run('xlb_clock_jiffies');
  }
  /** Now in the datapath's ticks (the `seen` fields' unit). */
  now(): number {
    return this.run('xlb_clock_now');
  }
  close(): void {
    this.obj.close();
  }
}
