/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_snat.h: SNATed flows (docs/datapath.md, "Replies and SNAT ports"). A flow to a
 * remote backend leaves the node from node:port, and its reply comes back
 * to that port; both directions are found in one element of xlb_snat_sets,
 * so that a new flow writes that element and nothing else:
 *
 * - the flow lives in the set its hash names (xlb_snat_flow_hash % sets),
 *   where its packets find it;
 * - it takes one of that set's ports, min + set + k * sets, so that a reply
 *   to the port finds the set from the port alone: one that no flow of the
 *   set holds towards the same backend, else one whose flow is over;
 * - when every port of the set is held towards that backend: in a full set,
 *   the way of the set's first port if CLOCK would take it anyway; else (a
 *   backend with many flows, near its port range's end) a port of another
 *   set, with a pointer there (XLB_CT_F_POINTER): the rare second write;
 * - a full set gives a way to a newcomer by CLOCK (second chance: a way
 *   whose flow sent since the hand last passed is skipped once); above the
 *   SYN-flood guard's rate, only a way whose flow never got an answer, is
 *   over, or is empty.
 *
 * Because a flow and its port are one element, a port is free exactly when
 * its flow is gone (replaced or over): no lookup elsewhere decides whether
 * a port may be taken.
 *
 * Concurrency: an insert claims its set by a compare-and-swap of the set's
 * `hand` (a sequence in its upper bits), so two CPUs never fill one way for
 * two flows; it clears the way's tags before filling it and sets them after,
 * and a reader matches a tag and then the whole flow or reply, so a reader
 * sees a way only once it is filled or while it still holds the old flow.
 */
#ifndef XLB_SNAT_H
#define XLB_SNAT_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "xlb_types.h"
#include "xlb_consts.h"
#include "xlb_maps.h"
#include "xlb_jhash.h"
#include "xlb_clock.h"
#include "xlb_conntrack.h"

/* SNAT port range, host order, inclusive; sets of xlb_snat_sets as the
 * loader sized it (a power of two, at most one per port of the range). */
const volatile __u16 xlb_snat_port_min = XLB_SNAT_PORT_MIN_DEFAULT;
const volatile __u16 xlb_snat_port_max = XLB_SNAT_PORT_MAX_DEFAULT;
const volatile __u32 xlb_snat_set_count = XLB_SNAT_SETS_MAX;

#define XLB_SNAT_SEED 0x736e6174 /* "snat" */
#define XLB_SNAT_WAY_MASK (XLB_SNAT_WAYS - 1)

/* Sets, never 0 (the verifier and a bad load alike); the loader makes it a
 * power of two, so that a set is a mask away (no division on the
 * established path). */
static __always_inline __u32 xlb_snat_nsets(void)
{
	return xlb_snat_set_count ? xlb_snat_set_count : 1;
}

/* The set `x` (a hash, or a port's offset in the range) falls in. */
static __always_inline __u32 xlb_snat_set_of(__u32 x)
{
	return x & (xlb_snat_nsets() - 1);
}

/* The hash of a flow (client -> frontend) that names its set and tag. */
static __always_inline __u32 xlb_snat_flow_hash(const struct xlb_flow_key *f)
{
	return xlb_jhash_3words(f->saddr, f->daddr, ((__u32)f->sport << 16) | f->dport, XLB_SNAT_SEED + f->proto);
}

/* The hash of a reply from backend:bport to SNAT port `port`: its tag. */
static __always_inline __u32 xlb_snat_reply_hash(__be32 backend, __be16 bport, __be16 port, __u8 proto)
{
	return xlb_jhash_3words(backend, ((__u32)bport << 16) | port, proto, XLB_SNAT_SEED);
}

/* A tag: one byte of a hash, never 0 (an empty way's). */
static __always_inline __u8 xlb_snat_tag(__u32 hash)
{
	__u8 t = hash >> 24;

	return t ? t : 1;
}

/* The bytes of `tags` (eight tags, one word) equal to `tag`: the
 * has-zero-byte test on tags ^ tag x 8, 0x80 in each flagged byte. The
 * lowest flagged byte is always equal; a byte above an equal one may be
 * flagged falsely (the borrow), so callers check what they find. */
