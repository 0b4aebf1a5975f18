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
#include "xlb_clock.h"
#include "xlb_conntrack.h"

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

/* The reverse NAT entry that restores client -> frontend `flow`, made at
 * `now` (xlb_now, ticks). */
static __always_inline struct xlb_rnat_entry xlb_rnat_entry_of(const struct xlb_flow_key *flow,
							       __u32 service_id, __u32 flags, __u32 now)
{
	struct xlb_rnat_entry entry = {
		.vip = flow->daddr,
		.client_addr = flow->saddr,
		.vip_port = flow->dport,
		.client_port = flow->sport,
		.service_id = service_id,
		.flags = flags,
		.seen = now,
	};

	return entry;
}

/* The key of the reverse NAT entry of `flow` placed as conntrack entry `ct`
 * says: backend -> node:SNAT port for a SNATed flow (`node_addr` the node
 * IP), backend -> hairpin address:client port for a hairpin flow
 * (`node_addr` the hairpin address, tc), else backend -> client. */
static __always_inline struct xlb_flow_key xlb_rnat_key_of(const struct xlb_flow_key *flow,
							   const struct xlb_ct_entry *ct, __be32 node_addr)
{
	struct xlb_flow_key reply = {
		.saddr = ct->backend_addr,
		.daddr = flow->saddr,
		.sport = ct->backend_port,
		.dport = flow->sport,
		.proto = flow->proto,
	};

	if (ct->flags & XLB_CT_F_SNAT) {
		reply.daddr = node_addr;
		reply.dport = ct->snat_port;
	} else if (ct->flags & XLB_CT_F_HAIRPIN) {
		reply.daddr = node_addr;
	}
	return reply;
}

/* True when the flow of `flow`, placed as `ct`, is over at `now`: silent
 * for longer than the lifetime of its state in both directions. The client's
 * packets refresh ct->seen, replies refresh their reverse NAT entry's
 * (which is read only when the client has been silent that long). */
static __always_inline bool xlb_ct_expired(const struct xlb_flow_key *flow, const struct xlb_ct_entry *ct,
					   __u32 now, __be32 node_addr)
{
	struct xlb_rnat_entry want = xlb_rnat_entry_of(flow, 0, 0, 0);
	const struct xlb_rnat_entry *rnat;
	struct xlb_flow_key reply;
	__u32 flags = ct->flags;

	if (!xlb_silent_for(now, ct->seen, xlb_ct_lifetime(flow->proto, flags)))
		return false;
	reply = xlb_rnat_key_of(flow, ct, node_addr);
	rnat = bpf_map_lookup_elem(&xlb_rnat, &reply);
	if (!rnat || !xlb_rnat_same_flow(rnat, &want))
		return true;
	return xlb_silent_for(now, rnat->seen, xlb_ct_lifetime(flow->proto, flags | rnat->flags));
}

/* Record a reply on reverse NAT entry `rnat` (a map value): `seen` at most
 * once a tick, CLOSING on the backend's FIN or RST. Plain stores, no map
 * update. */
static __always_inline void xlb_rnat_touch(struct xlb_rnat_entry *rnat, __u8 tcp_flags, __u32 now)
{
	if (rnat->seen != now)
		rnat->seen = now;
	if ((tcp_flags & (XLB_TCP_FIN | XLB_TCP_RST)) && !(rnat->flags & XLB_CT_F_CLOSING))
		__sync_fetch_and_or(&rnat->flags, XLB_CT_F_CLOSING);
}

/* What the SNAT allocator may do with a port another flow holds. */
enum xlb_port_use {
	XLB_PORT_LIVE,    /* its flow is alive: leave it */
	XLB_PORT_STALE,   /* its flow is over: take it */
	XLB_PORT_CLOSED,  /* its flow saw a FIN or RST and has been silent for a
	                   * while, but not yet for the FIN lifetime: take it only
	                   * if every try finds no better port */
};

/* How the port held by reverse NAT entry `taken` (key `reply`) may be used
 * at `now`, and for how many ticks its flow has been silent (`*idle`).
 * The flow is the one its conntrack entry (the port's owner) still places
 * on this backend and port, whose silence is the shorter of the two
 * directions'; or, when the flow has moved on (its conntrack entry is gone,
 * or names another backend or port), the reverse NAT entry alone. */
static __always_inline enum xlb_port_use xlb_snat_port_use(const struct xlb_rnat_entry *taken,
							   const struct xlb_flow_key *reply, __u32 now,
							   __s32 *idle)
{
	struct xlb_flow_key owner = {
		.saddr = taken->client_addr,
		.daddr = taken->vip,
		.sport = taken->client_port,
		.dport = taken->vip_port,
		.proto = reply->proto,
	};
	const struct xlb_ct_entry *ct = bpf_map_lookup_elem(&xlb_conntrack, &owner);
	__u32 flags = taken->flags;
	__s32 silent = (__s32)(now - taken->seen);

	if (ct && (ct->flags & XLB_CT_F_SNAT) && ct->snat_port == reply->dport &&
	    ct->backend_addr == reply->saddr && ct->backend_port == reply->sport) {
		__s32 client_silent = (__s32)(now - ct->seen);

		flags |= ct->flags;
		if (client_silent < silent)
			silent = client_silent;
	}
	*idle = silent;
	if (silent > (__s32)xlb_ct_lifetime(reply->proto, flags))
		return XLB_PORT_STALE;
	if ((flags & XLB_CT_F_CLOSING) && silent >= (__s32)xlb_snat_closed_reuse)
		return XLB_PORT_CLOSED;
	return XLB_PORT_LIVE;
}

