/**
 * Map layouts across agent versions (docs/datapath.md, "Restarts and
 * upgrades"). The datapath outlives the agent: its maps stay pinned under
 * /sys/fs/bpf/xlb/<instance>, and a starting agent reuses every map whose
 * layout is unchanged. Each map is pinned as `<name>_v<fingerprint>`, the
 * fingerprint being a hash of its layout's description (map type, flags,
 * the key's and the value's fields as xlb_types.h lays them out, from the
 * generated layouts); the descriptions themselves are kept in the pinned map
 * xlb_layouts, whose own layout never changes. So a new version with a
 * changed layout finds no pin of its fingerprint, finds the old one, and
 * migrates what it can: every entry, field by field by name, when each
 * field of the new key was in the old key with the same size; otherwise the
 * map starts empty. A map whose size (max_entries) changed is copied too.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BPF_MAP_TYPE, BpfMap } from './bpf.js';
import { structs, type StructName } from './codec.js';
import { enums } from './layouts.generated.js';

/** The maps the datapath pins, and the layout of their keys and values (a struct of xlb_types.h, or a size in bytes). */
export const MAP_LAYOUTS: Record<string, { key: StructName | number; value: StructName | number }> = {
  xlb_frontends: { key: 'xlb_frontend_key', value: 'xlb_service' },
  xlb_backends: { key: 4, value: 'xlb_backend' },
  xlb_maglev: { key: 4, value: 4 },
  xlb_maglev_slabs: { key: 4, value: 4 },
  xlb_conntrack: { key: 'xlb_flow_key', value: 'xlb_ct_entry' },
  xlb_replies: { key: 4, value: 'xlb_reply_slot' },
  xlb_snat_sets: { key: 4, value: 'xlb_snat_set' },
  xlb_backend_nh: { key: 4, value: 'xlb_next_hop' },
  xlb_rnat: { key: 'xlb_flow_key', value: 'xlb_reply_slot' },
  xlb_reply_frontends: { key: 'xlb_backend_key', value: 'xlb_reply_frontends' },
  xlb_nh_gen: { key: 4, value: 4 },
  xlb_flood: { key: 4, value: 'xlb_flood_state' },
  xlb_affinity: { key: 'xlb_affinity_key', value: 'xlb_affinity_entry' },
  xlb_sock_rnat: { key: 'xlb_sock_rnat_key', value: 'xlb_sock_rnat_entry' },
  xlb_sock_affinity: { key: 'xlb_sock_affinity_key', value: 'xlb_affinity_entry' },
  xlb_source_ranges: { key: 'xlb_source_range_key', value: 4 },
  xlb_service_stats: { key: 4, value: 'xlb_service_stats' },
  xlb_drops: { key: 4, value: 8 },
  xlb_arp_vips: { key: 'xlb_arp_key', value: 'xlb_arp_answer' },
};

/** The registry of layout descriptions: pinned under this name, never versioned. */
export const LAYOUTS_MAP = 'xlb_layouts';
const DESC_LEN = enums.xlb_limits.XLB_LAYOUT_DESC_LEN;

/** One field of a described layout: name, byte offset, byte size. */
type FieldDesc = [name: string, offset: number, size: number];

/** A map's layout as recorded in xlb_layouts (what a later agent needs to read its entries). */
export interface LayoutDesc {
  type: number;
  flags: number;
  keySize: number;
  valueSize: number;
  key: FieldDesc[];
  value: FieldDesc[];
}

function fieldsOf(t: StructName | number): FieldDesc[] {
  if (typeof t === 'number') return [['', 0, t]];
  return Object.entries(structs[t].fields).map(([name, f]) => [name, f.offset, f.size] as FieldDesc);
}

/**
 * The layout of map `name` as this version defines it.
 * @param def the map's definition in the loaded object (type, sizes, flags)
 * @throws Error when the map is not one of {@link MAP_LAYOUTS}
 */
export function layoutOf(name: string, def: { type: number; keySize: number; valueSize: number; flags: number }): LayoutDesc {
  const l = MAP_LAYOUTS[name];
  if (!l) throw new Error(`map ${name}: no layout known (add it to MAP_LAYOUTS in src/datapath/layout.ts)`);
  return { type: def.type, flags: def.flags, keySize: def.keySize, valueSize: def.valueSize, key: fieldsOf(l.key), value: fieldsOf(l.value) };
}

/** The fingerprint of a layout: 16 hex digits of SHA-256 over its description (the pin name's suffix and xlb_layouts' key). */
export function fingerprint(desc: LayoutDesc): string {
  return createHash('sha256').update(JSON.stringify(desc)).digest('hex').slice(0, 16);
}

/**
 * The pin path of map `name` with layout fingerprint `fp`:
 * `<name>_v<fp>` (bpffs refuses dots in names).
 */
