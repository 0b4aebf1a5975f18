/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_lb.h: service lookup and backend choice, the one implementation that
 * every attach point uses: XDP on external interfaces (traffic from outside
 * the cluster), tc on pod interfaces and the cgroup socket hooks (traffic
 * from pods and the node's own processes). What differs between them is
 * only which of a frontend's two service IDs they take (xlb_types.h, struct
 * xlb_service) and who the client is for ClientIP affinity.
 */
#ifndef XLB_LB_H
#define XLB_LB_H

#include <stdbool.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include "xlb_types.h"
#include "xlb_maps.h"
#include "xlb_maglev.h"
#include "xlb_policy.h"

/* The service of frontend addr:port/proto (network order), or NULL. */
static __always_inline const struct xlb_service *xlb_lookup_frontend(__be32 addr, __be16 port, __u8 proto)
{
	struct xlb_frontend_key key = { .addr = addr, .port = port, .proto = proto };

	return bpf_map_lookup_elem(&xlb_frontends, &key);
}

/* The backend with ID `*backend_id` in Maglev slot `hash` of service
 * `service_id`'s table, or NULL when the service has no table, the table
 * is empty or the slot names no backend. */
static __always_inline const struct xlb_backend *xlb_maglev_backend(__u32 service_id, __u32 hash, __u32 *backend_id)
{
	const struct xlb_backend *backend;
	__u32 id = xlb_maglev_backend_id(service_id, hash);

	if (!id)
		return NULL;
	backend = bpf_map_lookup_elem(&xlb_backends, &id);
	if (!backend || !backend->addr)
		return NULL;
	*backend_id = id;
	return backend;
}

/* The backend a new flow from `client` to service `service_id` goes to:
 * under ClientIP affinity (`svc` has XLB_SVC_F_AFFINITY) the one the
 * client's last flow went to while it keeps coming back within the timeout,
 * else Maglev slot `hash`; a fresh pick under affinity is remembered.
 * `local_set`: whether `service_id` is the local set's (xlb_types.h).
 * Sets `*backend_id` and `*selection` (enum xlb_event_selection); NULL when
 * the service has no usable backend. */
static __always_inline const struct xlb_backend *xlb_select_backend(const struct xlb_service *svc, __u32 service_id,
								    bool local_set, __be32 client, __u32 hash,
								    __u32 *backend_id, __u8 *selection)
{
	const struct xlb_backend *backend;
	__u64 now_ns;
	__u32 id;

	if (!(svc->flags & XLB_SVC_F_AFFINITY))
		return xlb_maglev_backend(service_id, hash, backend_id);
	now_ns = bpf_ktime_get_ns();
	id = xlb_affinity_backend(client, service_id, svc->affinity_timeout, now_ns, local_set);
	if (id) {
		backend = bpf_map_lookup_elem(&xlb_backends, &id);
		if (backend && backend->addr) {
			*backend_id = id;
			*selection = XLB_SELECT_AFFINITY;
			return backend;
		}
	}
	backend = xlb_maglev_backend(service_id, hash, backend_id);
	if (backend)
		xlb_affinity_store(client, service_id, *backend_id, backend, now_ns);
	return backend;
}

#endif /* XLB_LB_H */
