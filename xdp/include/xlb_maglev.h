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
 * slot base + hash % M of its table, where the header (slot 0) gives M and
 * which half is active (base 1 or 1 + M), so that the control plane can
 * rewrite the other half and flip the header. 0 when the service has no
 * table, M is 0, or the slot is empty or missing. */
static __always_inline __u32 xlb_maglev_backend_id(__u32 service_id, __u32 hash)
{
	__u32 slot = 0, header, m;
	__u32 *hdr, *backend_id;
	void *table;

	table = bpf_map_lookup_elem(&xlb_maglev, &service_id);
	if (!table)
		return 0;
	hdr = bpf_map_lookup_elem(table, &slot);
	if (!hdr)
		return 0;
	/* One read of the header: M and the half come from the same store. */
	header = *(volatile __u32 *)hdr;
	m = header & ~(1U << XLB_MAGLEV_HALF_BIT);
	if (!m)
		return 0;
	slot = XLB_MAGLEV_HEADER_SLOTS + (header >> XLB_MAGLEV_HALF_BIT ? m : 0) + hash % m;
	backend_id = bpf_map_lookup_elem(table, &slot);
	return backend_id ? *backend_id : 0;
}

#endif /* XLB_MAGLEV_H */
