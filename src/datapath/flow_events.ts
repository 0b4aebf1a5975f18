/**
 * Flow events from the datapath (xdp/include/xlb_events.h): a new flow
 * placed on its backend, a packet dropped and why, read from the xlb_events
 * ring buffer and decoded.
 */
import { decode, dropReasonNames, enums, sizeOf } from './codec.js';
import { RingBufferReader, type BpfMap } from './bpf.js';

const TYPES = enums.xlb_event_type;

/** How often the agent reads the ring, ms. */
export const FLOW_READ_INTERVAL_MS = 100;

/**
 * Bytes of the xlb_events ring for `eventsPerSecond` per CPU on `cpus`
 * CPUs: what every CPU may send at the full rate in two of the agent's
 * reads (each event 40 bytes and the ring's 8-byte header), as a power of
 * two (the kernel's rule for BPF ring buffers) from 16 KiB to 64 MiB. No
 * larger: a ring that stays in the CPU's caches costs a new flow less (an
 * event written to a line that must first come from memory costs more than
 * the rest of the event; bench/datapath/events.ts).
 */
export function eventRingBytes(eventsPerSecond: number, cpus: number): number {
  const want = cpus * eventsPerSecond * ((2 * FLOW_READ_INTERVAL_MS) / 1000) * (sizeOf('xlb_flow_event') + 8);
  let bytes = 16 * 1024;
  while (bytes < want && bytes < 64 * 1024 * 1024) bytes *= 2;
  return bytes;
}
const POINTS = enums.xlb_event_point;

/** One event as the datapath sent it. */
export interface FlowEvent {
  /** CLOCK_MONOTONIC, ns (bpf_ktime_get_ns). */
  monotonicNs: bigint;
  /** A new flow placed, a packet dropped, or a flow the client closed (its first FIN or RST). */
  type: 'new-flow' | 'drop' | 'flow-end';
  /** The drop reason's name (`no_backend`, ...), for drops. */
  dropReason?: string;
  protocol: 'TCP' | 'UDP';
  source: { ip: string; port: number };
  destination: { ip: string; port: number };
  /** TCP flag bits of the packet (SYN 0x02, ACK 0x10, ...); 0 for UDP. */
  tcpFlags: number;
  /** The service ID the packet was for; 0 when none is known. */
  serviceId: number;
  /** The backend a new flow was placed on, or a closed flow's. */
  backend?: { ip: string; port: number };
  /** The node's source port towards a remote backend. */
  snatPort?: number;
  /** How a new flow's backend was chosen, and the flow hash (its Maglev slot is hash % M). */
  selection?: { by: 'maglev' | 'affinity'; hash: number };
  /** Where the datapath saw the packet. */
  point: 'xdp' | 'tc-egress' | 'tc-pod' | 'sock';
}

const POINT_NAMES: Record<number, FlowEvent['point']> = {
  [POINTS.XLB_POINT_XDP]: 'xdp',
  [POINTS.XLB_POINT_TC_EGRESS]: 'tc-egress',
  [POINTS.XLB_POINT_TC_POD]: 'tc-pod',
  [POINTS.XLB_POINT_SOCK]: 'sock',
};

/**
 * One `struct xlb_flow_event` record, decoded.
 * @throws Error when the record is shorter than the struct
 */
export function decodeFlowEvent(record: Buffer): FlowEvent {
  const e = decode('xlb_flow_event', record);
  const out: FlowEvent = {
    monotonicNs: BigInt(e.ts_ns),
    type: e.type === TYPES.XLB_EVENT_DROP ? 'drop' : e.type === TYPES.XLB_EVENT_FLOW_END ? 'flow-end' : 'new-flow',
    protocol: e.proto === 17 ? 'UDP' : 'TCP',
    source: { ip: e.saddr, port: e.sport },
    destination: { ip: e.daddr, port: e.dport },
    tcpFlags: e.tcp_flags,
    serviceId: e.service_id,
    point: POINT_NAMES[e.point] ?? 'xdp',
  };
  if (e.type === TYPES.XLB_EVENT_DROP) out.dropReason = dropReasonNames[e.reason] ?? `reason_${e.reason}`;
  if (e.type === TYPES.XLB_EVENT_NEW_FLOW || e.type === TYPES.XLB_EVENT_FLOW_END) out.backend = { ip: e.backend_addr, port: e.backend_port };
  if (e.snat_port) out.snatPort = e.snat_port;
  if (e.type === TYPES.XLB_EVENT_NEW_FLOW) out.selection = { by: e.selection === enums.xlb_event_selection.XLB_SELECT_AFFINITY ? 'affinity' : 'maglev', hash: e.hash >>> 0 };
  return out;
}

/**
 * Read a datapath's flow events: `poll()` hands every event waiting in the
 * ring buffer to `onEvent` (call it from a timer), and `suppressed()` sums
 * the events the rate limit or a full ring kept back, over CPUs.
 */
export class FlowEventReader {
  private readonly reader: RingBufferReader;

  /**
   * @param maps the loaded object's xlb_events and xlb_event_limit
   * @throws BpfError when the reader cannot be set up
   */
  constructor(
    private readonly maps: { events: BpfMap; limit: BpfMap },
    onEvent: (e: FlowEvent) => void,
  ) {
    this.reader = new RingBufferReader(maps.events, (r) => onEvent(decodeFlowEvent(r)));
  }

  /** Hand the waiting events on; how many there were. */
  poll(): number {
    return this.reader.consume();
  }

  /** Events not sent, summed over CPUs. */
  suppressed(): bigint {
    let n = 0n;
    for (const v of this.maps.limit.lookupPerCpu(Buffer.alloc(4))) n += v.readBigUInt64LE(8);
    return n;
  }

  close(): void {
    this.reader.close();
  }
}
