/**
 * A small builder and parser of the frames xlb's datapath sees: Ethernet
 * (optionally one 802.1Q/802.1ad tag), IPv4 (with options, fragment bits),
 * TCP, UDP, ARP and a minimal IPv6 header, with correct checksums; and a
 * verifier that recomputes the IPv4 and L4 checksums from scratch, so that a
 * test never trusts the datapath's incremental arithmetic (RFC 1624) with the
 * same arithmetic.
 *
 * Sources: RFC 791 (IPv4), RFC 793 (TCP), RFC 768 (UDP), RFC 1071 (Internet
 * checksum), RFC 826 (ARP), IEEE 802.1Q.
 */
import { ipToU32, u32ToIp } from '../../src/util/ip.js';

/** EtherTypes used in the tests. */
export const ETH_P = { IPV4: 0x0800, ARP: 0x0806, IPV6: 0x86dd, VLAN: 0x8100, QINQ: 0x88a8 } as const;
/** IP protocol numbers. */
export const PROTO = { TCP: 6, UDP: 17, ICMP: 1 } as const;
/** TCP flag bits (RFC 793, 9293). */
export const TCP_FLAG = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

const ETH_HLEN = 14;

/** Ethernet header of a frame; MACs as `aa:bb:cc:dd:ee:ff`. */
export interface EthSpec {
  src?: string;
  dst?: string;
  /** One VLAN tag between the MACs and the EtherType: VLAN ID, TPID (default 802.1Q) and PCP (default 0). */
  vlan?: { id: number; tpid?: number; pcp?: number };
}

/** IPv4 header fields; addresses as dotted quads. */
export interface Ipv4Spec {
  src: string;
  dst: string;
  ttl?: number;
  tos?: number;
  id?: number;
  df?: boolean;
  mf?: boolean;
  /** Fragment offset in 8-byte units. */
  fragOffset?: number;
  /** Raw options, a multiple of 4 bytes (IHL = 5 + length / 4). */
  options?: Buffer;
  /** Overrides the protocol byte (normally taken from the L4 part). */
  protocol?: number;
}

/** TCP header fields. */
export interface TcpSpec {
  sport: number;
  dport: number;
  seq?: number;
  ack?: number;
  /** OR of TCP_FLAG bits; default SYN. */
  flags?: number;
  window?: number;
  /** Raw options, a multiple of 4 bytes. */
  options?: Buffer;
  payload?: Buffer;
}

/** UDP header fields. */
export interface UdpSpec {
  sport: number;
  dport: number;
  payload?: Buffer;
  /** Send checksum 0 ("no checksum", RFC 768). */
  noChecksum?: boolean;
}

/** Default MACs: locally administered, never on a real link. */
export const MAC = { client: '02:00:00:00:00:01', node: '02:00:00:00:00:02' } as const;

