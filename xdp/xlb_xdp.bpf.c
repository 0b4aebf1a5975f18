// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xlb_xdp_ingress: XDP on each external interface (docs/datapath.md, "XDP
 * ingress, as the packet travels"; the step numbers below are the doc's).
 * Read top to bottom, this file follows a packet: the entry point parses,
 * finds the frontend and keeps established flows on their backend (1 to 5),
 * a new flow is placed (3 to 5), a packet this node forwards is sent out
 * (5, 6), and a reply from a remote backend is restored (6).
 *
 * The established path costs a frontend lookup, a conntrack lookup (a
 * SNATed flow's in its set of xlb_snat_sets, for a service with a remote
 * backend; else xlb_conntrack), a few inlined array lookups (backend still
 * there? per-CPU counters, next-hop generation) and a read of the coarse
 * clock, with no map updates and, for a remote backend, no FIB lookup: the
 * next hop is cached in the conntrack entry. What a packet changes in its
 * entry (the tick it was seen, once a tick of ~1 s; the TCP state, once a
 * state; the next hop after a change) is stored into the map value in place.
 *
 * A new flow costs one write: a SYN is placed without looking for an entry
 * (it opens a connection); a flow to a local backend is one xlb_conntrack
 * insert, its replies finding it through the backend's frontends
 * (xlb_reply_frontends, else an element of xlb_replies); a SNATed flow is one
 * element of xlb_snat_sets, both directions, its SNAT port naming its set
 * (xlb_snat.h), with its backend's next hop (xlb_backend_nh). Above the
 * SYN-flood guard's rate a local flow gets no entry, and a SNATed one takes
 * no way of an answered flow (xlb_flood_allows_state).
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xlb_types.h"
#include "xlb_consts.h"
#include "xlb_maps.h"
#include "xlb_parse.h"
#include "xlb_csum.h"
#include "xlb_stats.h"
#include "xlb_maglev.h"
#include "xlb_conntrack.h"
#include "xlb_nat.h"
#include "xlb_replies.h"
#include "xlb_snat.h"
#include "xlb_policy.h"
#include "xlb_lb.h"
#include "xlb_arp.h"
#include "xlb_events.h"

/* Run-time knobs, set by the loader before load (docs/datapath.md). */

/* The node IP: SNAT source towards remote backends, destination of their
 * replies. Left 0, no reply is recognised and packets for remote backends
 * drop as XLB_DROP_SNAT_EXHAUSTED (no port can be had on no address). */
const volatile __be32 xlb_node_addr = 0;

/* Count a drop for `reason` and return the verdict that drops. */
static __always_inline int xlb_drop(enum xlb_drop_reason reason)
{
	xlb_count_drop(reason);
	return XDP_DROP;
}

/* Count a drop for `reason` of a new flow's packet `pkt` to service
 * `service_id`, with a flow event, and return the verdict that drops. */
static __always_inline int xlb_drop_flow(enum xlb_drop_reason reason, const struct xlb_pkt *pkt, __u32 service_id)
{
	xlb_event(pkt, XLB_EVENT_DROP, reason, service_id, 0, 0, 0, XLB_POINT_XDP);
	return xlb_drop(reason);
}

/* The steps after the entry point, defined below in the order a packet
 * meets them. */
static __always_inline int xlb_place_flow(struct xdp_md *ctx, struct xlb_pkt *pkt, const struct xlb_service *svc,
					  const struct xlb_ct_entry *stale, struct xlb_snat_set *stale_set,
					  __u32 stale_way, __u32 now);
static __always_inline int xlb_forward(struct xdp_md *ctx, struct xlb_pkt *pkt, __be32 saddr,
				       __be16 sport, __be32 daddr, __be16 dport, struct xlb_ct_entry *nh,
				       __u32 backend_id);
static __always_inline bool xlb_is_to_snat_port(const struct xlb_flow_key *flow);
static __always_inline int xlb_reply_from_remote(struct xdp_md *ctx, struct xlb_pkt *pkt, __u32 len);

