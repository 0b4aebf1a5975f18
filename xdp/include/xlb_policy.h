/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_policy.h: the service policies that decide a new flow before Maglev
 * does (Kubernetes core/v1 ServiceSpec):
 *   - loadBalancerSourceRanges: a new flow to a LoadBalancer frontend is
 *     accepted only from one of the service's CIDRs (kube-proxy's
 *     KUBE-PROXY-FIREWALL rules); NodePorts are not restricted, as in
 *     kube-proxy.
 *   - sessionAffinity: ClientIP: a client's new flows go to the backend its
 *     last one went to while it keeps coming back within the timeout
 *     (kube-proxy's `recent` match; IPVS persistence).
 * Both act on new flows only: an established flow keeps its conntrack entry.
 */
#ifndef XLB_POLICY_H
#define XLB_POLICY_H

#include <stdbool.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include "xlb_types.h"
#include "xlb_maps.h"

#define XLB_NS_PER_SEC 1000000000ULL

/* True when `client` is inside one of service `service_id`'s source ranges. */
static __always_inline bool xlb_source_allowed(__u32 service_id, __be32 client)
{
	struct xlb_source_range_key key = {
		.prefixlen = 64, /* the service ID and the whole address */
		.service_id = service_id,
		.addr = client,
	};

	return bpf_map_lookup_elem(&xlb_source_ranges, &key) != NULL;
}

/* Whether `backend` may take new flows of a service ID whose endpoint set
 * is the local one (`local_set`) or the cluster one (xlb_types.h). */
static __always_inline bool xlb_backend_in_set(const struct xlb_backend *backend, bool local_set)
{
	return !(backend->flags & (local_set ? XLB_BE_F_NOT_LOCAL_SET : XLB_BE_F_DRAINING));
}

/* The backend ID that affinity entry `entry` (a map value, or NULL) still
 * holds at `now` (bpf_ktime_get_ns) for a timeout of `timeout` seconds, or 0:
 * no entry, expired, or its backend gone, changed or out of the set. The
 * age is taken signed, as the conntrack clock's (xlb_clock.h): an entry
 * another CPU stamped a moment after `now` was read is fresh, not ~584
 * years old, and nothing here assumes the clock has run long since boot. A
 * hit refreshes the entry's time in place (no map update on this path). */
static __always_inline __u32 xlb_affinity_pick(struct xlb_affinity_entry *entry, __u32 timeout, __u64 now,
					       bool local_set)
{
	const struct xlb_backend *backend;
	__u32 backend_id;

	if (!entry || (__s64)(now - entry->last_ns) > (__s64)((__u64)timeout * XLB_NS_PER_SEC))
		return 0;
	backend_id = entry->backend_id;
	backend = bpf_map_lookup_elem(&xlb_backends, &backend_id);
	if (!backend || backend->addr != entry->backend_addr || backend->port != entry->backend_port ||
	    !xlb_backend_in_set(backend, local_set))
		return 0;
	entry->last_ns = now;
	return backend_id;
}

/* The backend ID that `client`'s new flow to service `service_id` (a set
 * that is local or not, `local_set`) must keep under ClientIP affinity with
 * `timeout` seconds, or 0 when there is none (xlb_affinity_pick). */
static __always_inline __u32 xlb_affinity_backend(__be32 client, __u32 service_id, __u32 timeout, __u64 now,
						  bool local_set)
{
	struct xlb_affinity_key key = { .client_addr = client, .service_id = service_id };

	return xlb_affinity_pick(bpf_map_lookup_elem(&xlb_affinity, &key), timeout, now, local_set);
}

/* Remember that `client`'s flows to service `service_id` go to `backend_id`. */
static __always_inline void xlb_affinity_store(__be32 client, __u32 service_id, __u32 backend_id,
					       const struct xlb_backend *backend, __u64 now)
{
	struct xlb_affinity_key key = { .client_addr = client, .service_id = service_id };
	struct xlb_affinity_entry entry = {
		.last_ns = now,
		.backend_id = backend_id,
		.backend_addr = backend->addr,
		.backend_port = backend->port,
	};

	/* A failed write only loses affinity for the next flow: not a drop. */
	bpf_map_update_elem(&xlb_affinity, &key, &entry, BPF_ANY);
}

#endif /* XLB_POLICY_H */
