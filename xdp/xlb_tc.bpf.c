// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The tc programs (docs/datapath.md, "tc"):
 *
 * xlb_tc_egress: clsact egress of each external interface and of the host
 * side of each pod interface. A reply from a backend that xlb sent a flow to
 * without SNAT (backend -> client) leaves with its source restored to the
 * frontend address and port that the client addressed. Never drops.
 *
 * xlb_tc_pod_ingress: clsact ingress of the host side of pod interfaces,
 * i.e. packets a pod sends. Services reached from a pod whose connect()
 * the socket hooks did not translate (its processes outside the served
 * cgroup, or socketLB.hostNamespaceOnly) are translated here per packet:
 * the same frontend lookup, conntrack, ClientIP affinity and Maglev pick as
 * XDP's (xlb_lb.h), with the frontend's internal service ID, then DNAT to
 * the backend on whatever node it runs (pod addresses are routable), and
 * reverse NAT by xlb_tc_egress on the way back into the pod.
 *
 * Rewrites go through bpf_l3/l4_csum_replace, which know how to treat
 * CHECKSUM_PARTIAL skbs (only the pseudo-header part of the checksum field
 * is updated then).
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xlb_types.h"
#include "xlb_consts.h"
#include "xlb_maps.h"
#include "xlb_parse.h"
#include "xlb_clock.h"
#include "xlb_stats.h"
#include "xlb_conntrack.h"
#include "xlb_replies.h"
#include "xlb_lb.h"
#include "xlb_events.h"

/* Make the headers that xlb reads linear, so that direct packet access
 * sees them (a no-op when they already are). */
static __always_inline void xlb_pull_headers(struct __sk_buff *skb)
{
	__u32 want = skb->len < XLB_MAX_HEADER_LEN ? skb->len : XLB_MAX_HEADER_LEN;

	if ((void *)(long)skb->data + want > (void *)(long)skb->data_end)
		bpf_skb_pull_data(skb, want);
}

/* Rewrite the source (`dst` false) or the destination (`dst` true) of the
 * parsed packet to addr:port, with both checksums. The packet's pointers
 * are stale afterwards. */
static __always_inline void xlb_tc_rewrite(struct __sk_buff *skb, const struct xlb_pkt *pkt, bool dst,
					   __be32 addr, __be16 port)
{
	__u32 check_off = pkt->l4_off + xlb_l4_check_off(pkt->flow.proto);
	/* UDP: a zero checksum stays zero, a computed zero becomes 0xffff */
	__u64 mangled0 = pkt->flow.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__be32 old_addr = dst ? pkt->flow.daddr : pkt->flow.saddr;
	__be16 old_port = dst ? pkt->flow.dport : pkt->flow.sport;
	__u32 addr_off = pkt->l3_off + (dst ? offsetof(struct iphdr, daddr) : offsetof(struct iphdr, saddr));
	__u32 port_off = pkt->l4_off + (dst ? sizeof(__be16) : 0);

	bpf_l4_csum_replace(skb, check_off, old_addr, addr, BPF_F_PSEUDO_HDR | mangled0 | sizeof(addr));
	bpf_l4_csum_replace(skb, check_off, old_port, port, mangled0 | sizeof(port));
	bpf_l3_csum_replace(skb, pkt->l3_off + offsetof(struct iphdr, check), old_addr, addr, sizeof(addr));
	bpf_skb_store_bytes(skb, addr_off, &addr, sizeof(addr), 0);
	bpf_skb_store_bytes(skb, port_off, &port, sizeof(port), 0);
}

/* The source address of a pod's flow to a service it backs itself
 * (hairpin), set by the loader (datapath.hairpinAddress; Cilium's
 * IPV4_LOOPBACK is 169.254.42.1). Translated to its own address, such a flow
 * would be answered inside the pod and never come back to be restored:
 * from this address, the pod sends the reply to its gateway (this
 * interface), where it is restored. 0: hairpin flows are not served. */
const volatile __be32 xlb_hairpin_addr = 0;