static __always_inline __u64 xlb_snat_tags_eq(__u64 tags, __u8 tag)
{
	__u64 x = tags ^ (0x0101010101010101ULL * tag);

	return (x - 0x0101010101010101ULL) & ~x & 0x8080808080808080ULL;
}

/* The set of SNAT port `port` (host order, within the range). */
static __always_inline __u32 xlb_snat_set_of_port(__u16 port)
{
	return xlb_snat_set_of((__u32)port - xlb_snat_port_min);
}

static __always_inline bool xlb_snat_flow_is(const struct xlb_flow_key *a, const struct xlb_flow_key *b)
{
	return a->saddr == b->saddr && a->daddr == b->daddr && a->sport == b->sport && a->dport == b->dport &&
	       a->proto == b->proto;
}

/* Whether way `w` (in use) holds port `port` towards backend:bport. */
static __always_inline bool xlb_snat_holds(const struct xlb_snat_flow *w, __be32 backend, __be16 bport, __be16 port,
					   __u8 proto)
{
	return w->ct.snat_port == port && w->ct.backend_addr == backend && w->ct.backend_port == bport &&
	       w->flow.proto == proto && w->ct.seen;
}

/* The scans of a set are global functions (verified once each, whatever
 * calls them; the verifier would otherwise walk every way of every scan at
 * every call site): they take the set's index and look it up themselves. */

/* The way of set `key` holding the flow saddr:sport -> daddr:dport/proto
 * itself (not a pointer) with forward tag `tag`, or -1. `ports`: sport << 16
 * | dport as stored. */
__attribute__((noinline)) int xlb_snat_scan_flow(__u32 key, __u32 tag, __be32 saddr, __be32 daddr, __u64 ports_proto)
{
	struct xlb_snat_set *set = bpf_map_lookup_elem(&xlb_snat_sets, &key);
	__u32 ports = ports_proto >> 8;
	__u8 proto = ports_proto & 0xff;
	struct xlb_snat_flow *w;
	int i;

	if (!set)
		return -1;
	/* Eight tags at a time: a word with no byte equal to the tag skips
	 * its eight ways. */
	for (i = 0; i < XLB_SNAT_WAYS; i++) {
		if (!(i & 7) && !xlb_snat_tags_eq(*(__u64 *)&set->tag[i], tag)) {
			i += 7;
			continue;
		}
		if (set->tag[i] != (__u8)tag)
			continue;
		w = &set->way[i];
		if (w->ct.seen && !(w->ct.flags & XLB_CT_F_POINTER) && w->flow.saddr == saddr && w->flow.daddr == daddr &&
		    (((__u32)w->flow.sport << 16) | w->flow.dport) == ports && w->flow.proto == proto)
			return i;
	}
	return -1;
}

/* The way of set `key` holding port `port` towards backend:bport (a flow or
 * a pointer), other than `skip`, or -1. `bport_port`: bport << 16 | port as
 * stored. */
__attribute__((noinline)) int xlb_snat_scan_port(__u32 key, __be32 backend, __u32 bport_port, __u32 proto, int skip)
{
	struct xlb_snat_set *set = bpf_map_lookup_elem(&xlb_snat_sets, &key);
	__be16 bport = bport_port >> 16, port = bport_port & 0xffff;
	__u8 rtag = xlb_snat_tag(xlb_snat_reply_hash(backend, bport, port, proto));
	int i;

	if (!set)
		return -1;
	for (i = 0; i < XLB_SNAT_WAYS; i++) {
		if (!(i & 7) && !xlb_snat_tags_eq(*(__u64 *)&set->rtag[i], rtag)) {
			i += 7;
			continue;
		}
		if (set->rtag[i] != rtag || i == skip)
			continue;
		if (xlb_snat_holds(&set->way[i], backend, bport, port, proto))
			return i;
	}
	return -1;
}

/* The way of set `key` holding the flow `flow` itself (not a pointer), or -1. */
static __always_inline int xlb_snat_way_of(__u32 key, const struct xlb_flow_key *flow, __u8 tag)
{
	return xlb_snat_scan_flow(key, tag, flow->saddr, flow->daddr,
				  ((__u64)(((__u32)flow->sport << 16) | flow->dport) << 8) | flow->proto);
}

