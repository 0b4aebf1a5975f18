/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_maglev.h: the flow hash and the Maglev table pick (Eisenbud et al.,
 * "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016,
 * section 3.4). The hash is the one of docs/datapath.md, shared with
 * src/maglev/flowhash.ts, and is the same on every node.
 */
#ifndef XLB_MAGLEV_H
#define XLB_MAGLEV_H

#include <linux/types.h>
#include <bpf/bpf_endian.h>
#include "xlb_types.h"
#include "xlb_maps.h"
#include "xlb_jhash.h"

/* The flow hash of a client -> frontend 5-tuple:
 * jhash_3words(saddr, daddr, sport << 16 | dport, seed + proto), all in
 * host order. */
static __always_inline __u32 xlb_flow_hash(const struct xlb_flow_key *flow)
{
	__u32 ports = ((__u32)bpf_ntohs(flow->sport) << 16) | bpf_ntohs(flow->dport);

	return xlb_jhash_3words(bpf_ntohl(flow->saddr), bpf_ntohl(flow->daddr), ports,
				XLB_FLOW_HASH_SEED + flow->proto);
}

/* Slot `slot` of a Maglev slab; 0 when it is out of the slab. */
static __always_inline __u32 xlb_maglev_slot(void *slab, __u32 slot)
{
	__u32 entry = slot / XLB_MAGLEV_ENTRY_SLOTS;
	__u32 *e = bpf_map_lookup_elem(slab, &entry);

	return e ? e[slot % XLB_MAGLEV_ENTRY_SLOTS] : 0;
}

/* The backend ID that service `service_id`'s Maglev table holds for `hash`:
 * slot first + 1 + hash % M of the slab its descriptor names, where slot
 * `first` holds M. 0 when the service has no table, M is 0, or the slot is
 * empty or missing. The descriptor is read once, and the control plane
 * stores it only after the whole table, so a packet sees one whole table,
 * the old one or the new. */
static __always_inline __u32 xlb_maglev_backend_id(__u32 service_id, __u32 hash)
{
	__u32 *descp, desc, first, slab_index, m;
	void *slab;

	descp = bpf_map_lookup_elem(&xlb_maglev, &service_id);
	if (!descp)
		return 0;
	desc = *(volatile __u32 *)descp;
	if (!desc)
		return 0;
	slab_index = desc >> XLB_MAGLEV_SLAB_SHIFT;
	first = desc & (XLB_MAGLEV_SLAB_SLOTS - 1);
	slab = bpf_map_lookup_elem(&xlb_maglev_slabs, &slab_index);
	if (!slab)
		return 0;
	m = xlb_maglev_slot(slab, first);
	if (!m)
		return 0;
	return xlb_maglev_slot(slab, first + XLB_MAGLEV_HEADER_SLOTS + hash % m);
}

#endif /* XLB_MAGLEV_H */