SEC("xdp")
int xlb_xdp_ingress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 len = data_end - data;
	struct xlb_ct_entry *ct;
	struct xlb_snat_set *set = NULL;
	__u32 way = 0;
	const struct xlb_service *svc;
	struct xlb_frontend_key frontend;
	enum xlb_parse_result parsed;
	struct xlb_pkt pkt;
	__u32 now;

#ifdef XLB_UPGRADE_PROBE
	{ volatile __u32 xlb_upgrade_probe = len; (void)xlb_upgrade_probe; } /* `make upgrade-probe` only: other instructions, same behaviour */
#endif
	/* 1. Parse; anything but an IPv4 TCP/UDP first fragment passes, except
	 * an ARP request for a VIP this node announces in layer 2 mode, which
	 * is answered (xlb_arp.h). Off the TCP/UDP path: no cost there. */
	parsed = xlb_parse_ipv4_l4(data, data_end, len, &pkt);
	if (parsed == XLB_PARSE_PASS)
		return xlb_arp_respond(ctx);

	/* 2. Frontend lookup. A miss may be a reply to a SNAT port (6), or
	 * nothing of ours (7). */
	frontend.addr = pkt.flow.daddr;
	frontend.port = pkt.flow.dport;
	frontend.proto = pkt.flow.proto;
	frontend.pad = 0;
	svc = bpf_map_lookup_elem(&xlb_frontends, &frontend);
	if (!svc) {
		if (parsed == XLB_PARSE_OK && xlb_is_to_snat_port(&pkt.flow))
			return xlb_reply_from_remote(ctx, &pkt, len);
		return XDP_PASS;
	}
	/* A frontend served only inside the cluster (a ClusterIP) is not
	 * this program's: the socket hooks and tc on pod interfaces serve it. */
	if (!svc->id)
		return XDP_PASS;
	if (parsed == XLB_PARSE_TRUNCATED)
		return xlb_drop(XLB_DROP_TRUNCATED);
	xlb_count_service(svc->id, len);

	/* 3. Conntrack: an established flow keeps its current backend, until
	 * it has been silent for the lifetime of its state or the client opens
	 * a new connection from the port of a closing one. A SYN opens one:
	 * it is placed without a lookup (as Katran does). */
	now = xlb_now();
	if (xlb_is_syn(pkt.tcp_flags))
		return xlb_place_flow(ctx, &pkt, svc, NULL, NULL, 0, now);
	/* A SNATed flow is in its set of xlb_snat_sets, looked in only for a
	 * service with a remote backend; others in xlb_conntrack (where an
	 * entry with SNAT is an older agent's: placed again). */
	ct = NULL;
	if (svc->flags & XLB_SVC_F_REMOTE) {
		struct xlb_snat_flow *w = xlb_snat_find(&pkt.flow, &set, &way);

		if (w)
			ct = &w->ct;
	}
	if (!ct)
		ct = bpf_map_lookup_elem(&xlb_conntrack, &pkt.flow);
	if (!ct || (!set && (ct->flags & XLB_CT_F_SNAT)) || !xlb_ct_is_current(ct, svc->id) ||
	    xlb_ct_reopened(ct, pkt.tcp_flags) || xlb_ct_expired(&pkt.flow, ct, now, xlb_node_addr))
		return xlb_place_flow(ctx, &pkt, svc, ct, set, way, now);
	if (set && ct->seen != now)
		xlb_snat_ref(set, way);
	if (xlb_ct_touch(ct, pkt.flow.proto, pkt.tcp_flags, now))
		xlb_event(&pkt, XLB_EVENT_FLOW_END, 0, svc->id, ct->backend_addr, ct->backend_port,
			  (ct->flags & XLB_CT_F_SNAT) ? ct->snat_port : 0, XLB_POINT_XDP);

	/* 4. Local backend: DNAT, the stack does the rest. */
	if (!(ct->flags & XLB_CT_F_SNAT)) {
		xlb_nat_rewrite_dst(&pkt, ct->backend_addr, ct->backend_port);
		return XDP_PASS;
	}
	/* 5. Remote backend: DNAT + SNAT with the flow's port, forward. */
	return xlb_forward(ctx, &pkt, xlb_node_addr, ct->snat_port, ct->backend_addr, ct->backend_port, ct, 0);
}

