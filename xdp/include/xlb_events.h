/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_events.h: flow events for the agent (docs/datapath.md, "Flow
 * events"): a new flow placed on its backend, a packet dropped and why,
 * each with the packet's 5-tuple, into the xlb_events ring buffer. An
 * established flow's packets make none (as Cilium's monitor aggregation),
 * so the per-packet cost stays where it is; new flows and drops pay one
 * ring buffer reservation each, up to a rate per CPU, above which events
 * are counted as suppressed instead.
 */
#ifndef XLB_EVENTS_H
#define XLB_EVENTS_H

#include <stdbool.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include "xlb_types.h"
#include "xlb_maps.h"
#include "xlb_clock.h"
#include "xlb_parse.h"

/* Events sent per tick (about a second) and CPU; 0: no events, and no
 * cost (the branch is gone once the loader has set it). Set by the loader
 * from the configuration (flows.eventsPerSecond). */
const volatile __u32 xlb_events_per_tick = 0;

/* Send an event of `type` for the flow `flow` (with TCP flags `tcp_flags`)
 * seen at `point`: `reason` for a drop; the service, and for a new flow its
 * backend, SNAT port, flow hash and how the backend was chosen. At most xlb_events_per_tick a tick on this CPU; one
 * over the rate, or finding the ring full, is counted as suppressed instead. */
static __always_inline void xlb_event_flow(const struct xlb_flow_key *flow, __u8 tcp_flags, __u8 type, __u8 reason,
					   __u32 service_id, __be32 backend_addr, __be16 backend_port,
					   __be16 snat_port, __u8 point, __u32 hash, __u8 selection)
{
	__u32 key = 0, now;
	struct xlb_event_limit *l;
	struct xlb_flow_event *e;

	if (!xlb_events_per_tick)
		return;
	l = bpf_map_lookup_elem(&xlb_event_limit, &key);
	if (!l)
		return;
	now = xlb_now();
	if (l->tick != now) {
		l->tick = now;
		l->sent = 0;
	}
	if (l->sent >= xlb_events_per_tick) {
		l->suppressed++;
		return;
	}
	e = bpf_ringbuf_reserve(&xlb_events, sizeof(*e), 0);
	if (!e) {
		l->suppressed++;
		return;
	}
	l->sent++;
	e->ts_ns = bpf_ktime_get_ns();
	e->saddr = flow->saddr;
	e->daddr = flow->daddr;
	e->sport = flow->sport;
	e->dport = flow->dport;
	e->proto = flow->proto;
	e->type = type;
	e->reason = reason;
	e->tcp_flags = tcp_flags;
	e->service_id = service_id;
	e->backend_addr = backend_addr;
	e->backend_port = backend_port;
	e->snat_port = snat_port;
	e->point = point;
	e->selection = selection;
	e->pad[0] = 0;
	e->pad[1] = 0;
	e->hash = hash;
	e->pad2 = 0;
	/* The agent reads the ring on a timer (ring_buffer__consume) and never
	 * sleeps on it: no wakeup to send. */
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

/* The same for the parsed packet `pkt` (a drop or a close: no hash, no selection). */
static __always_inline void xlb_event(const struct xlb_pkt *pkt, __u8 type, __u8 reason, __u32 service_id,
				      __be32 backend_addr, __be16 backend_port, __be16 snat_port, __u8 point)
{
	xlb_event_flow(&pkt->flow, pkt->tcp_flags, type, reason, service_id, backend_addr, backend_port, snat_port,
		       point, 0, XLB_SELECT_MAGLEV);
}

/* A new flow of the parsed packet `pkt`, placed on backend addr:port by
 * flow hash `hash` (`selection`: Maglev or affinity). */
static __always_inline void xlb_event_placed(const struct xlb_pkt *pkt, __u32 service_id, __be32 backend_addr,
					     __be16 backend_port, __be16 snat_port, __u8 point, __u32 hash,
					     __u8 selection)
{
	xlb_event_flow(&pkt->flow, pkt->tcp_flags, XLB_EVENT_NEW_FLOW, 0, service_id, backend_addr, backend_port,
		       snat_port, point, hash, selection);
}

#endif /* XLB_EVENTS_H */