/* The way of set `key` holding port `port` towards backend:bport, other
 * than `skip`, or -1. */
static __always_inline int xlb_snat_way_holding(__u32 key, __be32 backend, __be16 bport, __be16 port, __u8 proto,
						int skip)
{
	return xlb_snat_scan_port(key, backend, ((__u32)bport << 16) | port, proto, skip);
}

/* Mark way `i` of `set` sent-from (CLOCK's second chance). Once a tick at
 * most, from the callers' own once-a-tick stores. */
static __always_inline void xlb_snat_ref(struct xlb_snat_set *set, __u32 i)
{
	__u32 bit = 1u << (i & XLB_SNAT_WAY_MASK);

	if (!(set->ref & bit))
		__sync_fetch_and_or(&set->ref, bit);
}

/* The first way of `set` whose tag is `tag`, or -1: the lowest byte equal
 * to it of the first word of eight tags that has one, its index computed,
 * not searched: no loop, no branch a way. */
static __always_inline int xlb_snat_first_tag(const struct xlb_snat_set *set, __u8 tag)
{
	__u64 m;
	__u32 w;

	for (w = 0; w < XLB_SNAT_WAYS / 8; w++) {
		m = xlb_snat_tags_eq(*(const __u64 *)&set->tag[w * 8], tag);
		if (m)
			/* lowest flagged byte j: (m & -m) >> 7 is 256^j, and
			 * 256^j * 0x0001020304050607 has j in its top byte */
			return w * 8 + ((((m & -m) >> 7) * 0x0001020304050607ULL) >> 56);
	}
	return -1;
}

/* The SNATed flow `flow`, or NULL; `*setp`, `*wayp`: where it is. The
 * established path's lookup: the first way whose tag matches, inline; only
 * when that way holds another flow (one tag in 256) the whole set, through
 * the global scan. */
static __always_inline struct xlb_snat_flow *xlb_snat_find(const struct xlb_flow_key *flow, struct xlb_snat_set **setp,
							    __u32 *wayp)
{
	__u32 hash = xlb_snat_flow_hash(flow);
	__u32 key = xlb_snat_set_of(hash);
	struct xlb_snat_set *set = bpf_map_lookup_elem(&xlb_snat_sets, &key);
	struct xlb_snat_flow *w;
	int i;

	if (!set)
		return NULL;
	i = xlb_snat_first_tag(set, xlb_snat_tag(hash));
	if (i < 0)
		return NULL;
	w = &set->way[i & XLB_SNAT_WAY_MASK];
	if (!w->ct.seen || (w->ct.flags & XLB_CT_F_POINTER) || !xlb_snat_flow_is(&w->flow, flow)) {
		i = xlb_snat_way_of(key, flow, xlb_snat_tag(hash));
		if (i < 0)
			return NULL;
		w = &set->way[i & XLB_SNAT_WAY_MASK];
	}
	*setp = set;
	*wayp = i & XLB_SNAT_WAY_MASK;
	return w;
}

/* Empty way `i` of `set`: tags first, so that no reader matches it while
 * it changes. */
static __always_inline void xlb_snat_clear(struct xlb_snat_set *set, __u32 i)
{
	i &= XLB_SNAT_WAY_MASK;
	set->tag[i] = 0;
	set->rtag[i] = 0;
	set->way[i].ct.seen = 0;
}

/* Forget the other half of way `i` of set `set_index` (about to be reused
 * or cleared): the pointer of a flow that holds another set's port, or the
 * flow a pointer points to. A global function (verified once). */