/* Steps 3 to 5 for a flow without a current conntrack entry (`stale` is
 * the outdated one, if any: in xlb_conntrack, or way `stale_way` of
 * `stale_set` of xlb_snat_sets; `now` from xlb_now): a valid IPv4 header, the
 * service's policies
 * (source ranges, ClientIP affinity; xlb_policy.h), else the Maglev pick;
 * how its replies are restored and its conntrack entry (unless the SYN-flood
 * guard holds it back), then DNAT and pass to the stack (local backend) or
 * DNAT + SNAT and forward (remote backend). */
static __always_inline int xlb_place_flow(struct xdp_md *ctx, struct xlb_pkt *pkt, const struct xlb_service *svc,
					  const struct xlb_ct_entry *stale, struct xlb_snat_set *stale_set,
					  __u32 stale_way, __u32 now)
{
	__u32 service_id = svc->id;
	__u32 hash = xlb_flow_hash(&pkt->flow);
	__u32 backend_id = 0;
	__u8 selection = XLB_SELECT_MAGLEV;
	const struct xlb_backend *backend;
	struct xlb_ct_entry entry;
	struct xlb_snat_flow *w;
	bool keep;
	int verdict;

	/* Nothing is created for a header the kernel would have dropped. */
	if (!xlb_ipv4_csum_ok(pkt, (void *)(long)ctx->data_end))
		return xlb_drop_flow(XLB_DROP_BAD_CHECKSUM, pkt, service_id);
	if ((svc->flags & XLB_SVC_F_SOURCE_RANGES) && !xlb_source_allowed(service_id, pkt->flow.saddr))
		return xlb_drop_flow(XLB_DROP_SOURCE_RANGE, pkt, service_id);
	backend = xlb_select_backend(svc, service_id, svc->flags & XLB_SVC_F_EXT_LOCAL, pkt->flow.saddr, hash,
				     &backend_id, &selection);
	if (!backend)
		return xlb_drop_flow(XLB_DROP_NO_BACKEND, pkt, service_id);
	if (stale && !stale_set)
		xlb_reply_forget(&pkt->flow, stale, xlb_node_addr);
	keep = xlb_flood_allows_state(now);

	/* Step 4: local backend; the stack forwards to the pod and
	 * decrements the TTL. */
	if (backend->flags & XLB_BE_F_LOCAL) {
		/* Its replies find its conntrack entry through the frontends of
		 * the backend (xlb_reply_frontends), or, for a frontend not listed
		 * there or a flow the guard leaves without an entry, an element. */
		if ((!keep || !xlb_reply_by_frontend(backend, &pkt->flow)) &&
		    xlb_reply_store(&pkt->flow, backend->addr, backend->port, pkt->flow.saddr, service_id, 0, now, keep))
			return xlb_drop_flow(XLB_DROP_CT_INSERT, pkt, service_id);
		if (keep && xlb_ct_store(&pkt->flow, backend_id, backend, 0, service_id, pkt->tcp_flags, now, 0))
			return xlb_drop_flow(XLB_DROP_CT_INSERT, pkt, service_id);
		/* A SNATed flow placed again here gives its port back (a SYN was
		 * placed without a lookup: its set is looked in, for a service
		 * whose flows may be SNATed, since that is looked in first). */
		if (!stale_set && (svc->flags & XLB_SVC_F_REMOTE))
			xlb_snat_find(&pkt->flow, &stale_set, &stale_way);
		if (stale_set)
			xlb_snat_forget(stale_set, xlb_snat_set_of(xlb_snat_flow_hash(&pkt->flow)), stale_way);
		xlb_event_placed(pkt, service_id, backend->addr, backend->port, 0, XLB_POINT_XDP, hash, selection);
		xlb_nat_rewrite_dst(pkt, backend->addr, backend->port);
		return XDP_PASS;
	}

	/* Step 5: remote backend. Nothing is allocated for a packet that the
	 * stack must answer with time exceeded. */
	if (pkt->ip->ttl <= 1)
		return XDP_PASS;
	/* One element: the flow, its port and how its replies are restored
	 * (xlb_snat.h); the next hop is cached in it by xlb_forward. Above the
	 * flood guard's rate it takes no way whose flow was answered. */
	entry = xlb_ct_entry_of(&pkt->flow, backend_id, backend, 0, service_id, pkt->tcp_flags, now, 0);
	entry.flags |= XLB_CT_F_SNAT;
	w = xlb_snat_place(&pkt->flow, backend, &entry, now, keep);
	if (!w)
		return xlb_drop_flow(XLB_DROP_SNAT_EXHAUSTED, pkt, service_id);
	/* An older agent's entry for it would be found first. */
	if (stale && !stale_set)
		bpf_map_delete_elem(&xlb_conntrack, &pkt->flow);
	verdict = xlb_forward(ctx, pkt, xlb_node_addr, entry.snat_port, backend->addr, backend->port, &w->ct, backend_id);
	/* pkt->flow is the tuple as it came (the rewrite changes the frame only). */
	if (verdict == XDP_TX || verdict == XDP_REDIRECT || verdict == XDP_PASS)
		xlb_event_placed(pkt, service_id, backend->addr, backend->port, entry.snat_port, XLB_POINT_XDP, hash,
				 selection);
	return verdict;
}

