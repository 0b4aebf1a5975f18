/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_consts.h: compile-time limits and protocol constants of the datapath.
 * Limits that user space must also know (Maglev sizes, SNAT retries) live in
 * xlb_types.h as enum constants so that they reach TypeScript through BTF;
 * the ones here only shape the C.
 */
#ifndef XLB_CONSTS_H
#define XLB_CONSTS_H

/* Default map sizes (docs/datapath.md, "Maps"); the loader may override any
 * of them before load with bpf_map__set_max_entries. */

/* Four frontends per service (VIP, ExternalIP, node port, second protocol)
 * for the largest service count below. */
#define XLB_FRONTENDS_MAX 262144
/* Two backends per service on average; IDs are never 0, so slot 0 is spare. */
#define XLB_BACKENDS_MAX 262144
/* Service IDs index xlb_maglev and xlb_service_stats. */
#define XLB_SERVICES_MAX 131072
/* Tracked flows: an LRU, so a full table evicts the least recently used
 * flow instead of failing inserts. */
#define XLB_CONNTRACK_MAX 131072
/* One reverse NAT entry per tracked flow. */
#define XLB_RNAT_MAX 131072
/* Sets of xlb_snat_sets in the object (the loader sizes the map). */
#define XLB_SNAT_SETS_MAX 4096
/* Clients remembered for sessionAffinity: ClientIP (an LRU: the least
 * recently seen client is forgotten first, as an expired one would be). */
#define XLB_AFFINITY_MAX 65536
#define XLB_SOCK_RNAT_MAX 131072
#define XLB_SOCK_AFFINITY_MAX 65536
/* loadBalancerSourceRanges CIDRs, summed over services. */
#define XLB_SOURCE_RANGES_MAX 16384

/* The default SNAT port range is XLB_SNAT_PORT_MIN/MAX_DEFAULT of enum
 * xlb_limits (xlb_types.h), where BTF carries it to TypeScript. */

/* IPv4 fragment bits of iphdr.frag_off (host order; RFC 791): "more
 * fragments" and the 13-bit offset. Not in the UAPI headers. */
#define XLB_IP_MF 0x2000
#define XLB_IP_OFFSET 0x1fff

/* TCP header flag bits (RFC 9293 3.1), the 14th byte of the header. */
#define XLB_TCP_FIN 0x01
#define XLB_TCP_SYN 0x02
#define XLB_TCP_RST 0x04
#define XLB_TCP_ACK 0x10
#define XLB_TCP_FLAGS_OFF 13

/* Address family of bpf_fib_lookup (AF_INET from <sys/socket.h>, which is a
 * libc header and not available to -target bpf). */
#define XLB_AF_INET 2

/* Longest header chain the datapath reads: Ethernet (14), one VLAN tag (4),
 * IPv4 with the largest options (60), TCP without options (20). The tc
 * program pulls this much into the linear part of the skb. */
#define XLB_MAX_HEADER_LEN (14 + 4 + 60 + 20)

/* Bytes of the flow events' ring buffer (a power of 2, a multiple of the
 * page size) as compiled; the agent's loader sizes it from the rate
 * (src/datapath/flow_events.ts, eventRingBytes). */
#define XLB_EVENTS_RING_BYTES (256 * 1024)

#endif /* XLB_CONSTS_H */
