/**
 * Where the datapath keeps how a reply is restored (xdp/include/
 * xlb_replies.h), computed the same way in TypeScript: the set of
 * xlb_replies of a reply 5-tuple (SNATed flows: snat_sets.ts). Used to move elements when their
 * map is resized or comes from an older layout (src/datapath/datapath.ts),
 * and by the tests to predict the datapath.
 */
import { BpfMap } from './bpf.js';
import { decode, encode, enums } from './codec.js';
import { jhash3Words } from '../maglev/flowhash.js';
import { ipToU32 } from '../util/ip.js';

/** Ways of a set of xlb_replies (XLB_REPLY_WAYS). */
export const REPLY_WAYS = enums.xlb_limits.XLB_REPLY_WAYS;
/** XLB_REPLY_SEED of xlb_replies.h ("rply"). */
const REPLY_SEED = 0x72706c79;

/** A reply 5-tuple: backend -> client, node or hairpin address. Ports in host order. */
export interface ReplyTuple {
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  proto: number;
}

/** The u32 a BPF program reads from these network-order bytes (a little-endian host). */
function wire32(addr: string): number {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(ipToU32(addr));
  return b.readUInt32LE(0);
}
const wire16 = (port: number): number => ((port & 0xff) << 8) | (port >> 8);

/** xlb_reply_hash of xlb_replies.h: the hash of a reply 5-tuple, unsigned 32-bit. */
export function replyHash(r: ReplyTuple): number {
  return jhash3Words(wire32(r.saddr), wire32(r.daddr), ((wire16(r.sport) << 16) | wire16(r.dport)) >>> 0, (REPLY_SEED + r.proto) >>> 0);
}

const SNAT = enums.xlb_ct_flags.XLB_CT_F_SNAT;

/**
 * Put reply elements (`struct xlb_reply_slot` values, each naming its own
 * reply 5-tuple) where the datapath looks for them: into a free way of
 * their xlb_replies set (else the overflow LRU xlb_rnat). Elements that
 * find their place taken are left out (their flows' replies are lost, as
 * when the table is full), and so are SNAT ones of an older layout (a
 * SNATed flow's element is its own now, xlb_snat_sets).
 * @returns how many were placed
 */
export function placeReplyElements(values: Iterable<Buffer>, maps: { replies: BpfMap; rnat: BpfMap }, sizes: { sets: number }): number {
  let placed = 0;
  const key = Buffer.alloc(4);
  const empty = (v: Buffer | undefined) => !v || decode('xlb_reply_slot', v).seen === 0;
  for (const v of values) {
    const e = decode('xlb_reply_slot', v);
    if (!e.seen) continue;
    const r: ReplyTuple = { saddr: e.reply_saddr, daddr: e.reply_daddr, sport: e.reply_sport, dport: e.reply_dport, proto: e.reply_proto };
    if (e.flags & SNAT) continue;
    const set = replyHash(r) % sizes.sets;
    let done = false;
    for (let w = 0; w < REPLY_WAYS && !done; w++) {
      key.writeUInt32LE(set * REPLY_WAYS + w);
      if (!empty(maps.replies.lookup(key))) continue;
      maps.replies.update(key, v);
      done = true;
    }
    if (!done) {
      try {
        maps.rnat.update(encode('xlb_flow_key', r), v);
        done = true;
      } catch {
        /* full */
      }
    }
    if (done) placed++;
  }
  return placed;
}

/**
 * Fill the reply 5-tuple of elements copied from xlb_rnat of a layout that
 * had none (it was the key), from their keys.
 */
export function withReplyTuple(key: Buffer, value: Buffer): Buffer {
  const k = decode('xlb_flow_key', key);
  const e = decode('xlb_reply_slot', value);
  return encode('xlb_reply_slot', { ...e, reply_saddr: k.saddr, reply_daddr: k.daddr, reply_sport: k.sport, reply_dport: k.dport, reply_proto: k.proto });
}