__attribute__((noinline)) int xlb_snat_unlink_way(__u32 set_index, __u32 i)
{
	struct xlb_snat_set *set = bpf_map_lookup_elem(&xlb_snat_sets, &set_index), *other;
	struct xlb_snat_flow *w;
	__u32 key;
	int j;

	if (!set)
		return 0;
	w = &set->way[i & XLB_SNAT_WAY_MASK];
	if (!w->ct.seen || !set->tag[i & XLB_SNAT_WAY_MASK])
		return 0;
	if (w->ct.flags & XLB_CT_F_POINTER) {
		struct xlb_snat_flow *f = xlb_snat_find(&w->flow, &other, &key);

		if (f && f->ct.snat_port == w->ct.snat_port)
			xlb_snat_clear(other, key);
		return 0;
	}
	key = xlb_snat_set_of_port(bpf_ntohs(w->ct.snat_port));
	if (key == set_index)
		return 0;
	other = bpf_map_lookup_elem(&xlb_snat_sets, &key);
	if (!other)
		return 0;
	j = xlb_snat_way_holding(key, w->ct.backend_addr, w->ct.backend_port, w->ct.snat_port, w->flow.proto, -1);
	if (j >= 0 && (other->way[j & XLB_SNAT_WAY_MASK].ct.flags & XLB_CT_F_POINTER) &&
	    xlb_snat_flow_is(&other->way[j & XLB_SNAT_WAY_MASK].flow, &w->flow))
		xlb_snat_clear(other, j);
	return 0;
}

/* Forget SNATed flow `w` at way `i` of `set` (its flow moved to a local
 * backend, or was placed again): its port is free. */
static __always_inline void xlb_snat_forget(struct xlb_snat_set *set, __u32 set_index, __u32 i)
{
	xlb_snat_unlink_way(set_index, i);
	xlb_snat_clear(set, i);
}

/* Whether the flow of way `w` is over at `now`: silent both ways for the
 * lifetime of its state; with `closed_ok`, a closing one (a FIN or RST seen)
 * silent both ways for xlb_snat_closed_reuse already (taken only when every
 * port is held: a new flow is worth more than the retransmissions a closed
 * one may still see). */
static __always_inline bool xlb_snat_way_over(const struct xlb_snat_flow *w, __u32 now, bool closed_ok)
{
	__u32 life = (closed_ok && (w->ct.flags & XLB_CT_F_CLOSING)) ? xlb_snat_closed_reuse
								     : xlb_ct_lifetime(w->flow.proto, w->ct.flags);

	return xlb_silent_for(now, w->ct.seen, life) && (!w->ct.reply_seen || xlb_silent_for(now, w->ct.reply_seen, life));
}

/* Whether, above the SYN-flood guard's rate, way `w` must be left alone: its
 * flow was answered or is established, and is not over. */
static __always_inline bool xlb_snat_protected(const struct xlb_snat_flow *w, __u32 now)
{
	return ((w->ct.flags & XLB_CT_F_ESTABLISHED) || w->ct.reply_seen) && !xlb_snat_way_over(w, now, false);
}

/* The way of set `key` a newcomer takes, or -1 (every way protected, above
 * the flood guard's rate): an empty way, else from the hand on the first
 * whose flow has not sent since the hand last passed (CLOCK), clearing the
 * mark of those that have; with `keep` false only an unprotected one. A
 * global function. */
__attribute__((noinline)) int xlb_snat_victim(__u32 key, __u32 hand, __u32 now, __u32 keep)
{
	struct xlb_snat_set *set = bpf_map_lookup_elem(&xlb_snat_sets, &key);
	__u32 k, i, bit;

	if (!set)
		return -1;
	/* An empty way first: the first tag 0. */
	i = xlb_snat_first_tag(set, 0);
	if ((int)i >= 0)
		return i;
	for (k = 0; k < 2 * XLB_SNAT_WAYS; k++) {
		i = (hand + k) & XLB_SNAT_WAY_MASK;
		if (!set->tag[i])
			return i;
		bit = 1u << i;
		if (set->ref & bit) {
			__sync_fetch_and_and(&set->ref, ~bit);
			continue;
		}
		if (keep || !xlb_snat_protected(&set->way[i], now))
			return i;
	}
	return -1;
}

/* xlb_snat_way_over for way `w` of a set: a pointer is judged by the flow it
 * points to (over when that is gone). */
