/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_nat.h: rewriting a packet's 5-tuple in XDP with incremental checksum
 * updates (RFC 1624). What a reply is restored to lives in xlb_replies.h.
 */
#ifndef XLB_NAT_H
#define XLB_NAT_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include "xlb_types.h"
#include "xlb_maps.h"
#include "xlb_parse.h"
#include "xlb_csum.h"

/* Apply `diff` to the packet's TCP or UDP checksum (XLB_PARSE_OK packets). */
static __always_inline void xlb_l4_csum_update(struct xlb_pkt *pkt, __u64 diff)
{
	if (pkt->flow.proto == IPPROTO_UDP)
		*pkt->l4_check = xlb_udp_csum_updated(*pkt->l4_check, diff);
	else
		*pkt->l4_check = xlb_csum_updated(*pkt->l4_check, diff);
}

/* DNAT: the destination becomes addr:port; IP and L4 checksums follow
 * (the address is part of the L4 pseudo-header, RFC 793 3.1, RFC 768). */
static __always_inline void xlb_nat_rewrite_dst(struct xlb_pkt *pkt, __be32 addr, __be16 port)
{
	__u64 addr_diff = xlb_csum_diff32(0, pkt->flow.daddr, addr);

	pkt->ip->daddr = addr;
	pkt->ports[1] = port;
	pkt->ip->check = xlb_csum_updated(pkt->ip->check, addr_diff);
	xlb_l4_csum_update(pkt, xlb_csum_diff16(addr_diff, pkt->flow.dport, port));
}

/* Rewrite both ends of a packet this node forwards itself (SNATed request
 * to a remote backend, or its reply to the client) and, when `forward_here`,
 * decrement the TTL as a router would (RFC 1812 5.3.1); a packet left to the
 * stack to forward keeps its TTL, the stack decrements it. The caller has
 * checked TTL > 1. */
static __always_inline void xlb_nat_rewrite_forwarded(struct xlb_pkt *pkt, __be32 saddr, __be16 sport,
						      __be32 daddr, __be16 dport, bool forward_here)
{
	struct iphdr *ip = pkt->ip;
	/* TTL and protocol form one 16-bit word of the header checksum */
	__be16 *ttl_proto = (__be16 *)&ip->ttl;
	__be16 old_ttl_proto = *ttl_proto;
	__be16 new_ttl_proto = forward_here ? bpf_htons(bpf_ntohs(old_ttl_proto) - 0x100) : old_ttl_proto;
	__u64 addr_diff;

	addr_diff = xlb_csum_diff32(0, pkt->flow.saddr, saddr);
	addr_diff = xlb_csum_diff32(addr_diff, pkt->flow.daddr, daddr);

	ip->saddr = saddr;
	ip->daddr = daddr;
	*ttl_proto = new_ttl_proto;
	pkt->ports[0] = sport;
	pkt->ports[1] = dport;
	ip->check = xlb_csum_updated(ip->check, xlb_csum_diff16(addr_diff, old_ttl_proto, new_ttl_proto));
	xlb_l4_csum_update(pkt, xlb_csum_diff16(xlb_csum_diff16(addr_diff, pkt->flow.sport, sport),
						pkt->flow.dport, dport));
}

#endif /* XLB_NAT_H */
