/**
 * Flow events from the datapath (xdp/include/xlb_events.h): a new flow
 * placed on its backend, a packet dropped and why, read from the xlb_events
 * ring buffer and decoded.
 */
import { decode, dropReasonNames, enums } from './codec.js';
import { RingBufferReader, type BpfMap } from './bpf.js';

const TYPES = enums.xlb_event_type;
const POINTS = enums.xlb_event_point;

/** One event as the datapath sent it. */
export interface FlowEvent {
  /** CLOCK_MONOTONIC, ns (bpf_ktime_get_ns). */
  monotonicNs: bigint;
  type: 'new-flow' | 'drop';
  /** The drop reason's name (`no_backend`, ...), for drops. */
  dropReason?: string;
  protocol: 'TCP' | 'UDP';
  source: { ip: string; port: number };
  destination: { ip: string; port: number };
  /** TCP flag bits of the packet (SYN 0x02, ACK 0x10, ...); 0 for UDP. */
  tcpFlags: number;
  /** The service ID the packet was for; 0 when none is known. */
  serviceId: number;
  /** The backend a new flow was placed on. */
  backend?: { ip: string; port: number };
  /** The node's source port towards a remote backend. */
  snatPort?: number;
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
    type: e.type === TYPES.XLB_EVENT_DROP ? 'drop' : 'new-flow',
    protocol: e.proto === 17 ? 'UDP' : 'TCP',
    source: { ip: e.saddr, port: e.sport },
    destination: { ip: e.daddr, port: e.dport },
    tcpFlags: e.tcp_flags,
    serviceId: e.service_id,
    point: POINT_NAMES[e.point] ?? 'xdp',
  };
  if (e.type === TYPES.XLB_EVENT_DROP) out.dropReason = dropReasonNames[e.reason] ?? `reason_${e.reason}`;
  if (e.type === TYPES.XLB_EVENT_NEW_FLOW) out.backend = { ip: e.backend_addr, port: e.backend_port };
  if (e.snat_port) out.snatPort = e.snat_port;
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