static __always_inline bool xlb_snat_over(const struct xlb_snat_flow *w, __u32 now, bool closed_ok)
{
	struct xlb_snat_set *home;
	__u32 hash, key;
	int j;

	if (!(w->ct.flags & XLB_CT_F_POINTER))
		return xlb_snat_way_over(w, now, closed_ok);
	/* xlb_snat_find's work without its out parameters: this runs four
	 * calls deep (bpf_loop, xlb_snat_pick, here, the scan), where the
	 * verifier's 512 bytes of stack have no 16 to spare. */
	hash = xlb_snat_flow_hash(&w->flow);
	key = xlb_snat_set_of(hash);
	j = xlb_snat_way_of(key, &w->flow, xlb_snat_tag(hash));
	home = bpf_map_lookup_elem(&xlb_snat_sets, &key);
	if (j < 0 || !home || home->way[j & XLB_SNAT_WAY_MASK].ct.snat_port != w->ct.snat_port)
		return true;
	return xlb_snat_way_over(&home->way[j & XLB_SNAT_WAY_MASK], now, closed_ok);
}

/* A port of set `key` for a flow to backend:bport: the first no way but
 * `skip` holds towards it, else the first whose holder is over (that way to
 * be reused). Returns the port (network order, as stored) | (the way to
 * reuse + 1) << 16, or 0 when every port of the set is held by a live flow
 * to that backend. `bport_proto`: bport << 8 | proto, and 1 << 31 to count a
 * closed flow as over already (xlb_snat_over). A global function. */
__attribute__((noinline)) int xlb_snat_pick(__u32 key, int skip, __be32 backend, __u32 bport_proto, __u32 now)
{
	struct xlb_snat_set *set = bpf_map_lookup_elem(&xlb_snat_sets, &key);
	__be16 bport = (bport_proto >> 8) & 0xffff;
	__u8 proto = bport_proto & 0xff;
	bool closed_ok = bport_proto >> 31;
	int over = 0, j;
	__u32 k, port;
	__be16 p;

	if (!set)
		return 0;
	for (k = 0; k < XLB_SNAT_LANES; k++) {
		port = (__u32)xlb_snat_port_min + key + k * xlb_snat_nsets();
		if (port > xlb_snat_port_max)
			break;
		p = bpf_htons(port);
		j = xlb_snat_way_holding(key, backend, bport, p, proto, skip);
		if (j < 0)
			return p;
		if (!over && xlb_snat_over(&set->way[j & XLB_SNAT_WAY_MASK], now, closed_ok))
			over = p | ((j + 1) << 16);
	}
	return over;
}

/* xlb_snat_pick for `backend`: the port (0: none) and `*reuse`, the way to
 * reuse or -1. */
static __always_inline __be16 xlb_snat_pick_port(__u32 key, int skip, const struct xlb_backend *backend, __u8 proto,
						 __u32 now, bool closed_ok, int *reuse)
{
	int r = xlb_snat_pick(key, skip, backend->addr,
			      ((__u32)backend->port << 8) | proto | (closed_ok ? 1u << 31 : 0), now);

	*reuse = (int)((__u32)r >> 16) - 1;
	return r & 0xffff;
}

/* Whether every way of `set` is in use (no tag is 0). */
static __always_inline bool xlb_snat_full(const struct xlb_snat_set *set)
{
	return xlb_snat_first_tag(set, 0) < 0;
}

/* Claim set `set` for an insert: its hand moves from `hand` (read before
 * the way was chosen) to after way `i`, with the sequence in its upper
 * bits one on; false when another CPU inserted in between. */
static __always_inline bool xlb_snat_claim(struct xlb_snat_set *set, __u32 hand, __u32 i)
{
	__u32 next = (((hand >> 8) + 1) << 8) | ((i + 1) & XLB_SNAT_WAY_MASK);

	return __sync_val_compare_and_swap(&set->hand, hand, next) == hand;
}

/* Fill way `i` of `set` (claimed) with `flow` and `ct`, with port `port`
 * and `flags` added; its tags last. */