export function pinPathOf(pinDir: string, name: string, fp: string): string {
  return path.join(pinDir, `${name}_v${fp}`);
}

/** The fingerprint in a pin's file name, or undefined for an unversioned pin. */
export function fingerprintOfPin(file: string, name: string): string | undefined {
  const rest = path.basename(file).slice(name.length);
  return /^_v[0-9a-f]{16}$/.test(rest) ? rest.slice(2) : undefined;
}

/** Pins of map `name` in `pinDir` other than `keep`: older layouts (`<name>_v<fp>`) or an unversioned pin of an older agent. */
export function otherPins(pinDir: string, name: string, keep: string): string[] {
  if (!fs.existsSync(pinDir)) return [];
  return fs
    .readdirSync(pinDir)
    .filter((f) => (f === name || (f.startsWith(name) && fingerprintOfPin(f, name) !== undefined)) && path.join(pinDir, f) !== keep)
    .map((f) => path.join(pinDir, f));
}

/** Record `desc` under `fp` in xlb_layouts. */
export function recordLayout(layouts: BpfMap, fp: string, desc: LayoutDesc): void {
  const value = Buffer.alloc(DESC_LEN);
  const text = JSON.stringify(desc);
  if (Buffer.byteLength(text) >= DESC_LEN) throw new Error(`layout description of ${text.slice(0, 40)}... is longer than ${DESC_LEN - 1} bytes`);
  value.write(text);
  layouts.update(Buffer.from(fp, 'hex'), value);
}

/** The description recorded under `fp`, or undefined when xlb_layouts has none (or it does not parse). */
export function recordedLayout(layouts: BpfMap, fp: string): LayoutDesc | undefined {
  if (!/^[0-9a-f]{16}$/.test(fp)) return undefined;
  const v = layouts.lookup(Buffer.from(fp, 'hex'));
  if (!v) return undefined;
  const end = v.indexOf(0);
  try {
    return JSON.parse(v.toString('utf8', 0, end < 0 ? v.length : end)) as LayoutDesc;
  } catch {
    return undefined;
  }
}

/** Maps whose entries are copied to a new layout or size; the rest start empty (per-CPU counters, the Maglev tables, which the first sync writes again). */
const COPYABLE = new Set<number>([BPF_MAP_TYPE.HASH, BPF_MAP_TYPE.LRU_HASH, BPF_MAP_TYPE.ARRAY, 11 /* LPM_TRIE */]);
const NOT_COPIED = new Set(['xlb_maglev', 'xlb_maglev_slabs']);

/**
 * Why the entries of map `name` cannot be carried from layout `from` to
 * layout `to`, or undefined when they can: the map type changed or is not
 * copied (per-CPU, map-in-map, the Maglev tables), or a field of the new key
 * is not in the old key with the same size (entries could not be found
 * again).
 */
export function whyNotMigratable(name: string, from: LayoutDesc | undefined, to: LayoutDesc): string | undefined {
  if (!from) return 'its old layout is not recorded';
  if (NOT_COPIED.has(name)) return 'the Maglev tables are written again by the first sync';
  if (from.type !== to.type) return `its type changed (${from.type} to ${to.type})`;
  if (!COPYABLE.has(to.type)) return 'per-CPU counters start at zero';
  for (const [f, , size] of to.key) {
    if (!from.key.some(([g, , s]) => g === f && s === size)) return `key field ${f || '(whole key)'} is new or changed size`;
  }
  return undefined;
}

/** Rebuild `buf` (laid out as `from`) in layout `to`: same-named fields of the same size are copied, the rest is zero. */
export function convert(buf: Buffer, from: FieldDesc[], to: FieldDesc[], size: number): Buffer {
  const out = Buffer.alloc(size);
  for (const [name, off, len] of to) {
    const old = from.find(([n, , l]) => n === name && l === len);
    if (old && old[1] + len <= buf.length) buf.copy(out, off, old[1], old[1] + len);
  }
  return out;
}

/**
 * Copy every entry of `old` (laid out as `from`) into `fresh` (laid out as
 * `to`), converting each key and value; array entries that are all zero are
 * skipped, and so are entries that no longer fit (a smaller map).
 * @returns the number of entries copied
 */
export function migrateEntries(old: BpfMap, from: LayoutDesc, fresh: BpfMap, to: LayoutDesc): number {
  let copied = 0;
  const isArray = to.type === BPF_MAP_TYPE.ARRAY;
  for (const k of old.keys()) {
    const v = old.lookup(k);
    if (!v || (isArray && v.every((b) => b === 0))) continue;
    const key = convert(k, from.key, to.key, to.keySize);
    if (isArray && key.readUInt32LE(0) >= fresh.maxEntries) continue;
    try {
      fresh.update(key, convert(v, from.value, to.value, to.valueSize));
      copied++;
    } catch {
      // Full (a smaller map), or an entry the new layout rejects: the rest still comes.
    }
  }
  return copied;
}
