/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_arp.h: the ARP responder of layer 2 mode (docs/datapath.md, "ARP
 * responder"). The node that owns a VIP (src/l2 decides which one) has
 * (VIP, ingress ifindex, VLAN) -> MAC entries in xlb_arp_vips; an ARP request
 * for such a VIP is turned into the RFC 826 reply in place and sent back out
 * of the interface it came in on. Every other frame leaves untouched.
 *
 * Answering in XDP instead of assigning the VIP to the node keeps the kernel
 * from answering for it on every interface (arp_ignore=0) and from taking the
 * VIP's traffic as local: exactly the owner answers, with the MAC of the
 * interface the control plane chose.
 */
#ifndef XLB_ARP_H
#define XLB_ARP_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "xlb_types.h"
#include "xlb_maps.h"
#include "xlb_parse.h"

/* The ARP packet for Ethernet and IPv4 (RFC 826, "Packet format"): the fixed
 * header of struct arphdr followed by the four addresses. Packed: the IPv4
 * addresses sit at offsets 14 and 24, not 4-byte aligned. 28 bytes. */
struct xlb_arp_eth_ipv4 {
	__be16 htype;     /* XLB_ARPHRD_ETHER */
	__be16 ptype;     /* ETH_P_IP */
	__u8 hlen;        /* ETH_ALEN */
	__u8 plen;        /* 4 */
	__be16 op;        /* XLB_ARPOP_REQUEST or XLB_ARPOP_REPLY */
	__u8 sha[ETH_ALEN];
	__be32 spa;
	__u8 tha[ETH_ALEN];
	__be32 tpa;
} __attribute__((packed));

/* ARP constants (RFC 826; IANA "Address Resolution Protocol (ARP)
 * Parameters"). <linux/if_arp.h> has them but pulls in libc headers, which
 * -target bpf cannot use. */
#define XLB_ARPHRD_ETHER 1
#define XLB_ARPOP_REQUEST 1
#define XLB_ARPOP_REPLY 2

/* VLAN ID bits of an 802.1Q TCI (IEEE 802.1Q 9.6); the rest is PCP and DEI. */
#define XLB_VLAN_VID_MASK 0x0fff

/* True for a group (multicast or broadcast) MAC: the I/G bit of the first
 * octet (IEEE 802 48-bit addresses). */
static __always_inline bool xlb_mac_is_group(const __u8 *mac)
{
	return mac[0] & 1;
}

/* True for ff:ff:ff:ff:ff:ff. */
static __always_inline bool xlb_mac_is_broadcast(const __u8 *mac)
{
	return (mac[0] & mac[1] & mac[2] & mac[3] & mac[4] & mac[5]) == 0xff;
}

/* True when `a` and `b` are the same MAC. */
static __always_inline bool xlb_mac_equal(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] &&
	       a[5] == b[5];
}

/*
 * Answer an ARP request (Ethernet, at most one 802.1Q/802.1ad tag) for a VIP
 * in xlb_arp_vips under (target IP, ctx->ingress_ifindex, VLAN ID or 0):
 * XDP_TX of the RFC 826 reply built in place (Ethernet to the requester from
 * the entry's MAC, VLAN tag kept as it came; sender = VIP and that MAC,
 * target = the requester's addresses). Anything else is XDP_PASS with the
 * frame unchanged: not ARP, not Ethernet/IPv4 ARP, a reply, a gratuitous ARP
 * (sender IP = target IP: someone announcing, not asking), a frame cut short,
 * a request sent to another host's MAC (a unicast refresh of a cache that
 * still points elsewhere), a requester with a group MAC, and a VIP this node
 * does not own on that link. An ARP probe (sender IP 0.0.0.0, RFC 5227 2.1.1)
 * is answered, as Linux answers for its own addresses, so that a host about
 * to take the VIP sees the conflict.
 */
static __always_inline int xlb_arp_respond(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct xlb_arp_eth_ipv4 *arp = (void *)(eth + 1);
	const struct xlb_arp_answer *answer;
	struct xlb_arp_key key = {};
	__be16 proto;
	__be32 requester_ip;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct xlb_vlan_hdr *vlan = (void *)(eth + 1);

		if ((void *)(vlan + 1) > data_end)
			return XDP_PASS;
		proto = vlan->encap_proto;
		key.vlan = bpf_ntohs(vlan->tci) & XLB_VLAN_VID_MASK;
		arp = (void *)(vlan + 1);
	}
	if (proto != bpf_htons(ETH_P_ARP))
		return XDP_PASS;
	if ((void *)(arp + 1) > data_end)
		return XDP_PASS;
	if (arp->htype != bpf_htons(XLB_ARPHRD_ETHER) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != ETH_ALEN || arp->plen != 4 || arp->op != bpf_htons(XLB_ARPOP_REQUEST))
		return XDP_PASS;
	if (arp->spa == arp->tpa || xlb_mac_is_group(arp->sha))
		return XDP_PASS;

	key.vip = arp->tpa;
	key.ifindex = ctx->ingress_ifindex;
	answer = bpf_map_lookup_elem(&xlb_arp_vips, &key);
	if (!answer)
		return XDP_PASS;
	if (!xlb_mac_is_broadcast(eth->h_dest) && !xlb_mac_equal(eth->h_dest, answer->mac))
		return XDP_PASS;

	/* The reply, in place (RFC 826, "Packet Reception": swap the sender
	 * and target fields, put our addresses in the sender fields, set the
	 * opcode to reply). Like Linux (arp_process), the Ethernet destination
	 * is the requester's hardware address from the ARP payload. */
	requester_ip = arp->spa;
	__builtin_memcpy(arp->tha, arp->sha, ETH_ALEN);
	arp->tpa = requester_ip;
	__builtin_memcpy(arp->sha, answer->mac, ETH_ALEN);
	arp->spa = key.vip;
	arp->op = bpf_htons(XLB_ARPOP_REPLY);
	__builtin_memcpy(eth->h_dest, arp->tha, ETH_ALEN);
	__builtin_memcpy(eth->h_source, answer->mac, ETH_ALEN);
	return XDP_TX;
}

#endif /* XLB_ARP_H */