static __always_inline void xlb_snat_fill(struct xlb_snat_set *set, __u32 i, const struct xlb_flow_key *flow,
					  const struct xlb_ct_entry *ct, __be16 port, __u32 flags)
{
	struct xlb_snat_flow *w;

	i &= XLB_SNAT_WAY_MASK;
	w = &set->way[i];
	set->tag[i] = 0;
	set->rtag[i] = 0;
	w->flow = *flow;
	w->ct = *ct;
	w->ct.snat_port = port;
	w->ct.flags |= flags;
	set->rtag[i] = xlb_snat_tag(xlb_snat_reply_hash(ct->backend_addr, ct->backend_port, port, flow->proto));
	set->tag[i] = xlb_snat_tag(xlb_snat_flow_hash(flow));
}

/* State of the search for a port in other sets (bpf_loop). */
struct xlb_snat_search {
	const struct xlb_flow_key *flow;
	const struct xlb_backend *backend;
	const struct xlb_ct_entry *ct; /* the flow's state: the pointer's */
	__be16 port;                  /* out: the port taken, or 0 */
	__u32 home;
	__u32 x;                      /* the LCG's state */
	__u32 now;
	bool keep;
};

/* The next state of a 32-bit LCG (Numerical Recipes' constants). */
static __always_inline __u32 xlb_snat_next(__u32 x)
{
	return x * 1664525u + 1013904223u;
}

/* One try of xlb_snat_place's search: a set other than the flow's own
 * (the next one when there are no more sets than tries, so that a small
 * range is searched whole; else a pseudo-random one), with a port free (or
 * whose holder is over) towards the backend and a way to give. */
static long xlb_snat_search_one(__u64 n, void *arg)
{
	struct xlb_snat_search *t = arg;
	struct xlb_snat_set *set;
	__u32 key, hand;
	int i, reuse;
	__be16 port;

	if (xlb_snat_nsets() <= XLB_SNAT_RETRIES) {
		if (n + 1 >= xlb_snat_nsets())
			return 1;
		key = xlb_snat_set_of(t->home + 1 + (__u32)n);
	} else {
		t->x = xlb_snat_next(t->x);
		key = xlb_snat_set_of(t->x >> 8);
		if (key == t->home)
			return 0;
	}
	set = bpf_map_lookup_elem(&xlb_snat_sets, &key);
	if (!set)
		return 0;
	hand = set->hand;
	port = xlb_snat_pick_port(key, -1, t->backend, t->flow->proto, t->now, false, &reuse);
	if (!port)
		return 0;
	i = reuse >= 0 ? reuse : xlb_snat_victim(key, hand, t->now, t->keep);
	if (i < 0 || !xlb_snat_claim(set, hand, i))
		return 0;
	xlb_snat_unlink_way(key, i);
	xlb_snat_fill(set, i, t->flow, t->ct, port, XLB_CT_F_POINTER);
	t->port = port;
	return 1;
}

/* Place the SNATed flow `flow`, whose conntrack state is `ct` (snat_port
 * to be chosen), in its set:
 * - the flow there already (placed again) to the same backend keeps its
 *   way and port;
 * - else a port of the set that no live flow holds towards the backend:
 *   a free one in a way CLOCK gives (xlb_snat_victim; `keep` false above the
 *   flood guard's rate), else the way of a flow that is over;
 * - else a port of another set, found in at most XLB_SNAT_RETRIES sets, that
 *   a pointer there leads back from.
 * Returns the flow's element, filled, or NULL when no way or port could be
 * had (the packet is dropped; a client retries). */
static __always_inline struct xlb_snat_flow *xlb_snat_place(const struct xlb_flow_key *flow,
							     const struct xlb_backend *backend,
							     struct xlb_ct_entry *ct, __u32 now, bool keep)
{
	__u32 hash = xlb_snat_flow_hash(flow);
	__u32 key = xlb_snat_set_of(hash);
	struct xlb_snat_set *set = bpf_map_lookup_elem(&xlb_snat_sets, &key);
	struct xlb_snat_flow *o;
	struct xlb_snat_search t;
	__u8 tag = xlb_snat_tag(hash);
	bool kept = false;
	int own, i = -1;
	__u32 hand;

