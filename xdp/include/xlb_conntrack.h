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
#include <linux/in.h>
#include "xlb_types.h"
#include "xlb_consts.h"
#include "xlb_maps.h"
#include "xlb_clock.h"

/* Lifetimes in ticks (xlb_clock.h), set by the loader before load from
 * datapath.conntrackLifetimes (seconds; the defaults here are seconds too,
 * a tick being about one): a flow silent for longer than the
 * lifetime of its state is over, and its entries, SNAT port included, may
 * be reused (docs/datapath.md, "Conntrack lifetimes"). */
const volatile __u32 xlb_ct_timeout_tcp = XLB_CT_TIMEOUT_TCP;         /* established */
const volatile __u32 xlb_ct_timeout_tcp_syn = XLB_CT_TIMEOUT_TCP_SYN; /* only SYNs so far */
const volatile __u32 xlb_ct_timeout_tcp_fin = XLB_CT_TIMEOUT_TCP_FIN; /* FIN or RST seen */
const volatile __u32 xlb_ct_timeout_any = XLB_CT_TIMEOUT_ANY;         /* UDP */
/* Ticks a closing flow must have been silent before the SNAT allocator,
 * finding every try held, takes its port (XLB_SNAT_CLOSED_REUSE seconds). */
const volatile __u32 xlb_snat_closed_reuse = XLB_SNAT_CLOSED_REUSE;

/* The SYN-flood guard (docs/datapath.md, "New flows and SYN floods"): at
 * most this many new flows a tick, per CPU, get conntrack state; the rest
 * are placed by Maglev all the same but leave no entry, so that a flood of
 * spoofed SYNs cannot evict established flows from the LRU. 0: no guard.
 * Set by the loader (datapath.synFloodGuard.newFlowsPerSecond). */
const volatile __u32 xlb_flood_limit = 0;

/* Whether a new flow placed at `now` may have conntrack state: counts it
 * against xlb_flood_limit in this CPU's count (Katran's is_under_flood,
 * per CPU as its max_conn_rate). */
static __always_inline bool xlb_flood_allows_state(__u32 now)
{
	__u32 key = 0;
	struct xlb_flood_state *f;

	if (!xlb_flood_limit)
		return true;
	f = bpf_map_lookup_elem(&xlb_flood, &key);
	if (!f)
		return true;
	if (f->tick != now) {
		f->tick = now;
		f->placed = 0;
	}
	if (f->placed < xlb_flood_limit) {
		f->placed++;
		return true;
	}
	f->stateless++;
	return false;
}

/* A TCP SYN without ACK: a client opening a connection. */
static __always_inline bool xlb_is_syn(__u8 tcp_flags)
{
	return (tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK)) == XLB_TCP_SYN;
}

/* Lifetime in ticks of a `proto` flow in state `flags` (enum xlb_ct_flags). */
static __always_inline __u32 xlb_ct_lifetime(__u8 proto, __u32 flags)
{
	if (proto != IPPROTO_TCP)
		return xlb_ct_timeout_any;
	if (flags & XLB_CT_F_CLOSING)
		return xlb_ct_timeout_tcp_fin;
	if (flags & XLB_CT_F_ESTABLISHED)
		return xlb_ct_timeout_tcp;
	return xlb_ct_timeout_tcp_syn;
}

/* The state flags of a flow in state `flags` after one more packet with
 * TCP flags `tcp_flags` from the client: a FIN or RST makes it closing, any
 * packet without SYN established. */
static __always_inline __u32 xlb_ct_next_flags(__u8 proto, __u32 flags, __u8 tcp_flags)
{
	if (proto != IPPROTO_TCP)
		return flags;
	if (tcp_flags & (XLB_TCP_FIN | XLB_TCP_RST))
		return flags | XLB_CT_F_CLOSING | XLB_CT_F_ESTABLISHED;
	if (!(tcp_flags & XLB_TCP_SYN))
		return flags | XLB_CT_F_ESTABLISHED;
	return flags;
}

/* A SYN without ACK on a closing flow: the client opens a new connection
 * from the same port, which is placed afresh. */
static __always_inline bool xlb_ct_reopened(const struct xlb_ct_entry *ct, __u8 tcp_flags)
{
	return (ct->flags & XLB_CT_F_CLOSING) && (tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK)) == XLB_TCP_SYN;
}

/* Record a packet from the client on established entry `ct`: `seen` at most
 * once a tick and the state when it changes, both as plain stores into
 * the map value (no map update on this path). True when this packet closed
 * the flow (its first FIN or RST): once a flow, and never on a packet that
 * leaves the state as it was. */
static __always_inline bool xlb_ct_touch(struct xlb_ct_entry *ct, __u8 proto, __u8 tcp_flags, __u32 now)
{
	__u32 flags = ct->flags;
	__u32 next = xlb_ct_next_flags(proto, flags, tcp_flags);

	if (ct->seen != now)
		ct->seen = now;
	if (next == flags)
		return false;
	ct->flags = next;
	return (next & ~flags) & XLB_CT_F_CLOSING;
}

/* True when conntrack entry `ct`, found for a packet of service
 * `service_id`, still names a backend that exists with the same address,
 * port and, for a flow from outside, locality (local backends are not
 * SNATed, remote ones are), and was made for this service. One inlined
 * array lookup. */
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
	/* A pod's flow is DNATed only, whatever node the backend is on. */
	if (ct->flags & XLB_CT_F_INTERNAL)
		return true;
	local = backend->flags & XLB_BE_F_LOCAL;
	snat = ct->flags & XLB_CT_F_SNAT;
	return local != snat;
}

/* The conntrack entry of `flow`, whose first packet (here) has TCP flags
 * `tcp_flags`, placed at `now` (xlb_now, ticks) on `backend`: SNATed when
 * `snat_port` is set, with `base_flags` (XLB_CT_F_INTERNAL, _HAIRPIN: a
 * pod's flow, tc) besides; no next hop cached yet. */
static __always_inline struct xlb_ct_entry xlb_ct_entry_of(const struct xlb_flow_key *flow, __u32 backend_id,
							   const struct xlb_backend *backend, __be16 snat_port,
							   __u32 service_id, __u8 tcp_flags, __u32 now,
							   __u32 base_flags)
{
	struct xlb_ct_entry entry = {
		.backend_id = backend_id,
		.backend_addr = backend->addr,
		.backend_port = backend->port,
		.snat_port = snat_port,
		.service_id = service_id,
		.flags = xlb_ct_next_flags(flow->proto, (snat_port ? XLB_CT_F_SNAT : 0) | base_flags, tcp_flags),
		.seen = now,
	};

	return entry;
}

/* Write (or overwrite) the conntrack entry of `flow` (xlb_ct_entry_of's
 * arguments). 0 or a negative errno. */
static __always_inline long xlb_ct_store(const struct xlb_flow_key *flow, __u32 backend_id,
					 const struct xlb_backend *backend, __be16 snat_port,
					 __u32 service_id, __u8 tcp_flags, __u32 now, __u32 base_flags)
{
	struct xlb_ct_entry entry = xlb_ct_entry_of(flow, backend_id, backend, snat_port, service_id, tcp_flags, now,
						    base_flags);

	return bpf_map_update_elem(&xlb_conntrack, flow, &entry, BPF_ANY);
}

#endif /* XLB_CONNTRACK_H */