/* Give the SNAT port of entry `taken` (stale, or closed) to the flow of `entry`: the
 * first CPU to swap `seen` from the value it judged wins; then the rest of
 * the entry is rewritten (the old flow is over, the new one sends its first
 * packet only after this returns). */
static __always_inline bool xlb_snat_port_claim(struct xlb_rnat_entry *taken, const struct xlb_rnat_entry *entry)
{
	__u32 seen = taken->seen;

	if (__sync_val_compare_and_swap(&taken->seen, seen, entry->seen) != seen)
		return false;
	taken->vip = entry->vip;
	taken->client_addr = entry->client_addr;
	taken->vip_port = entry->vip_port;
	taken->client_port = entry->client_port;
	taken->service_id = entry->service_id;
	taken->flags = entry->flags;
	return true;
}

/* Write the reverse NAT entry for `flow` DNATed to a local backend: keyed
 * by the reply (backend -> client), read by the tc egress program.
 * 0 or a negative errno. */
static __always_inline long xlb_rnat_store_local(const struct xlb_flow_key *flow,
						 const struct xlb_backend *backend, __u32 service_id, __u32 now)
{
	struct xlb_flow_key reply = {
		.saddr = backend->addr,
		.daddr = flow->saddr,
		.sport = backend->port,
		.dport = flow->sport,
		.proto = flow->proto,
	};
	struct xlb_rnat_entry entry = xlb_rnat_entry_of(flow, service_id, 0, now);

	return bpf_map_update_elem(&xlb_rnat, &reply, &entry, BPF_ANY);
}

/* Allocate a SNAT port on `node_addr` for `flow` to a remote backend by
 * inserting its reverse NAT entry (backend -> node:port) with BPF_NOEXIST:
 * the first port is min + hash % range, then the next ones (wrapping), at
 * most XLB_SNAT_RETRIES in all and each port of the range at most once. A
 * port whose entry already restores this same flow (its conntrack entry was
 * evicted or expired) is reused, and so is a port whose flow is over
 * (xlb_snat_port_use); when all tries are held, the port of the closed flow
 * silent the longest.
 * Returns the port in network order, or 0 when all tries are taken (or
 * there is no node address or range to take from). */
static __always_inline __be16 xlb_snat_port_alloc(const struct xlb_flow_key *flow,
						  const struct xlb_backend *backend, __u32 service_id,
						  __u32 hash, __be32 node_addr, __u16 port_min,
						  __u16 port_max, __u32 now)
{
	struct xlb_flow_key reply = {
		.saddr = backend->addr,
		.daddr = node_addr,
		.sport = backend->port,
		.proto = flow->proto,
	};
	struct xlb_rnat_entry entry = xlb_rnat_entry_of(flow, service_id, XLB_CT_F_SNAT, now);
	struct xlb_rnat_entry *taken;
	__be16 closed_port = 0;
	__s32 closed_idle = 0, idle;
	__u32 range, offset;
	int i;

	if (!node_addr || !port_min || port_max < port_min)
		return 0;
	range = (__u32)port_max - port_min + 1;
	offset = hash % range;
	for (i = 0; i < XLB_SNAT_RETRIES && i < range; i++) {
		enum xlb_port_use use;

		reply.dport = bpf_htons(port_min + offset);
		offset = offset + 1 == range ? 0 : offset + 1;
		if (!bpf_map_update_elem(&xlb_rnat, &reply, &entry, BPF_NOEXIST))
			return reply.dport;
		taken = bpf_map_lookup_elem(&xlb_rnat, &reply);
		if (!taken)
			continue;
		if (xlb_rnat_same_flow(taken, &entry)) {
			/* the flow again, placed afresh: its state starts over */
			taken->seen = now;
			taken->service_id = service_id;
			taken->flags = XLB_CT_F_SNAT;
			return reply.dport;
		}
		use = xlb_snat_port_use(taken, &reply, now, &idle);
		if (use == XLB_PORT_STALE && xlb_snat_port_claim(taken, &entry))
			return reply.dport;
		if (use == XLB_PORT_CLOSED && idle > closed_idle) {
			closed_port = reply.dport;
			closed_idle = idle;
		}
	}
	/* Every try is held. Rather than drop the SYN (its client would retry
	 * in a second), take the port of the closed flow silent the longest. */
	if (!closed_port)
		return 0;
	reply.dport = closed_port;
	taken = bpf_map_lookup_elem(&xlb_rnat, &reply);
	if (taken && xlb_snat_port_claim(taken, &entry))
		return closed_port;
	return 0;
}

/* Remove the reverse NAT entry that conntrack entry `stale` made for `flow`
 * when the flow leaves that backend, if it still belongs to the flow. */
static __always_inline void xlb_rnat_forget(const struct xlb_flow_key *flow,
					    const struct xlb_ct_entry *stale, __be32 node_addr)
{
	struct xlb_flow_key reply = xlb_rnat_key_of(flow, stale, node_addr);
	struct xlb_rnat_entry want = xlb_rnat_entry_of(flow, 0, 0, 0);
	const struct xlb_rnat_entry *entry;

	entry = bpf_map_lookup_elem(&xlb_rnat, &reply);
	if (entry && xlb_rnat_same_flow(entry, &want))
		bpf_map_delete_elem(&xlb_rnat, &reply);
}

#endif /* XLB_NAT_H */