SEC("tc")
int xlb_tc_egress(struct __sk_buff *skb)
{
	struct xlb_reply_slot *rnat;
	struct xlb_ct_entry *ct;
	struct xlb_pkt pkt;
	__be32 vip;
	__be16 vip_port;
	__u32 now;

	xlb_pull_headers(skb);
	if (xlb_parse_ipv4_l4((void *)(long)skb->data, (void *)(long)skb->data_end, skb->len, &pkt) != XLB_PARSE_OK)
		return TC_ACT_OK;

	/* Replies to SNATed flows are the XDP program's (they arrive, they
	 * never leave as such); hairpin replies are xlb_tc_pod_ingress's. */
	now = xlb_now();
	/* A flow from outside to a local backend: found through its frontends. */
	ct = xlb_reply_conntrack(&pkt.flow, &vip, &vip_port);
	if (ct) {
		xlb_ct_touch_reply(ct, pkt.tcp_flags, now);
		xlb_tc_rewrite(skb, &pkt, false, vip, vip_port);
		return TC_ACT_OK;
	}
	rnat = xlb_reply_find(&pkt.flow);
	if (!rnat || (rnat->flags & (XLB_CT_F_SNAT | XLB_CT_F_HAIRPIN)))
		return TC_ACT_OK;
	/* a reply keeps its flow alive (xlb_ct_expired reads this) */
	xlb_reply_touch(rnat, pkt.tcp_flags, now);
	xlb_tc_rewrite(skb, &pkt, false, rnat->vip, rnat->vip_port);
	return TC_ACT_OK;
}

/* Swap the frame's MAC addresses: a frame the pod sent to its gateway goes
 * back to the pod (its own address as destination, or its interface drops
 * it as another host's). */
static __always_inline void xlb_tc_swap_macs(struct __sk_buff *skb)
{
	__u8 macs[2 * ETH_ALEN];
	__u8 swapped[2 * ETH_ALEN];

	if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)))
		return;
	__builtin_memcpy(swapped, macs + ETH_ALEN, ETH_ALEN);
	__builtin_memcpy(swapped + ETH_ALEN, macs, ETH_ALEN);
	bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), 0);
}

/* Send the pod's packet to backend addr:port; a hairpin flow (the pod is
 * the backend) also gets the hairpin address as its source and goes straight
 * back out of this interface, into the pod. */
static __always_inline int xlb_tc_pod_forward(struct __sk_buff *skb, const struct xlb_pkt *pkt, __be32 addr,
					      __be16 port, bool hairpin)
{
	xlb_tc_rewrite(skb, pkt, true, addr, port);
	if (!hairpin)
		return TC_ACT_OK;
	xlb_tc_rewrite(skb, pkt, false, xlb_hairpin_addr, pkt->flow.sport);
	xlb_tc_swap_macs(skb);
	return bpf_redirect(skb->ifindex, 0);
}

/* Drop a pod's new flow to service `service_id` for `reason`, counted and
 * with a flow event. */
static __always_inline int xlb_tc_pod_drop(const struct xlb_pkt *pkt, enum xlb_drop_reason reason, __u32 service_id)
{
	xlb_event(pkt, XLB_EVENT_DROP, reason, service_id, 0, 0, 0, XLB_POINT_TC_POD);
	xlb_count_drop(reason);
	return TC_ACT_SHOT;
}

/* A new flow from a pod to frontend `svc` (`stale`: its outdated conntrack
 * entry, if any): the backend from the frontend's internal set, reverse NAT
 * and conntrack entries, DNAT (and the hairpin source when the pod reaches
 * itself), with a flow event. */
static __always_inline int xlb_tc_pod_place(struct __sk_buff *skb, const struct xlb_pkt *pkt,
					    const struct xlb_service *svc, const struct xlb_ct_entry *stale, __u32 now)
{
	const struct xlb_backend *backend;
	__u32 backend_id = 0, hash = xlb_flow_hash(&pkt->flow);
	__u8 selection = XLB_SELECT_MAGLEV;
	bool hairpin, keep;

	if (!xlb_ipv4_csum_ok(pkt, (void *)(long)skb->data_end))
		return xlb_tc_pod_drop(pkt, XLB_DROP_BAD_CHECKSUM, svc->internal_id);
	backend = xlb_select_backend(svc, svc->internal_id, svc->flags & XLB_SVC_F_INT_LOCAL, pkt->flow.saddr, hash,
				     &backend_id, &selection);
	if (!backend)
		return xlb_tc_pod_drop(pkt, XLB_DROP_NO_BACKEND, svc->internal_id);
	if (stale)
		xlb_reply_forget(&pkt->flow, stale, xlb_hairpin_addr);
	hairpin = backend->addr == pkt->flow.saddr;
	if (hairpin && !xlb_hairpin_addr)
		return xlb_tc_pod_drop(pkt, XLB_DROP_NO_BACKEND, svc->internal_id);
	keep = xlb_flood_allows_state(now);
	/* The reply: backend -> client, or backend -> hairpin address:client port. */
	if (xlb_reply_store(&pkt->flow, backend->addr, backend->port, hairpin ? xlb_hairpin_addr : pkt->flow.saddr,
			    svc->internal_id, XLB_CT_F_INTERNAL | (hairpin ? XLB_CT_F_HAIRPIN : 0), now, keep) ||
	    (keep && xlb_ct_store(&pkt->flow, backend_id, backend, 0, svc->internal_id, pkt->tcp_flags, now,
				  XLB_CT_F_INTERNAL | (hairpin ? XLB_CT_F_HAIRPIN : 0))))
		return xlb_tc_pod_drop(pkt, XLB_DROP_CT_INSERT, svc->internal_id);
	xlb_event_placed(pkt, svc->internal_id, backend->addr, backend->port, 0, XLB_POINT_TC_POD, hash, selection);
	return xlb_tc_pod_forward(skb, pkt, backend->addr, backend->port, hairpin);
}

