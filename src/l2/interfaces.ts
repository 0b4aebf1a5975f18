/**
 * The interfaces layer 2 mode announces on: from the names in `l2.interfaces`
 * to what the ARP map and arping need (the ifindex XDP sees, the VLAN ID, the
 * MAC), and whether each has carrier, read from the kernel with iproute2
 * (`ip -j -d link show`, `ip -o monitor link`), which sees the network
 * namespace the agent runs in.
 *
 * A VLAN sub-interface (`eth0.100`) is answered on by the XDP program of its
 * parent: the requests reach XDP with their 802.1Q tag, so the ARP map key
 * is (VIP, parent ifindex, 100). That needs the parent to deliver tags in
 * the frame: with `rx-vlan-offload` on, a NIC strips the tag before XDP sees
 * it (turn it off with `ethtool -K <parent> rxvlan off`).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import type { LinkHealth } from './ownership.js';

const execFileP = promisify(execFile);

/** One link as `ip -j -d link show` reports it (the fields used here). */
export interface LinkInfo {
  ifindex: number;
  ifname: string;
  /** MAC, `aa:bb:cc:dd:ee:ff`. */
  address?: string;
  /** IFF_* names: `UP` administratively up, `LOWER_UP` carrier. */
  flags: string[];
  /** Lower device's name: a VLAN's parent (for a veth: its peer). */
  link?: string;
  linkinfo?: { info_kind?: string; info_data?: { protocol?: string; id?: number } };
}

/** One interface ARP is answered on. */
export interface AnnounceInterface {
  /** As configured (`eth0`, `eth0.100`); gratuitous ARP goes out of it. */
  name: string;
  /** The interface's own ifindex. */
  ifindex: number;
  /** The interface whose XDP program sees the requests: itself, or a VLAN's parent. */
  xdpInterface: string;
  /** Its ifindex: the ARP map key's ifindex. */
  xdpIfindex: number;
  /** VLAN ID 1..4094 of a VLAN sub-interface, else 0. */
  vlan: number;
  /** The MAC ARP replies carry (the configured interface's, lower case). */
  mac: string;
  /** Administratively up with carrier (IFF_UP and IFF_LOWER_UP). */
  up: boolean;
}

/** True when the link is administratively up and has carrier. */
export function linkUp(l: LinkInfo): boolean {
  return l.flags.includes('UP') && l.flags.includes('LOWER_UP');
}