	if (!set)
		return NULL;
	hand = set->hand;
	own = xlb_snat_way_of(key, flow, tag);
	ct->snat_port = 0;
	if (own >= 0) {
		o = &set->way[own & XLB_SNAT_WAY_MASK];
		if (o->ct.backend_addr == backend->addr && o->ct.backend_port == backend->port) {
			ct->snat_port = o->ct.snat_port;
			i = own;
			kept = true;
		}
	}
	if (!ct->snat_port)
		ct->snat_port = xlb_snat_pick_port(key, own, backend, flow->proto, now, false, &i);
	if (!ct->snat_port && keep && xlb_snat_full(set)) {
		/* A full set gives a way anyway: the way holding its first port
		 * towards the backend, when CLOCK would take it too (its flow has
		 * not sent since the hand passed), rather than a second write. */
		__be16 first = bpf_htons(xlb_snat_port_min + key);
		int j = xlb_snat_way_holding(key, backend->addr, backend->port, first, flow->proto, own);

		if (j >= 0 && !(set->ref & (1u << (j & XLB_SNAT_WAY_MASK)))) {
			ct->snat_port = first;
			i = j;
		}
	}
	if (!ct->snat_port) {
		/* Every port of the set is held towards this backend. */
		__builtin_memset(&t, 0, sizeof(t));
		t.flow = flow;
		t.backend = backend;
		t.ct = ct;
		t.home = key;
		t.x = hash;
		t.now = now;
		t.keep = keep;
		bpf_loop(XLB_SNAT_RETRIES, xlb_snat_search_one, &t, 0);
		ct->snat_port = t.port;
	}
	/* Every port held: rather than drop the SYN (its client would retry in
	 * a second), the port of a closed flow of the set silent a while. */
	if (!ct->snat_port)
		ct->snat_port = xlb_snat_pick_port(key, own, backend, flow->proto, now, true, &i);
	if (!ct->snat_port)
		return NULL;
	if (i < 0)
		i = own >= 0 ? own : xlb_snat_victim(key, hand, now, keep);
	if (i < 0 || !xlb_snat_claim(set, hand, i))
		return NULL; /* a pointer just written is cleared when a reply finds no flow behind it */
	if (own >= 0 && own != i)
		xlb_snat_forget(set, key, own);
	if (!kept)
		xlb_snat_unlink_way(key, i);
	xlb_snat_fill(set, i, flow, ct, ct->snat_port, 0);
	return &set->way[i & XLB_SNAT_WAY_MASK];
}

/* The SNATed flow a reply (backend -> node:SNAT port) answers, or NULL;
 * through the port's pointer when the flow lives in another set (a pointer
 * whose flow is gone is cleared). `*setp`, `*wayp`: where the flow is. */
static __always_inline struct xlb_snat_flow *xlb_snat_reply_find(const struct xlb_flow_key *reply,
								  struct xlb_snat_set **setp, __u32 *wayp)
{
	__u16 port = bpf_ntohs(reply->dport);
	__u32 key, pkey;
	struct xlb_snat_set *set;
	struct xlb_snat_flow *w;
	int i;

	if (port < xlb_snat_port_min || port > xlb_snat_port_max)
		return NULL;
	key = xlb_snat_set_of_port(port);
	set = bpf_map_lookup_elem(&xlb_snat_sets, &key);
	if (!set)
		return NULL;
	i = xlb_snat_way_holding(key, reply->saddr, reply->sport, reply->dport, reply->proto, -1);
	if (i < 0)
		return NULL;
	w = &set->way[i & XLB_SNAT_WAY_MASK];
	if (!(w->ct.flags & XLB_CT_F_POINTER)) {
		*setp = set;
		*wayp = i;
		return w;
	}
	pkey = i;
	w = xlb_snat_find(&w->flow, setp, wayp);
	if (!w || w->ct.snat_port != reply->dport || w->ct.backend_addr != reply->saddr ||
	    w->ct.backend_port != reply->sport) {
		xlb_snat_clear(set, pkey);
		return NULL;
	}
	/* The pointer lives while its flow answers. */
	if (set->way[pkey & XLB_SNAT_WAY_MASK].ct.reply_seen != w->ct.reply_seen)
		set->way[pkey & XLB_SNAT_WAY_MASK].ct.reply_seen = w->ct.reply_seen;
	return w;
}

#endif /* XLB_SNAT_H */
