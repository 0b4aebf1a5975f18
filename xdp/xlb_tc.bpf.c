// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xlb_tc_egress: tc clsact egress of each external interface (docs/
 * datapath.md, "tc egress"). A reply from a local backend (backend ->
 * client) leaves with its source restored to the frontend VIP:port that the
 * client addressed. The rewrite goes through bpf_l3/l4_csum_replace, which
 * know how to treat CHECKSUM_PARTIAL skbs (only the pseudo-header part of
 * the checksum field is updated then). Never drops: TC_ACT_OK always.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xlb_types.h"
#include "xlb_consts.h"
#include "xlb_maps.h"
#include "xlb_parse.h"
#include "xlb_clock.h"

/* Make the headers that xlb reads linear, so that direct packet access
 * sees them (a no-op when they already are). */
static __always_inline void xlb_pull_headers(struct __sk_buff *skb)
{
	__u32 want = skb->len < XLB_MAX_HEADER_LEN ? skb->len : XLB_MAX_HEADER_LEN;

	if ((void *)(long)skb->data + want > (void *)(long)skb->data_end)
		bpf_skb_pull_data(skb, want);
}

/* Rewrite the source of the parsed packet to addr:port (reverse DNAT). */
static __always_inline void xlb_tc_rewrite_src(struct __sk_buff *skb, const struct xlb_pkt *pkt,
					       __be32 addr, __be16 port)
{
	__u32 check_off = pkt->l4_off + xlb_l4_check_off(pkt->flow.proto);
	/* UDP: a zero checksum stays zero, a computed zero becomes 0xffff */
	__u64 mangled0 = pkt->flow.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__be32 old_addr = pkt->flow.saddr;
	__be16 old_port = pkt->flow.sport;

	bpf_l4_csum_replace(skb, check_off, old_addr, addr, BPF_F_PSEUDO_HDR | mangled0 | sizeof(addr));
	bpf_l4_csum_replace(skb, check_off, old_port, port, mangled0 | sizeof(port));
	bpf_l3_csum_replace(skb, pkt->l3_off + offsetof(struct iphdr, check), old_addr, addr, sizeof(addr));
	bpf_skb_store_bytes(skb, pkt->l3_off + offsetof(struct iphdr, saddr), &addr, sizeof(addr), 0);
	bpf_skb_store_bytes(skb, pkt->l4_off, &port, sizeof(port), 0);
}

SEC("tc")
int xlb_tc_egress(struct __sk_buff *skb)
{
	struct xlb_rnat_entry *rnat;
	struct xlb_pkt pkt;
	__u32 now;

	xlb_pull_headers(skb);
	if (xlb_parse_ipv4_l4((void *)(long)skb->data, (void *)(long)skb->data_end, skb->len, &pkt) != XLB_PARSE_OK)
		return TC_ACT_OK;

	/* Replies to SNATed flows are the XDP program's (they arrive, they
	 * never leave as such). */
	rnat = bpf_map_lookup_elem(&xlb_rnat, &pkt.flow);
	if (!rnat || (rnat->flags & XLB_CT_F_SNAT))
		return TC_ACT_OK;
	/* a reply keeps its flow alive (xlb_ct_expired reads this) */
	now = xlb_now();
	if (rnat->seen != now)
		rnat->seen = now;
	xlb_tc_rewrite_src(skb, &pkt, rnat->vip, rnat->vip_port);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "Dual BSD/GPL";
