/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_replies.h: how replies are restored (docs/datapath.md, "Replies and
 * SNAT ports"), written so that a new flow costs one map insert, its
 * conntrack entry, and at most a store into an array element besides:
 *
 * - a flow from outside to a local backend: its reply (backend -> client)
 *   finds the conntrack entry itself, through the frontends
 *   xlb_reply_frontends lists for the backend; nothing else is written;
 * - another flow DNATed without SNAT (a pod's flow through tc, an unlisted
 *   frontend, a flow the SYN-flood guard leaves without an entry): its
 *   reply is restored from an element of xlb_replies, one way of the set
 *   its 5-tuple hashes to; a set whose every way holds a live flow sends
 *   the newcomer to the xlb_rnat LRU (the rare second insert);
 * - a SNATed flow (a remote backend) is one element of xlb_snat_sets,
 *   both directions (xlb_snat.h); nothing here.
 *
 * Elements are claimed with a compare-and-swap of `seen` (0: empty), so two
 * CPUs never take one for two flows; a live flow's element is never taken.
 */
#ifndef XLB_REPLIES_H
#define XLB_REPLIES_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "xlb_types.h"
#include "xlb_maps.h"
#include "xlb_jhash.h"
#include "xlb_clock.h"
#include "xlb_conntrack.h"

/* Sets of xlb_replies, as the loader sized them. */
const volatile __u32 xlb_reply_sets = XLB_RNAT_MAX / XLB_REPLY_WAYS;

#define XLB_REPLY_SEED 0x72706c79 /* "rply" */

/* Whether the replies of `flow`, DNATed to local backend `backend`, are
 * found through xlb_reply_frontends (its frontend is listed for that
 * backend): then nothing but its conntrack entry is written for it. */
static __always_inline bool xlb_reply_by_frontend(const struct xlb_backend *backend, const struct xlb_flow_key *flow)
{
	struct xlb_backend_key key = { .addr = backend->addr, .port = backend->port, .proto = flow->proto };
	const struct xlb_reply_frontends *f = bpf_map_lookup_elem(&xlb_reply_frontends, &key);
	__u32 i;

	if (!f)
		return false;
	for (i = 0; i < XLB_REPLY_FRONTENDS; i++) {
		if (i >= f->count)
			break;
		if (f->addr[i] == flow->daddr && f->port[i] == flow->dport)
			return true;
	}
	return false;
}

/* The conntrack entry of the flow that `reply` (backend -> client) answers,
 * found by trying each frontend xlb_reply_frontends lists for its backend,
 * or NULL; `*vip`:`*vip_port` the frontend it was. Only flows from outside
 * placed on a local backend (not SNATed, not a pod's). */
static __always_inline struct xlb_ct_entry *xlb_reply_conntrack(const struct xlb_flow_key *reply, __be32 *vip,
								__be16 *vip_port)
{
	struct xlb_backend_key key = { .addr = reply->saddr, .port = reply->sport, .proto = reply->proto };
	const struct xlb_reply_frontends *f = bpf_map_lookup_elem(&xlb_reply_frontends, &key);
	struct xlb_flow_key flow = {};
	struct xlb_ct_entry *ct;
	__u32 i;

	if (!f)
		return NULL;
	flow.saddr = reply->daddr;
	flow.sport = reply->dport;
	flow.proto = reply->proto;
	for (i = 0; i < XLB_REPLY_FRONTENDS; i++) {
		if (i >= f->count)
			break;
		flow.daddr = f->addr[i];
		flow.dport = f->port[i];
		ct = bpf_map_lookup_elem(&xlb_conntrack, &flow);
		if (ct && ct->backend_addr == reply->saddr && ct->backend_port == reply->sport &&
		    !(ct->flags & (XLB_CT_F_SNAT | XLB_CT_F_INTERNAL))) {
			*vip = flow.daddr;
			*vip_port = flow.dport;
			return ct;
		}
	}
	return NULL;
}

/* Record a reply on conntrack entry `ct` found through
 * xlb_reply_conntrack: `reply_seen` at most once a tick, CLOSING on the
 * backend's FIN or RST. */
static __always_inline void xlb_ct_touch_reply(struct xlb_ct_entry *ct, __u8 tcp_flags, __u32 now)
{
	if (ct->reply_seen != now)
		ct->reply_seen = now ? now : 1;
	if ((tcp_flags & (XLB_TCP_FIN | XLB_TCP_RST)) && !(ct->flags & XLB_CT_F_CLOSING))
		__sync_fetch_and_or(&ct->flags, XLB_CT_F_CLOSING);
}

/* The hash of a reply's 5-tuple. */
static __always_inline __u32 xlb_reply_hash(__be32 saddr, __be32 daddr, __be16 sport, __be16 dport, __u8 proto)
{
	return xlb_jhash_3words(saddr, daddr, ((__u32)sport << 16) | dport, XLB_REPLY_SEED + proto);
}

/* Whether element `s` restores the reply with this 5-tuple. */
static __always_inline bool xlb_reply_is(const struct xlb_reply_slot *s, __be32 saddr, __be32 daddr, __be16 sport,
					 __be16 dport, __u8 proto)
{
	return s->seen && s->reply_saddr == saddr && s->reply_daddr == daddr && s->reply_sport == sport &&
	       s->reply_dport == dport && s->reply_proto == proto;
}

/* Whether the flow that element `s` restores replies for is still alive at
 * `now`, and (`idle`, may be NULL) for how many ticks it has been silent.
 * Its conntrack entry is the flow's owner: while it exists and still places
 * the flow on this backend (and SNAT port), the flow lives until it has been
 * silent in both directions for the lifetime of its state. Without one (its
 * entry evicted by a full table, expired, or moved elsewhere), a flow the
 * backend has answered lives on until the backend has been silent for the
 * lifetime of the element's state (so that a flow whose entry was evicted
 * gets its own port back on its next packet), and one it never answered (a
 * SYN that went nowhere, a spoofed one) is over at once: elements never
 * outlive flows that cannot come back, however full the tables are. The
 * owner is looked up only for an element someone wants to take. */
static __always_inline bool xlb_slot_alive(const struct xlb_reply_slot *s, __u32 now, __s32 *idle)
{
	struct xlb_flow_key owner = {
		.saddr = s->client_addr,
		.daddr = s->vip,
		.sport = s->client_port,
		.dport = s->vip_port,
		.proto = s->reply_proto,
	};
	const struct xlb_ct_entry *ct;
	__s32 silent = (__s32)(now - s->seen), client_silent;
	__u32 flags = s->flags;

	if (!s->seen)
		return false;
	ct = bpf_map_lookup_elem(&xlb_conntrack, &owner);
	if (ct && ct->backend_addr == s->reply_saddr && ct->backend_port == s->reply_sport &&
	    !((ct->flags ^ s->flags) & XLB_CT_F_SNAT) && (!(s->flags & XLB_CT_F_SNAT) || ct->snat_port == s->reply_dport)) {
		flags |= ct->flags;
		client_silent = (__s32)(now - ct->seen);
		if (client_silent < silent)
			silent = client_silent;
	} else if (!(flags & XLB_CT_F_REPLIED)) {
		return false;
	}
	if (idle)
		*idle = silent;
	return silent <= (__s32)xlb_ct_lifetime(s->reply_proto, flags);
}

/* The element of xlb_replies (or xlb_rnat) that restores this reply, or NULL. */
static __always_inline struct xlb_reply_slot *xlb_reply_find(const struct xlb_flow_key *reply)
{
	__u32 set = xlb_reply_hash(reply->saddr, reply->daddr, reply->sport, reply->dport, reply->proto) %
		    (xlb_reply_sets ? xlb_reply_sets : 1);
	struct xlb_reply_slot *s;
	__u32 i, key;

	for (i = 0; i < XLB_REPLY_WAYS; i++) {
		key = set * XLB_REPLY_WAYS + i;
		s = bpf_map_lookup_elem(&xlb_replies, &key);
		if (s && xlb_reply_is(s, reply->saddr, reply->daddr, reply->sport, reply->dport, reply->proto))
			return s;
	}
	s = bpf_map_lookup_elem(&xlb_rnat, reply);
	return s && s->seen ? s : NULL;
}

/* Fill element `s` (claimed: its `seen` is ours) for the reply `reply` of
 * client -> frontend `flow`. Plain stores: a reader on another CPU may see
 * a mix for the instant of the rewrite, but only of an element whose old
 * flow is over (or empty), whose replies nothing awaits. */
static __always_inline void xlb_reply_fill(struct xlb_reply_slot *s, const struct xlb_flow_key *flow,
					   const struct xlb_flow_key *reply, __u32 service_id, __u32 flags)
{
	s->vip = flow->daddr;
	s->client_addr = flow->saddr;
	s->vip_port = flow->dport;
	s->client_port = flow->sport;
	s->service_id = service_id;
	s->flags = flags;
	s->reply_saddr = reply->saddr;
	s->reply_daddr = reply->daddr;
	s->reply_sport = reply->sport;
	s->reply_dport = reply->dport;
	s->reply_proto = reply->proto;
}

/* Take element `s` for a new flow: swap its `seen` from the value read to
 * `now` (never 0, which means empty); the first CPU to do so wins. */
static __always_inline bool xlb_reply_claim(struct xlb_reply_slot *s, __u32 now)
{
	__u32 seen = s->seen;

	return __sync_val_compare_and_swap(&s->seen, seen, now ? now : 1) == seen;
}

/* Claim element `s` for the reply `reply` of `flow` and fill it; false when
 * another CPU claimed it first. */
static __always_inline bool xlb_reply_take(struct xlb_reply_slot *s, __u32 now, const struct xlb_flow_key *flow,
					   const struct xlb_flow_key *reply, __u32 service_id, __u32 flags)
{
	if (!xlb_reply_claim(s, now))
		return false;
	xlb_reply_fill(s, flow, reply, service_id, flags);
	return true;
}

/* Store how to restore the reply of `flow` DNATed to backend addr:port
 * without SNAT, the reply going to `reply_daddr`:`reply_dport` (the client,
 * or the hairpin address): in a way of its xlb_replies set, else (the set
 * full of live flows) in xlb_rnat when `overflow` is allowed. 0, or a
 * negative errno. */
static __always_inline long xlb_reply_store(const struct xlb_flow_key *flow, __be32 backend, __be16 bport,
					    __be32 reply_daddr, __u32 service_id, __u32 flags, __u32 now, bool overflow)
{
	struct xlb_flow_key reply = {
		.saddr = backend,
		.daddr = reply_daddr,
		.sport = bport,
		.dport = flow->sport,
		.proto = flow->proto,
	};
	__u32 set = xlb_reply_hash(reply.saddr, reply.daddr, reply.sport, reply.dport, reply.proto) %
		    (xlb_reply_sets ? xlb_reply_sets : 1);
	struct xlb_reply_slot *s, entry = {};
	__u32 i, key;

	/* An empty way or its own (the flow placed again) first, then one
	 * whose flow is over. */
	for (i = 0; i < XLB_REPLY_WAYS; i++) {
		key = set * XLB_REPLY_WAYS + i;
		s = bpf_map_lookup_elem(&xlb_replies, &key);
		if (s && (!s->seen || xlb_reply_is(s, reply.saddr, reply.daddr, reply.sport, reply.dport, reply.proto)) &&
		    xlb_reply_take(s, now, flow, &reply, service_id, flags))
			return 0;
	}
	for (i = 0; i < XLB_REPLY_WAYS; i++) {
		key = set * XLB_REPLY_WAYS + i;
		s = bpf_map_lookup_elem(&xlb_replies, &key);
		if (s && !xlb_slot_alive(s, now, NULL) && xlb_reply_take(s, now, flow, &reply, service_id, flags))
			return 0;
	}
	if (!overflow)
		return -28; /* ENOSPC */
	entry.seen = now ? now : 1;
	xlb_reply_fill(&entry, flow, &reply, service_id, flags);
	return bpf_map_update_elem(&xlb_rnat, &reply, &entry, BPF_ANY);
}

/* The reply 5-tuple of `flow` placed as conntrack entry `ct`: backend ->
 * node:SNAT port for a SNATed flow (`addr`: the node IP), backend -> hairpin
 * address:client port for a hairpin flow (`addr`: the hairpin address, tc),
 * else backend -> client. */
static __always_inline struct xlb_flow_key xlb_reply_key_of(const struct xlb_flow_key *flow,
							    const struct xlb_ct_entry *ct, __be32 addr)
{
	struct xlb_flow_key reply = {
		.saddr = ct->backend_addr,
		.daddr = flow->saddr,
		.sport = ct->backend_port,
		.dport = flow->sport,
		.proto = flow->proto,
	};

	if (ct->flags & XLB_CT_F_SNAT) {
		reply.daddr = addr;
		reply.dport = ct->snat_port;
	} else if (ct->flags & XLB_CT_F_HAIRPIN) {
		reply.daddr = addr;
	}
	return reply;
}

/* The element restoring the replies of `flow` placed as `ct`, if it still
 * restores them to this same client and frontend (never a SNATed flow's:
 * its element is its own, xlb_snat.h). */
static __always_inline struct xlb_reply_slot *xlb_reply_of(const struct xlb_flow_key *flow, const struct xlb_ct_entry *ct,
							    __be32 addr)
{
	struct xlb_flow_key reply = xlb_reply_key_of(flow, ct, addr);
	struct xlb_reply_slot *s;

	if (ct->flags & XLB_CT_F_SNAT)
		return NULL;
	s = xlb_reply_find(&reply);

	if (s && s->client_addr == flow->saddr && s->client_port == flow->sport && s->vip == flow->daddr &&
	    s->vip_port == flow->dport)
		return s;
	return NULL;
}

/* True when the flow of `flow`, placed as `ct`, is over at `now`: silent
 * for longer than the lifetime of its state in both directions. The client's
 * packets refresh ct->seen, replies ct->reply_seen or their element's `seen`
 * (read only when the client has been silent that long). */
static __always_inline bool xlb_ct_expired(const struct xlb_flow_key *flow, const struct xlb_ct_entry *ct, __u32 now,
					   __be32 addr)
{
	const struct xlb_reply_slot *s;

	if (!xlb_silent_for(now, ct->seen, xlb_ct_lifetime(flow->proto, ct->flags)))
		return false;
	/* replies found through the entry itself (xlb_reply_frontends, or a
	 * SNATed flow's element) */
	if (ct->reply_seen && !xlb_silent_for(now, ct->reply_seen, xlb_ct_lifetime(flow->proto, ct->flags)))
		return false;
	if (ct->flags & XLB_CT_F_SNAT)
		return true;
	s = xlb_reply_of(flow, ct, addr);
	if (!s)
		return true;
	return xlb_silent_for(now, s->seen, xlb_ct_lifetime(flow->proto, ct->flags | s->flags));
}

/* Record a reply on element `s`: `seen` at most once a tick, REPLIED once,
 * CLOSING on the backend's FIN or RST. Stores into the element, no map
 * update. */
static __always_inline void xlb_reply_touch(struct xlb_reply_slot *s, __u8 tcp_flags, __u32 now)
{
	__u32 flags = s->flags;

	if (s->seen != now)
		s->seen = now ? now : 1;
	if (!(flags & XLB_CT_F_REPLIED))
		__sync_fetch_and_or(&s->flags, XLB_CT_F_REPLIED);
	if ((tcp_flags & (XLB_TCP_FIN | XLB_TCP_RST)) && !(flags & XLB_CT_F_CLOSING))
		__sync_fetch_and_or(&s->flags, XLB_CT_F_CLOSING);
}

/* Forget how to restore the replies of `flow`'s old placement `stale`,
 * when the flow leaves that backend. */
static __always_inline void xlb_reply_forget(const struct xlb_flow_key *flow, const struct xlb_ct_entry *stale,
					     __be32 addr)
{
	struct xlb_reply_slot *s = xlb_reply_of(flow, stale, addr);
	__u32 seen;

	if (!s)
		return;
	seen = s->seen;
	__sync_val_compare_and_swap(&s->seen, seen, 0);
}

#endif /* XLB_REPLIES_H */