/** `up` when every interface is up, `down` when none is, else `degraded`. */
export function linkHealth(ifaces: readonly AnnounceInterface[]): LinkHealth {
  const up = ifaces.filter((i) => i.up).length;
  return up === 0 ? 'down' : up === ifaces.length ? 'up' : 'degraded';
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/**
 * Resolve the configured names against the node's links.
 * @param names `l2.interfaces` (or the agent's interfaces when it is left out)
 * @param xdpInterfaces the interfaces carrying xlb's XDP program (the agent's `interfaces`)
 * @param configPath prefix of error messages
 * @throws Error naming `<configPath>[i]` and the interface: missing, without
 *   a MAC, not carrying XDP (itself or, for a VLAN, its parent), stacked VLANs
 */
export function resolveInterfaces(names: readonly string[], links: readonly LinkInfo[], xdpInterfaces: readonly string[], configPath = 'l2.interfaces'): AnnounceInterface[] {
  const byName = new Map(links.map((l) => [l.ifname, l]));
  return names.map((name, i) => {
    const where = `${configPath}[${i}]`;
    const l = byName.get(name);
    if (!l) throw new Error(`${where}: interface ${name} not found in this network namespace`);
    const mac = l.address?.toLowerCase();
    if (!mac || !MAC_RE.test(mac)) throw new Error(`${where}: interface ${name} has no Ethernet MAC address to answer ARP with`);
    if (l.linkinfo?.info_kind === 'vlan') {
      const vlan = l.linkinfo.info_data?.id;
      const parent = l.link ? byName.get(l.link) : undefined;
      if (!vlan || vlan < 1 || vlan > 4094) throw new Error(`${where}: VLAN interface ${name} reports no VLAN ID 1..4094`);
      if (!parent) throw new Error(`${where}: the parent of VLAN interface ${name} is not in this network namespace`);
      if (parent.linkinfo?.info_kind === 'vlan') throw new Error(`${where}: ${name} is a VLAN on VLAN ${parent.ifname}: stacked VLANs are not supported (XDP reads one tag)`);
      if (!xdpInterfaces.includes(parent.ifname))
        throw new Error(`${where}: ${name} is a VLAN sub-interface of ${parent.ifname}, which does not carry xlb's XDP program (interfaces: ${xdpInterfaces.join(', ')})`);
      return { name, ifindex: l.ifindex, xdpInterface: parent.ifname, xdpIfindex: parent.ifindex, vlan, mac, up: linkUp(l) };
    }
    if (!xdpInterfaces.includes(name))
      throw new Error(`${where}: ${name} does not carry xlb's XDP program (interfaces: ${xdpInterfaces.join(', ')}); list it in interfaces, or use a VLAN sub-interface of one that is`);
    return { name, ifindex: l.ifindex, xdpInterface: name, xdpIfindex: l.ifindex, vlan: 0, mac, up: linkUp(l) };
  });
}

/** Reads the node's links and tells when they change. */
export interface LinkMonitor {
  /** Every link of the network namespace. @throws Error when they cannot be read */
  read(): Promise<LinkInfo[]>;
  /** Start watching: `onChange` gets fresh links after a change (coalesced). */
  start(onChange: (links: LinkInfo[]) => void): Promise<void>;
  stop(): void;
}

/** Parse `ip -j -d link show` output. @throws Error naming what is malformed */
export function parseIpLinkJson(text: string): LinkInfo[] {
  const raw = JSON.parse(text) as unknown;
  if (!Array.isArray(raw)) throw new Error('ip -j link show: output is not a JSON list');
  return raw.map((l: Record<string, unknown>) => {
    if (typeof l.ifindex !== 'number' || typeof l.ifname !== 'string') throw new Error('ip -j link show: an entry without ifindex or ifname');
    const li = l.linkinfo as LinkInfo['linkinfo'] | undefined;
    return {
      ifindex: l.ifindex,
      ifname: l.ifname,
      address: typeof l.address === 'string' ? l.address : undefined,
      flags: Array.isArray(l.flags) ? (l.flags as string[]) : [],
      link: typeof l.link === 'string' ? l.link : undefined,
      linkinfo: li ? { info_kind: li.info_kind, info_data: li.info_data ? { protocol: li.info_data.protocol, id: li.info_data.id } : undefined } : undefined,
    };
  });
}

/** Safety-net re-read interval, ms: catches an event the monitor missed. */
const RESYNC_MS = 2000;
/** Wait before restarting a monitor process that exited, ms. */
const RESPAWN_MS = 1000;

/**
 * LinkMonitor over iproute2: `ip -o monitor link` wakes it on every link
 * event (carrier, up/down, rename, MAC change), and it re-reads the links
 * with `ip -j -d link show`; it also re-reads every 2 s.
 */
export class IpLinkMonitor implements LinkMonitor {
  private child?: ChildProcess;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private reading = false;
  private again = false;
  private last = '';
  private onChange?: (links: LinkInfo[]) => void;

  /** @param ip the iproute2 binary; `commandPrefix` goes before it (e.g. `nsenter --net=...`) */
  constructor(private readonly opts: { ip?: string; commandPrefix?: string[]; log?: Logger } = {}) {}

  private argv(args: string[]): [string, string[]] {
    const full = [...(this.opts.commandPrefix ?? []), this.opts.ip ?? 'ip', ...args];
    return [full[0], full.slice(1)];
  }

  async read(): Promise<LinkInfo[]> {
    const [cmd, args] = this.argv(['-j', '-d', 'link', 'show']);
    const { stdout } = await execFileP(cmd, args, { maxBuffer: 16 << 20 });
    return parseIpLinkJson(stdout);
  }

  async start(onChange: (links: LinkInfo[]) => void): Promise<void> {
    this.onChange = onChange;
    this.spawnMonitor();
    this.timer = setInterval(() => this.refresh(), RESYNC_MS);
    this.timer.unref();
    await this.refreshNow();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.child?.kill();
    this.child = undefined;
  }

  private spawnMonitor(): void {
    if (this.stopped) return;
    const [cmd, args] = this.argv(['-o', 'monitor', 'link']);
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', () => this.refresh());
    child.on('error', (e) => this.opts.log?.error({ err: e.message }, 'l2: ip monitor link failed to start'));
    child.on('exit', (code, signal) => {
      if (this.stopped) return;
      this.opts.log?.warn({ code, signal }, 'l2: ip monitor link exited; restarting it (links are re-read every 2 s meanwhile)');
      setTimeout(() => this.spawnMonitor(), RESPAWN_MS).unref();
    });
  }

  /** Re-read, coalescing events that arrive during a read into one more read. */
  private refresh(): void {
    if (this.reading) {
      this.again = true;
      return;
    }
    void this.refreshNow();
  }

  private async refreshNow(): Promise<void> {
    this.reading = true;
    try {
      do {
        this.again = false;
        let links: LinkInfo[];
        try {
          links = await this.read();
        } catch (e) {
          this.opts.log?.error({ err: (e as Error).message }, 'l2: reading links failed');
          return;
        }
        const text = JSON.stringify(links);
        if (text !== this.last && !this.stopped) {
          this.last = text;
          this.onChange?.(links);
        }
      } while (this.again && !this.stopped);
    } finally {
      this.reading = false;
    }
  }
}

/** A LinkMonitor over links held in memory, for tests: {@link FakeLinkMonitor.set} is a link event. */
export class FakeLinkMonitor implements LinkMonitor {
  private onChange?: (links: LinkInfo[]) => void;
  constructor(private links: LinkInfo[]) {}

  read(): Promise<LinkInfo[]> {
    return Promise.resolve(structuredClone(this.links));
  }

  async start(onChange: (links: LinkInfo[]) => void): Promise<void> {
    this.onChange = onChange;
    onChange(structuredClone(this.links));
  }

  stop(): void {
    this.onChange = undefined;
  }

  /** Replace the links and notify, as a kernel link event would. */
  set(links: LinkInfo[]): void {
    this.links = links;
    this.onChange?.(structuredClone(links));
  }

  /** Set one link's carrier (LOWER_UP) and notify. */
  setCarrier(ifname: string, carrier: boolean): void {
    this.set(
      this.links.map((l) =>
        l.ifname !== ifname ? l : { ...l, flags: carrier ? [...new Set([...l.flags, 'UP', 'LOWER_UP'])] : l.flags.filter((f) => f !== 'LOWER_UP') },
      ),
    );
  }
}