/* A pod's reply to the hairpin address: it answers a flow it sent to a
 * service it backs itself. Restored (source: the frontend; destination:
 * the pod again) and sent back into the pod. Anything else to that address
 * is left alone. */
static __always_inline int xlb_tc_hairpin_reply(struct __sk_buff *skb, const struct xlb_pkt *pkt)
{
	struct xlb_reply_slot *rnat = xlb_reply_find(&pkt->flow);
	__be32 vip, client;
	__be16 vip_port, client_port;

	if (!rnat || !(rnat->flags & XLB_CT_F_HAIRPIN))
		return TC_ACT_OK;
	xlb_reply_touch(rnat, pkt->tcp_flags, xlb_now());
	vip = rnat->vip;
	vip_port = rnat->vip_port;
	client = rnat->client_addr;
	client_port = rnat->client_port;
	xlb_tc_rewrite(skb, pkt, false, vip, vip_port);
	xlb_tc_rewrite(skb, pkt, true, client, client_port);
	xlb_tc_swap_macs(skb);
	return bpf_redirect(skb->ifindex, 0);
}

SEC("tc")
int xlb_tc_pod_ingress(struct __sk_buff *skb)
{
	const struct xlb_service *svc;
	enum xlb_parse_result parsed;
	struct xlb_ct_entry *ct;
	struct xlb_pkt pkt;
	__u32 now;

	xlb_pull_headers(skb);
	parsed = xlb_parse_ipv4_l4((void *)(long)skb->data, (void *)(long)skb->data_end, skb->len, &pkt);
	if (parsed == XLB_PARSE_PASS)
		return TC_ACT_OK;
	svc = xlb_lookup_frontend(pkt.flow.daddr, pkt.flow.dport, pkt.flow.proto);
	if (!svc || !svc->internal_id) {
		if (parsed == XLB_PARSE_OK && xlb_hairpin_addr && pkt.flow.daddr == xlb_hairpin_addr)
			return xlb_tc_hairpin_reply(skb, &pkt);
		return TC_ACT_OK;
	}
	if (parsed == XLB_PARSE_TRUNCATED) {
		xlb_count_drop(XLB_DROP_TRUNCATED);
		return TC_ACT_SHOT;
	}
	xlb_count_service(svc->internal_id, skb->len);

	now = xlb_now();
	if (xlb_is_syn(pkt.tcp_flags))
		return xlb_tc_pod_place(skb, &pkt, svc, NULL, now);
	ct = bpf_map_lookup_elem(&xlb_conntrack, &pkt.flow);
	if (!ct || !xlb_ct_is_current(ct, svc->internal_id) || xlb_ct_reopened(ct, pkt.tcp_flags) ||
	    xlb_ct_expired(&pkt.flow, ct, now, xlb_hairpin_addr))
		return xlb_tc_pod_place(skb, &pkt, svc, ct, now);
	if (xlb_ct_touch(ct, pkt.flow.proto, pkt.tcp_flags, now))
		xlb_event(&pkt, XLB_EVENT_FLOW_END, 0, svc->internal_id, ct->backend_addr, ct->backend_port, 0,
			  XLB_POINT_TC_POD);
	return xlb_tc_pod_forward(skb, &pkt, ct->backend_addr, ct->backend_port, ct->flags & XLB_CT_F_HAIRPIN);
}

char _license[] SEC("license") = "Dual BSD/GPL";
