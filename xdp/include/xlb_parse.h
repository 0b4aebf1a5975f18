/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_parse.h: from a frame's first byte to its IPv4 5-tuple, shared by the
 * XDP and tc programs. Every bounds check the verifier needs is made here,
 * once; callers then read and write the headers through `struct xlb_pkt`
 * without further checks.
 */
#ifndef XLB_PARSE_H
#define XLB_PARSE_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "xlb_types.h"
#include "xlb_consts.h"
#include "xlb_csum.h"

/* An 802.1Q/802.1ad tag as it follows the MAC addresses (IEEE 802.1Q 9.3);
 * the kernel's struct vlan_hdr is not part of the UAPI. */
struct xlb_vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

/* A parsed IPv4 TCP/UDP frame. Pointers are into the packet and valid (and
 * bounds-checked) only as far as the parse result says. */
struct xlb_pkt {
	struct ethhdr *eth;
	struct iphdr *ip;
	__be16 *ports;       /* L4 header: [0] source port, [1] destination port */
	__sum16 *l4_check;   /* TCP or UDP checksum field (XLB_PARSE_OK only) */
	struct xlb_flow_key flow; /* the 5-tuple as it is on the wire */
	__u16 l3_off;        /* byte offset of the IPv4 header in the frame */
	__u16 l4_off;        /* byte offset of the L4 header in the frame */
	__u8 tcp_flags;      /* TCP: the header's flag bits (XLB_TCP_*); UDP: 0 (XLB_PARSE_OK only) */
};

enum xlb_parse_result {
	/* Not an IPv4 TCP/UDP first fragment we can read: leave it untouched.
	 * Also a frame too short for its Ethernet, VLAN or IPv4 header (with
	 * options) or for the two L4 ports. */
	XLB_PARSE_PASS = 0,
	/* Whole IPv4 and L4 headers present: flow, ports and l4_check valid. */
	XLB_PARSE_OK,
	/* Flow known (ports readable) but the L4 header or the IPv4 payload is
	 * cut short: must not be rewritten. */
	XLB_PARSE_TRUNCATED,
};

/* Parse Ethernet, at most one VLAN tag, IPv4 (IHL >= 5, options skipped) and
 * the TCP or UDP ports of the frame [data, data_end). Fragments (MF set or
 * a non-zero offset) are XLB_PARSE_PASS: only the first carries ports.
 * `frame_len` is the whole frame's length in bytes: data_end - data in XDP,
 * skb->len in tc, where the payload may sit in fragments beyond data_end. */
static __always_inline enum xlb_parse_result
xlb_parse_ipv4_l4(void *data, void *data_end, __u32 frame_len, struct xlb_pkt *pkt)
{
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u32 ip_hdr_len, tot_len;
	__be16 proto;
	__u8 ver_ihl;
	void *l4;

	if ((void *)(eth + 1) > data_end)
		return XLB_PARSE_PASS;
	proto = eth->h_proto;
	ip = (void *)(eth + 1);
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct xlb_vlan_hdr *vlan = (void *)(eth + 1);

		if ((void *)(vlan + 1) > data_end)
			return XLB_PARSE_PASS;
		proto = vlan->encap_proto;
		ip = (void *)(vlan + 1);
	}
	if (proto != bpf_htons(ETH_P_IP))
		return XLB_PARSE_PASS;
	if ((void *)(ip + 1) > data_end)
		return XLB_PARSE_PASS;

	/* version and IHL share the first byte */
	ver_ihl = *(__u8 *)ip;
	if ((ver_ihl & 0xf0) != 0x40 || (ver_ihl & 0x0f) < 5)
		return XLB_PARSE_PASS;
	if (ip->frag_off & bpf_htons(XLB_IP_MF | XLB_IP_OFFSET))
		return XLB_PARSE_PASS;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return XLB_PARSE_PASS;

	ip_hdr_len = (ver_ihl & 0x0f) << 2;
	l4 = (void *)ip + ip_hdr_len;
	if (l4 + 2 * sizeof(__be16) > data_end)
		return XLB_PARSE_PASS;

	pkt->eth = eth;
	pkt->ip = ip;
	pkt->ports = l4;
	pkt->l3_off = (void *)ip - data;
	pkt->l4_off = pkt->l3_off + ip_hdr_len;
	pkt->flow.saddr = ip->saddr;
	pkt->flow.daddr = ip->daddr;
	pkt->flow.sport = pkt->ports[0];
	pkt->flow.dport = pkt->ports[1];
	pkt->flow.proto = ip->protocol;
	pkt->flow.pad[0] = 0;
	pkt->flow.pad[1] = 0;
	pkt->flow.pad[2] = 0;

	/* A frame shorter than its IPv4 total length lost part of its payload;
	 * one whose total length cannot hold its own headers is malformed. */
	tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len + pkt->l3_off > frame_len)
		return XLB_PARSE_TRUNCATED;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end || tot_len < ip_hdr_len + sizeof(*tcp))
			return XLB_PARSE_TRUNCATED;
		pkt->l4_check = &tcp->check;
		pkt->tcp_flags = ((__u8 *)tcp)[XLB_TCP_FLAGS_OFF];
	} else {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end || tot_len < ip_hdr_len + sizeof(*udp))
			return XLB_PARSE_TRUNCATED;
		pkt->l4_check = &udp->check;
		pkt->tcp_flags = 0;
	}
	return XLB_PARSE_OK;
}

/* Whether the IPv4 header of a parsed packet (XLB_PARSE_OK or _TRUNCATED)
 * sums to 0xffff in one's complement, as RFC 791 / RFC 1071 want; the
 * kernel drops a packet whose sum does not on receive (ip_rcv_core). */
static __always_inline bool xlb_ipv4_csum_ok(const struct xlb_pkt *pkt, void *data_end)
{
	const __u16 *w = (const __u16 *)pkt->ip;
	__u32 words = ((__u32)pkt->l4_off - (__u32)pkt->l3_off) >> 1;
	__u64 sum = 0;
	__u32 i;

	if ((void *)(w + 10) > data_end)
		return false;
	for (i = 0; i < 10; i++)
		sum += w[i];
	for (i = 10; i < 30; i++) {
		const __u16 *p = w + i;

		if (i >= words)
			break;
		/* keeps clang from turning the bound check into arithmetic on data_end */
		asm volatile("" : "+r"(p));
		if ((void *)(p + 1) > data_end)
			return false;
		sum += *p;
	}
	return xlb_csum_fold(sum) == 0xffff;
}

/* Byte offset of the L4 checksum field within the L4 header. */
static __always_inline __u32 xlb_l4_check_off(__u8 proto)
{
	return proto == IPPROTO_TCP ? offsetof(struct tcphdr, check) : offsetof(struct udphdr, check);
}

#endif /* XLB_PARSE_H */
