/**
 * L2Maps: layer 2 mode's view of the ARP responder's map, `xlb_arp_vips`
 * (xdp/include/xlb_arp.h, docs/datapath.md "ARP responder"). An entry
 * (VIP, ingress ifindex, VLAN) -> MAC makes the XDP program answer ARP
 * requests for that VIP arriving on that interface and VLAN, with that MAC.
 * src/l2 writes an entry for each VIP this node owns on each announcing
 * interface, and deletes them when it loses the VIP.
 *
 * Key: `struct xlb_arp_key` (12 bytes); value: `struct xlb_arp_answer`
 * (8 bytes); offsets from layouts.generated.ts. The MAC is a byte array,
 * which codec.ts treats as padding, so it is written here by offset.
 */
import fs from 'node:fs';
import { BpfMap } from './bpf.js';
import { decode, encode, sizeOf, structs } from './codec.js';
import { isIPv4 } from '../util/ip.js';

/** Name of the pinned map (LIBBPF_PIN_BY_NAME under the datapath's pin directory). */
export const ARP_VIPS_MAP = 'xlb_arp_vips';

/** Where ARP is answered for a VIP: `struct xlb_arp_key`. */
export interface ArpKey {
  /** The VIP, dotted quad. */
  vip: string;
  /** Ingress ifindex as XDP sees it: the physical interface, the parent of a VLAN sub-interface. */
  ifindex: number;
  /** VLAN ID 1..4094 of the tagged requests to answer, 0 for untagged ones. */
  vlan: number;
}

/** One entry of `xlb_arp_vips`: the key and the MAC to answer with (`aa:bb:cc:dd:ee:ff`, lower case). */
export interface ArpEntry extends ArpKey {
  mac: string;
}

/**
 * Reads and writes of `xlb_arp_vips`. Writes apply every entry or throw an
 * Error naming the map, the entry and the failed operation; the caller
 * (L2Announcer) retries the difference on its next reconcile.
 */
export interface L2Maps {
  /** Insert or replace entries. */
  put(entries: ArpEntry[]): void;
  /** Delete entries; keys that are absent are ignored. */
  delete(keys: ArpKey[]): void;
  /** Every entry in the map, sorted by {@link arpKeyString}. */
  list(): ArpEntry[];
}

