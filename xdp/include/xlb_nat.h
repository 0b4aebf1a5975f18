/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_nat.h: rewriting a packet's 5-tuple with incremental checksum updates,
 * and the reverse NAT entries that let replies be restored: for a local
 * backend keyed by backend -> client, for a remote one by backend -> node
 * IP:SNAT port, where the entry also owns the SNAT port.
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

/* True when reverse NAT entry `entry` restores the same client -> frontend
 * flow as `want`. */
static __always_inline bool xlb_rnat_same_flow(const struct xlb_rnat_entry *entry,
					       const struct xlb_rnat_entry *want)
{
	return entry->client_addr == want->client_addr && entry->client_port == want->client_port &&
	       entry->vip == want->vip && entry->vip_port == want->vip_port;
}

/* The reverse NAT entry that restores client -> frontend `flow`. */
static __always_inline struct xlb_rnat_entry xlb_rnat_entry_of(const struct xlb_flow_key *flow,
							       __u32 service_id, __u32 flags)
{
	struct xlb_rnat_entry entry = {
		.vip = flow->daddr,
		.client_addr = flow->saddr,
		.vip_port = flow->dport,
		.client_port = flow->sport,
		.service_id = service_id,
		.flags = flags,
	};

	return entry;
}

/* Write the reverse NAT entry for `flow` DNATed to a local backend: keyed
 * by the reply (backend -> client), read by the tc egress program.
 * 0 or a negative errno. */
static __always_inline long xlb_rnat_store_local(const struct xlb_flow_key *flow,
						 const struct xlb_backend *backend, __u32 service_id)
{
	struct xlb_flow_key reply = {
		.saddr = backend->addr,
		.daddr = flow->saddr,
		.sport = backend->port,
		.dport = flow->sport,
		.proto = flow->proto,
	};
	struct xlb_rnat_entry entry = xlb_rnat_entry_of(flow, service_id, 0);

	return bpf_map_update_elem(&xlb_rnat, &reply, &entry, BPF_ANY);
}

/* Allocate a SNAT port on `node_addr` for `flow` to a remote backend by
 * inserting its reverse NAT entry (backend -> node:port) with BPF_NOEXIST:
 * the first port is min + hash % range, then the next ones (wrapping), at
 * most XLB_SNAT_RETRIES in all. A port whose entry already restores this
 * same flow (its conntrack entry was evicted) is reused.
 * Returns the port in network order, or 0 when all tries are taken (or
 * there is no node address or range to take from). */
static __always_inline __be16 xlb_snat_port_alloc(const struct xlb_flow_key *flow,
						  const struct xlb_backend *backend, __u32 service_id,
						  __u32 hash, __be32 node_addr, __u16 port_min,
						  __u16 port_max)
{
	struct xlb_flow_key reply = {
		.saddr = backend->addr,
		.daddr = node_addr,
		.sport = backend->port,
		.proto = flow->proto,
	};
	struct xlb_rnat_entry entry = xlb_rnat_entry_of(flow, service_id, XLB_CT_F_SNAT);
	__u32 range, offset;
	int i;

	if (!node_addr || !port_min || port_max < port_min)
		return 0;
	range = (__u32)port_max - port_min + 1;
	offset = hash % range;
	for (i = 0; i < XLB_SNAT_RETRIES; i++) {
		const struct xlb_rnat_entry *taken;

		reply.dport = bpf_htons(port_min + offset);
		if (!bpf_map_update_elem(&xlb_rnat, &reply, &entry, BPF_NOEXIST))
			return reply.dport;
		taken = bpf_map_lookup_elem(&xlb_rnat, &reply);
		if (taken && xlb_rnat_same_flow(taken, &entry))
			return reply.dport;
		offset = offset + 1 == range ? 0 : offset + 1;
	}
	return 0;
}

/* Remove the reverse NAT entry that conntrack entry `stale` made for `flow`
 * when the flow leaves that backend, if it still belongs to the flow. */
static __always_inline void xlb_rnat_forget(const struct xlb_flow_key *flow,
					    const struct xlb_ct_entry *stale, __be32 node_addr)
{
	struct xlb_flow_key reply = {
		.saddr = stale->backend_addr,
		.daddr = flow->saddr,
		.sport = stale->backend_port,
		.dport = flow->sport,
		.proto = flow->proto,
	};
	struct xlb_rnat_entry want = xlb_rnat_entry_of(flow, 0, 0);
	const struct xlb_rnat_entry *entry;

	if (stale->flags & XLB_CT_F_SNAT) {
		reply.daddr = node_addr;
		reply.dport = stale->snat_port;
	}
	entry = bpf_map_lookup_elem(&xlb_rnat, &reply);
	if (entry && xlb_rnat_same_flow(entry, &want))
		bpf_map_delete_elem(&xlb_rnat, &reply);
}

#endif /* XLB_NAT_H */