/** A MAC string as 6 bytes. @throws Error naming the string when malformed */
export function macBytes(mac: string): Buffer {
  const parts = mac.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new Error(`not a MAC address: ${JSON.stringify(mac)}`);
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

/** 6 bytes as a MAC string. */
export function macString(b: Buffer): string {
  return [...b.subarray(0, 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** RFC 1071 one's complement sum of `buf` (odd length padded with a zero byte), folded, not complemented. */
export function onesComplementSum(buf: Buffer, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += buf[buf.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The Internet checksum (RFC 1071) of `buf`: the complemented one's complement sum. */
export function internetChecksum(buf: Buffer, initial = 0): number {
  return ~onesComplementSum(buf, initial) & 0xffff;
}

/** Sum of the IPv4 pseudo-header of an L4 segment (RFC 793 3.1, RFC 768). */
function pseudoHeaderSum(src: string, dst: string, proto: number, l4Length: number): number {
  const ph = Buffer.alloc(12);
  ph.writeUInt32BE(ipToU32(src), 0);
  ph.writeUInt32BE(ipToU32(dst), 4);
  ph[9] = proto;
  ph.writeUInt16BE(l4Length, 10);
  return onesComplementSum(ph);
}

function ethernet(eth: EthSpec | undefined, etherType: number): Buffer {
  const vlan = eth?.vlan;
  const b = Buffer.alloc(vlan ? ETH_HLEN + 4 : ETH_HLEN);
  macBytes(eth?.dst ?? MAC.node).copy(b, 0);
  macBytes(eth?.src ?? MAC.client).copy(b, 6);
  if (vlan) {
    b.writeUInt16BE(vlan.tpid ?? ETH_P.VLAN, 12);
    b.writeUInt16BE(((vlan.pcp ?? 0) << 13) | (vlan.id & 0x0fff), 14);
    b.writeUInt16BE(etherType, 16);
  } else b.writeUInt16BE(etherType, 12);
  return b;
}

function ipv4Header(ip: Ipv4Spec, protocol: number, l4Length: number): Buffer {
  const options = ip.options ?? Buffer.alloc(0);
  if (options.length % 4 || options.length > 40) throw new Error(`IPv4 options: ${options.length} bytes, need a multiple of 4 up to 40`);
  const h = Buffer.alloc(20 + options.length);
  h[0] = 0x40 | ((20 + options.length) / 4);
  h[1] = ip.tos ?? 0;
  h.writeUInt16BE(h.length + l4Length, 2);
  h.writeUInt16BE(ip.id ?? 0x1234, 4);
  h.writeUInt16BE((ip.df ? 0x4000 : 0) | (ip.mf ? 0x2000 : 0) | ((ip.fragOffset ?? 0) & 0x1fff), 6);
  h[8] = ip.ttl ?? 64;
  h[9] = ip.protocol ?? protocol;
  h.writeUInt32BE(ipToU32(ip.src), 12);
  h.writeUInt32BE(ipToU32(ip.dst), 16);
  options.copy(h, 20);
  h.writeUInt16BE(internetChecksum(h), 10);
  return h;
}

/** Build an Ethernet/[VLAN]/IPv4/TCP frame with valid IPv4 and TCP checksums. */
export function tcpPacket(p: { eth?: EthSpec; ip: Ipv4Spec; tcp: TcpSpec }): Buffer {
  const options = p.tcp.options ?? Buffer.alloc(0);
  if (options.length % 4 || options.length > 40) throw new Error(`TCP options: ${options.length} bytes, need a multiple of 4 up to 40`);
  const payload = p.tcp.payload ?? Buffer.alloc(0);
  const t = Buffer.alloc(20 + options.length + payload.length);
  t.writeUInt16BE(p.tcp.sport, 0);
  t.writeUInt16BE(p.tcp.dport, 2);
  t.writeUInt32BE((p.tcp.seq ?? 1000) >>> 0, 4);
  t.writeUInt32BE((p.tcp.ack ?? 0) >>> 0, 8);
  t[12] = ((20 + options.length) / 4) << 4;
  t[13] = p.tcp.flags ?? TCP_FLAG.SYN;
  t.writeUInt16BE(p.tcp.window ?? 64240, 14);
  options.copy(t, 20);
  payload.copy(t, 20 + options.length);
  t.writeUInt16BE(internetChecksum(t, pseudoHeaderSum(p.ip.src, p.ip.dst, PROTO.TCP, t.length)), 16);
  return Buffer.concat([ethernet(p.eth, ETH_P.IPV4), ipv4Header(p.ip, PROTO.TCP, t.length), t]);
}

/** Build an Ethernet/[VLAN]/IPv4/UDP frame with a valid (or, on request, zero) UDP checksum. */
export function udpPacket(p: { eth?: EthSpec; ip: Ipv4Spec; udp: UdpSpec }): Buffer {
  const payload = p.udp.payload ?? Buffer.from('xlb');
  const u = Buffer.alloc(8 + payload.length);
  u.writeUInt16BE(p.udp.sport, 0);
  u.writeUInt16BE(p.udp.dport, 2);
  u.writeUInt16BE(u.length, 4);
  payload.copy(u, 8);
  if (!p.udp.noChecksum) {
    const c = internetChecksum(u, pseudoHeaderSum(p.ip.src, p.ip.dst, PROTO.UDP, u.length));
    u.writeUInt16BE(c === 0 ? 0xffff : c, 6);
  }
  return Buffer.concat([ethernet(p.eth, ETH_P.IPV4), ipv4Header(p.ip, PROTO.UDP, u.length), u]);
}

/** Build an Ethernet/IPv4 frame whose payload is `l4` as given (e.g. ICMP), IPv4 checksum valid. */
export function ipv4RawPacket(p: { eth?: EthSpec; ip: Ipv4Spec & { protocol: number }; l4: Buffer }): Buffer {
  return Buffer.concat([ethernet(p.eth, ETH_P.IPV4), ipv4Header(p.ip, p.ip.protocol, p.l4.length), p.l4]);
}

/**
 * ARP for Ethernet/IPv4 (RFC 826), every field settable, so that a test can
 * also build what a responder must refuse. MACs as `aa:bb:cc:dd:ee:ff`,
 * addresses as dotted quads.
 */
export interface ArpSpec {
  /** 1 request (default), 2 reply. */
  op?: number;
  /** Sender MAC, also the Ethernet source; default {@link MAC}.client. */
  sha?: string;
  spa: string;
  /** Target MAC; default 00:00:00:00:00:00. */
  tha?: string;
  tpa: string;
  /** Hardware type; default 1 (Ethernet). */
  htype?: number;
  /** Protocol type; default IPv4. */
  ptype?: number;
  /** Hardware address length; default 6. */
  hlen?: number;
  /** Protocol address length; default 4. */
  plen?: number;
  /** Ethernet destination; default broadcast. */
  dst?: string;
  vlan?: EthSpec['vlan'];
  /** Bytes after the 28-byte ARP payload (minimum-frame padding). */
  padding?: Buffer;
}

/** Build an Ethernet/[VLAN]/ARP frame: 42 bytes untagged, 46 tagged, plus `padding`. */
export function arpPacket(a: ArpSpec): Buffer {
  const p = Buffer.alloc(28);
  p.writeUInt16BE(a.htype ?? 1, 0);
  p.writeUInt16BE(a.ptype ?? ETH_P.IPV4, 2);
  p[4] = a.hlen ?? 6;
  p[5] = a.plen ?? 4;
  p.writeUInt16BE(a.op ?? 1, 6);
  macBytes(a.sha ?? MAC.client).copy(p, 8);
  p.writeUInt32BE(ipToU32(a.spa), 14);
  macBytes(a.tha ?? '00:00:00:00:00:00').copy(p, 18);
  p.writeUInt32BE(ipToU32(a.tpa), 24);
  const eth = ethernet({ src: a.sha ?? MAC.client, dst: a.dst ?? 'ff:ff:ff:ff:ff:ff', vlan: a.vlan }, ETH_P.ARP);
  return Buffer.concat(a.padding ? [eth, p, a.padding] : [eth, p]);
}

/** Build a broadcast ARP request (RFC 826) asking who has `targetIp`. */
export function arpRequest(p: { senderMac?: string; senderIp: string; targetIp: string }): Buffer {
  return arpPacket({ sha: p.senderMac, spa: p.senderIp, tpa: p.targetIp });
}

/** Build a minimal IPv6/UDP frame (addresses 2001:db8::1 -> 2001:db8::2, RFC 3849) to port `dport`. */
export function ipv6UdpPacket(p: { sport: number; dport: number }): Buffer {
  const h = Buffer.alloc(40 + 8);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(8, 4);
  h[6] = PROTO.UDP;
  h[7] = 64;
  Buffer.from('20010db8000000000000000000000001', 'hex').copy(h, 8);
  Buffer.from('20010db8000000000000000000000002', 'hex').copy(h, 24);
  h.writeUInt16BE(p.sport, 40);
  h.writeUInt16BE(p.dport, 42);
  h.writeUInt16BE(8, 44);
  return Buffer.concat([ethernet(undefined, ETH_P.IPV6), h]);
}

/** What {@link parsePacket} reads from a frame. */
export interface ParsedPacket {
  eth: { dst: string; src: string; vlan?: { tpid: number; id: number }; etherType: number };
  /** Byte offset of the IPv4 header (14, or 18 with a VLAN tag). */
  l3Offset: number;
  ip?: {
    version: number;
    ihl: number;
    tos: number;
    totalLength: number;
    id: number;
    flags: number;
    fragOffset: number;
    ttl: number;
    protocol: number;
    checksum: number;
    src: string;
    dst: string;
    options: Buffer;
  };
  l4?: { sport: number; dport: number; checksum: number; flags?: number; seq?: number; length?: number };
}

/**
 * Parse a frame as far as it goes.
 * @throws Error when the frame is shorter than its Ethernet header, its IPv4 header or its L4 header
 */
export function parsePacket(frame: Buffer): ParsedPacket {
  if (frame.length < ETH_HLEN) throw new Error(`frame of ${frame.length} bytes: shorter than an Ethernet header`);
  let etherType = frame.readUInt16BE(12);
  let l3 = ETH_HLEN;
  let vlan: { tpid: number; id: number } | undefined;
  if (etherType === ETH_P.VLAN || etherType === ETH_P.QINQ) {
    if (frame.length < ETH_HLEN + 4) throw new Error('frame cut inside its VLAN tag');
    vlan = { tpid: etherType, id: frame.readUInt16BE(14) & 0x0fff };
    etherType = frame.readUInt16BE(16);
    l3 += 4;
  }
  const out: ParsedPacket = { eth: { dst: macString(frame.subarray(0, 6)), src: macString(frame.subarray(6, 12)), vlan, etherType }, l3Offset: l3 };
  if (etherType !== ETH_P.IPV4) return out;
  if (frame.length < l3 + 20) throw new Error('frame cut inside its IPv4 header');
  const ihl = frame[l3] & 0x0f;
  if (frame.length < l3 + ihl * 4) throw new Error('frame cut inside its IPv4 options');
  const fo = frame.readUInt16BE(l3 + 6);
  out.ip = {
    version: frame[l3] >> 4,
    ihl,
    tos: frame[l3 + 1],
    totalLength: frame.readUInt16BE(l3 + 2),
    id: frame.readUInt16BE(l3 + 4),
    flags: fo >> 13,
    fragOffset: fo & 0x1fff,
    ttl: frame[l3 + 8],
    protocol: frame[l3 + 9],
    checksum: frame.readUInt16BE(l3 + 10),
    src: u32ToIp(frame.readUInt32BE(l3 + 12)),
    dst: u32ToIp(frame.readUInt32BE(l3 + 16)),
    options: Buffer.from(frame.subarray(l3 + 20, l3 + ihl * 4)),
  };
  const l4 = l3 + ihl * 4;
  if (out.ip.protocol === PROTO.TCP) {
    if (frame.length < l4 + 20) throw new Error('frame cut inside its TCP header');
    out.l4 = {
      sport: frame.readUInt16BE(l4),
      dport: frame.readUInt16BE(l4 + 2),
      seq: frame.readUInt32BE(l4 + 4),
      flags: frame[l4 + 13],
      checksum: frame.readUInt16BE(l4 + 16),
    };
  } else if (out.ip.protocol === PROTO.UDP) {
    if (frame.length < l4 + 8) throw new Error('frame cut inside its UDP header');
    out.l4 = { sport: frame.readUInt16BE(l4), dport: frame.readUInt16BE(l4 + 2), length: frame.readUInt16BE(l4 + 4), checksum: frame.readUInt16BE(l4 + 6) };
  }
  return out;
}

/** Result of {@link verifyChecksums}: 'absent' is a UDP checksum of 0. */
export interface ChecksumVerdict {
  ip: boolean;
  l4: boolean | 'absent';
}

/**
 * Recompute the IPv4 header checksum and the TCP/UDP checksum (pseudo-header
 * included, segment length from the IPv4 total length) of an IPv4 frame from
 * scratch. A checksum is valid when the one's complement sum over the data
 * including it is 0xffff (RFC 1071).
 * @throws Error when the frame is not a whole IPv4 TCP/UDP packet
 */
export function verifyChecksums(frame: Buffer): ChecksumVerdict {
  const p = parsePacket(frame);
  if (!p.ip || !p.l4) throw new Error('not an IPv4 TCP/UDP frame');
  const l3 = p.l3Offset;
  if (frame.length < l3 + p.ip.totalLength) throw new Error(`frame of ${frame.length} bytes shorter than its IPv4 total length ${p.ip.totalLength}`);
  const ipOk = onesComplementSum(frame.subarray(l3, l3 + p.ip.ihl * 4)) === 0xffff;
  const seg = frame.subarray(l3 + p.ip.ihl * 4, l3 + p.ip.totalLength);
  if (p.ip.protocol === PROTO.UDP && p.l4.checksum === 0) return { ip: ipOk, l4: 'absent' };
  const l4Ok = onesComplementSum(seg, pseudoHeaderSum(p.ip.src, p.ip.dst, p.ip.protocol, seg.length)) === 0xffff;
  return { ip: ipOk, l4: l4Ok };
}

/** Cut a frame to its first `length` bytes (a copy). */
export function truncate(frame: Buffer, length: number): Buffer {
  return Buffer.from(frame.subarray(0, length));
}
