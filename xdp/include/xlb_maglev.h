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

/* The backend ID that service `service_id`'s Maglev table holds for `hash`:
 * table[1 + hash % M], M read from slot 0 of the same table, so that a table
 * swapped in by the control plane is always read whole. 0 when the service
 * has no table, M is 0, or the slot is empty. */
static __always_inline __u32 xlb_maglev_backend_id(__u32 service_id, __u32 hash)
{
	__u32 slot = 0;
	__u32 *size, *backend_id;
	void *table;

	table = bpf_map_lookup_elem(&xlb_maglev, &service_id);
	if (!table)
		return 0;
	size = bpf_map_lookup_elem(table, &slot);
	if (!size || !*size)
		return 0;
	slot = XLB_MAGLEV_HEADER_SLOTS + hash % *size;
	backend_id = bpf_map_lookup_elem(table, &slot);
	return backend_id ? *backend_id : 0;
}

#endif /* XLB_MAGLEV_H */