/** Canonical string of a key, `VIP@ifindex/vlan`, for maps and sets. */
export function arpKeyString(k: ArpKey): string {
  return `${k.vip}@${k.ifindex}/${k.vlan}`;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/**
 * Check an entry's fields.
 * @throws Error naming the field (`vip`, `ifindex`, `vlan`, `mac`) and the value
 */
export function validateArpEntry(e: ArpKey & { mac?: string }): void {
  if (!isIPv4(e.vip)) throw new Error(`${ARP_VIPS_MAP} entry: vip ${JSON.stringify(e.vip)} is not an IPv4 address`);
  if (!Number.isInteger(e.ifindex) || e.ifindex <= 0 || e.ifindex > 0xffffffff)
    throw new Error(`${ARP_VIPS_MAP} entry ${e.vip}: ifindex ${e.ifindex} is not a positive 32-bit integer`);
  if (!Number.isInteger(e.vlan) || e.vlan < 0 || e.vlan > 4094)
    throw new Error(`${ARP_VIPS_MAP} entry ${e.vip}: vlan ${e.vlan} is not 0 (untagged) or a VLAN ID 1..4094`);
  if (e.mac !== undefined && !MAC_RE.test(e.mac))
    throw new Error(`${ARP_VIPS_MAP} entry ${e.vip}: mac ${JSON.stringify(e.mac)} is not a lower-case aa:bb:cc:dd:ee:ff MAC`);
}

/** Encode `struct xlb_arp_key`. */
export function encodeArpKey(k: ArpKey): Buffer {
  return encode('xlb_arp_key', { vip: k.vip, ifindex: k.ifindex, vlan: k.vlan });
}

/** Encode `struct xlb_arp_answer` from a MAC string. */
export function encodeArpAnswer(mac: string): Buffer {
  const buf = Buffer.alloc(sizeOf('xlb_arp_answer'));
  const at = structs.xlb_arp_answer.fields.mac.offset;
  mac.split(':').forEach((h, i) => (buf[at + i] = parseInt(h, 16)));
  return buf;
}

/** Decode one entry from a raw key and value. */
export function decodeArpEntry(key: Buffer, value: Buffer): ArpEntry {
  const k = decode('xlb_arp_key', key);
  const at = structs.xlb_arp_answer.fields.mac.offset;
  const mac = [...value.subarray(at, at + 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
  return { vip: k.vip, ifindex: k.ifindex, vlan: k.vlan, mac };
}

/** L2Maps over the real BPF map. Errors are BpfErrors naming the map. */
export class BpfL2Maps implements L2Maps {
  /**
   * @param map `xlb_arp_vips` of a loaded xlb_xdp.bpf.o (BpfObject.map), or opened from its pin
   * @throws Error when the map's key/value sizes differ from xlb_types.h (a stale object or pin)
   */
  constructor(readonly map: BpfMap) {
    const ks = sizeOf('xlb_arp_key');
    const vs = sizeOf('xlb_arp_answer');
    if (map.keySize !== ks || map.valueSize !== vs)
      throw new Error(`map ${map.name}: key/value sizes ${map.keySize}/${map.valueSize} differ from xlb_types.h (${ks}/${vs}); rebuild with make -C xdp`);
  }

  /**
   * Open the map pinned in a datapath's pin directory (`/sys/fs/bpf/xlb/<instance>`).
   * Close it with {@link BpfL2Maps.close}.
   * @throws BpfError naming the pin path when it is missing
   */
  static fromPinDir(pinDir: string): BpfL2Maps {
    // Pinned as xlb_arp_vips_v<layout fingerprint> (src/datapath/layout.ts).
    const pin = fs.existsSync(pinDir) ? fs.readdirSync(pinDir).find((f) => f.startsWith(`${ARP_VIPS_MAP}_v`)) : undefined;
    return new BpfL2Maps(BpfMap.fromPin(`${pinDir}/${pin ?? ARP_VIPS_MAP}`, sizeOf('xlb_arp_key'), sizeOf('xlb_arp_answer')));
  }

  put(entries: ArpEntry[]): void {
    for (const e of entries) validateArpEntry(e);
    for (const e of entries) this.map.update(encodeArpKey(e), encodeArpAnswer(e.mac));
  }

  delete(keys: ArpKey[]): void {
    for (const k of keys) validateArpEntry(k);
    for (const k of keys) this.map.delete(encodeArpKey(k));
  }

  list(): ArpEntry[] {
    const out: ArpEntry[] = [];
    for (const key of this.map.keys()) {
      const value = this.map.lookup(key);
      if (value) out.push(decodeArpEntry(key, value)); // deleted between the walk and the lookup: skip
    }
    return out.sort((a, b) => arpKeyString(a).localeCompare(arpKeyString(b)));
  }

  /** Close the map's fd when it was opened from a pin (a no-op for an object's map). */
  close(): void {
    this.map.close();
  }
}

/**
 * An in-memory L2Maps for unit tests: the same contract and validation, a
 * count of write calls, and a fault hook.
 */
export class FakeL2Maps implements L2Maps {
  readonly entries = new Map<string, ArpEntry>();
  /** Write calls by method (`put`, `delete`). */
  readonly writes: Record<string, number> = {};
  /** When set, called before every write; throw from it to inject a fault. */
  fault?: (method: 'put' | 'delete') => void;

  put(entries: ArpEntry[]): void {
    for (const e of entries) validateArpEntry(e);
    this.fault?.('put');
    this.writes.put = (this.writes.put ?? 0) + 1;
    for (const e of entries) this.entries.set(arpKeyString(e), { vip: e.vip, ifindex: e.ifindex, vlan: e.vlan, mac: e.mac });
  }

  delete(keys: ArpKey[]): void {
    for (const k of keys) validateArpEntry(k);
    this.fault?.('delete');
    this.writes.delete = (this.writes.delete ?? 0) + 1;
    for (const k of keys) this.entries.delete(arpKeyString(k));
  }

  list(): ArpEntry[] {
    return [...this.entries.values()].sort((a, b) => arpKeyString(a).localeCompare(arpKeyString(b)));
  }

  /** The VIPs with at least one entry, sorted. */
  vips(): string[] {
    return [...new Set([...this.entries.values()].map((e) => e.vip))].sort();
  }
}