/* The next-hop generation the agent last set (0: caching off). */
static __always_inline __u32 xlb_nh_generation(void)
{
	__u32 key = 0;
	__u32 *gen = bpf_map_lookup_elem(&xlb_nh_gen, &key);

	return gen ? *gen : 0;
}

/* Steps 5 and 6: send a packet this node forwards with its tuple rewritten
 * to saddr:sport -> daddr:dport. TTL <= 1 goes to the stack untouched (it
 * sends ICMP time exceeded); the next hop is known before anything is
 * written, so a drop leaves the packet as it came. XDP_TX when the route
 * leaves through the ingress interface, else XDP_REDIRECT.
 *
 * `nh` (NULL for replies): the flow's conntrack entry, whose cached next hop
 * is used while the agent's next-hop generation is the one it was cached in
 * and the packet is no longer than one that went through it (bpf_fib_lookup
 * says only that a packet fits the MTU); else bpf_fib_lookup is asked and
 * the answer cached there. A new flow's entry (`backend_id` set) first
 * takes its backend's next hop (xlb_backend_nh), cached the same way by
 * the first new flow to it in the generation: flows to one backend share a
 * next hop (with ECMP routes to a backend, the path of the first). */
static __always_inline int xlb_forward(struct xdp_md *ctx, struct xlb_pkt *pkt, __be32 saddr,
				       __be16 sport, __be32 daddr, __be16 dport, struct xlb_ct_entry *nh,
				       __u32 backend_id)
{
	struct bpf_fib_lookup fib = {};
	struct iphdr *ip = pkt->ip;
	__u16 tot_len = bpf_ntohs(ip->tot_len);
	struct xlb_next_hop *bnh = NULL;
	__u32 gen = 0, ifindex;
	long rc;

	if (ip->ttl <= 1)
		return XDP_PASS;

	if (nh) {
		gen = xlb_nh_generation();
		if (gen && backend_id && nh->nh_gen != gen) {
			bnh = bpf_map_lookup_elem(&xlb_backend_nh, &backend_id);
			if (bnh && bnh->gen == gen && bnh->iif == ctx->ingress_ifindex && tot_len <= bnh->mtu) {
				nh->nh_ifindex = bnh->ifindex;
				__builtin_memcpy(nh->nh_dmac, bnh->dmac, ETH_ALEN);
				__builtin_memcpy(nh->nh_smac, bnh->smac, ETH_ALEN);
				nh->nh_mtu = bnh->mtu;
				nh->nh_gen = gen;
			}
		}
		if (gen && nh->nh_gen == gen && tot_len <= nh->nh_mtu) {
			xlb_nat_rewrite_forwarded(pkt, saddr, sport, daddr, dport, true);
			__builtin_memcpy(pkt->eth->h_dest, nh->nh_dmac, ETH_ALEN);
			__builtin_memcpy(pkt->eth->h_source, nh->nh_smac, ETH_ALEN);
			ifindex = nh->nh_ifindex;
			goto send;
		}
	}

	fib.family = XLB_AF_INET;
	fib.l4_protocol = pkt->flow.proto;
	fib.sport = sport;
	fib.dport = dport;
	fib.tot_len = tot_len; /* the MTU check */
	fib.tos = ip->tos;
	fib.ipv4_src = saddr;
	fib.ipv4_dst = daddr;
	fib.ifindex = ctx->ingress_ifindex;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return xlb_drop(XLB_DROP_FRAG_NEEDED);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		/* A route, but no neighbour entry for the next hop yet (a client
		 * on the node's own link that never spoke to the node itself,
		 * as in layer 2 mode). Translated, the packet is the stack's to
		 * forward: it resolves the neighbour, and the next packets take
		 * the XDP path. This serves replies to clients; a request SNATed
		 * to the node's own address would be a martian to the stack, which
		 * is why the agent keeps remote backends' next hops resolved. */
		xlb_nat_rewrite_forwarded(pkt, saddr, sport, daddr, dport, false);
		return XDP_PASS;
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return xlb_drop(XLB_DROP_FIB_LOOKUP);

	if (nh && gen) {
		/* Cached with plain stores: a reader on another CPU that sees a
		 * half-written next hop can only be one that read the new
		 * generation, i.e. after the agent bumped it, once. */
		nh->nh_ifindex = fib.ifindex;
		__builtin_memcpy(nh->nh_dmac, fib.dmac, ETH_ALEN);
		__builtin_memcpy(nh->nh_smac, fib.smac, ETH_ALEN);
		nh->nh_mtu = nh->nh_gen == gen && nh->nh_mtu > tot_len ? nh->nh_mtu : tot_len;
		nh->nh_gen = gen;
		if (bnh) {
			/* Plain stores: CPUs that race here store the same answer. */
			bnh->ifindex = fib.ifindex;
			bnh->iif = ctx->ingress_ifindex;
			__builtin_memcpy(bnh->dmac, fib.dmac, ETH_ALEN);
			__builtin_memcpy(bnh->smac, fib.smac, ETH_ALEN);
			bnh->mtu = bnh->gen == gen && bnh->mtu > tot_len ? bnh->mtu : tot_len;
			bnh->gen = gen;
		}
	}
	xlb_nat_rewrite_forwarded(pkt, saddr, sport, daddr, dport, true);
	__builtin_memcpy(pkt->eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(pkt->eth->h_source, fib.smac, ETH_ALEN);
	ifindex = fib.ifindex;
send:
	if (ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	rc = bpf_redirect(ifindex, 0);
	if (rc != XDP_REDIRECT)
		return xlb_drop(XLB_DROP_REDIRECT);
	return XDP_REDIRECT;
}

/* Step 6: true when the packet goes to one of this node's SNAT ports. */
static __always_inline bool xlb_is_to_snat_port(const struct xlb_flow_key *flow)
{
	__u16 dport = bpf_ntohs(flow->dport);

	return xlb_node_addr && flow->daddr == xlb_node_addr && dport >= xlb_snat_port_min &&
	       dport <= xlb_snat_port_max;
}

/* Step 6: a reply from a remote backend to node:SNAT port goes back to the
 * client from VIP:port, and keeps its flow (and port) alive. Anything else
 * to those ports is the stack's. */
static __always_inline int xlb_reply_from_remote(struct xdp_md *ctx, struct xlb_pkt *pkt, __u32 len)
{
	struct xlb_snat_set *set = NULL;
	struct xlb_snat_flow *w;
	__u32 way = 0, now;

	w = xlb_snat_reply_find(&pkt->flow, &set, &way);
	if (!w)
		return XDP_PASS;
	if (!xlb_ipv4_csum_ok(pkt, (void *)(long)ctx->data_end))
		return xlb_drop(XLB_DROP_BAD_CHECKSUM);
	now = xlb_now();
	if (set && w->ct.reply_seen != now)
		xlb_snat_ref(set, way);
	xlb_ct_touch_reply(&w->ct, pkt->tcp_flags, now);
	xlb_count_service(w->ct.service_id, len);
	return xlb_forward(ctx, pkt, w->flow.daddr, w->flow.dport, w->flow.saddr, w->flow.sport, NULL, 0);
}

char _license[] SEC("license") = "Dual BSD/GPL";
