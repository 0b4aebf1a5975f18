/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_stats.h: per-CPU counters (service packets and bytes, drops by
 * reason). Per-CPU arrays: the lookups are inlined and the increments need
 * no atomics; user space sums over CPUs.
 */
#ifndef XLB_STATS_H
#define XLB_STATS_H

#include <linux/types.h>
#include "xlb_types.h"
#include "xlb_maps.h"

/* Count one packet of `bytes` (the whole frame, Ethernet header included)
 * for service `service_id`. */
static __always_inline void xlb_count_service(__u32 service_id, __u64 bytes)
{
	struct xlb_service_stats *stats = bpf_map_lookup_elem(&xlb_service_stats, &service_id);

	if (stats) {
		stats->packets++;
		stats->bytes += bytes;
	}
}

/* Count one packet dropped for `reason`. */
static __always_inline void xlb_count_drop(enum xlb_drop_reason reason)
{
	__u32 key = reason;
	__u64 *packets = bpf_map_lookup_elem(&xlb_drops, &key);

	if (packets)
		(*packets)++;
}

#endif /* XLB_STATS_H */
