/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_conntrack.h: which backend a flow keeps. A flow stays on its backend
 * while that backend exists with the address and port it had when the flow
 * was placed, even when a new Maglev table would send the flow elsewhere
 * (Maglev paper, section 3.3: connection tracking keeps established
 * connections on their backend across backend set changes).
 */
#ifndef XLB_CONNTRACK_H
#define XLB_CONNTRACK_H

#include <stdbool.h>
#include <linux/types.h>
#include "xlb_types.h"
#include "xlb_maps.h"

/* True when conntrack entry `ct`, found for a packet of service
 * `service_id`, still names a backend that exists with the same address,
 * port and locality (local backends are not SNATed, remote ones are), and
 * was made for this service. One inlined array lookup. */
static __always_inline bool xlb_ct_is_current(const struct xlb_ct_entry *ct, __u32 service_id)
{
	__u32 backend_id = ct->backend_id;
	const struct xlb_backend *backend;
	bool local, snat;

	if (ct->service_id != service_id)
		return false;
	backend = bpf_map_lookup_elem(&xlb_backends, &backend_id);
	if (!backend || backend->addr != ct->backend_addr || backend->port != ct->backend_port)
		return false;
	local = backend->flags & XLB_BE_F_LOCAL;
	snat = ct->flags & XLB_CT_F_SNAT;
	return local != snat;
}

/* Write (or overwrite) the conntrack entry of `flow`. 0 or a negative errno. */
static __always_inline long xlb_ct_store(const struct xlb_flow_key *flow, __u32 backend_id,
					 const struct xlb_backend *backend, __be16 snat_port,
					 __u32 service_id)
{
	struct xlb_ct_entry entry = {
		.backend_id = backend_id,
		.backend_addr = backend->addr,
		.backend_port = backend->port,
		.snat_port = snat_port,
		.service_id = service_id,
		.flags = snat_port ? XLB_CT_F_SNAT : 0,
	};

	return bpf_map_update_elem(&xlb_conntrack, flow, &entry, BPF_ANY);
}

#endif /* XLB_CONNTRACK_H */
