/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_maps.h: every map of the datapath, in one place (docs/datapath.md,
 * "Maps"). Each object that includes this header declares all of them; with
 * LIBBPF_PIN_BY_NAME and one pin_root_path per instance, libbpf creates each
 * map once and the XDP and tc programs share it.
 */
#ifndef XLB_MAPS_H
#define XLB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "xlb_types.h"
#include "xlb_consts.h"

/* Every map is pinned by name under the loader's pin_root_path. `make
 * verify` builds with XLB_NO_PIN: bpftool cannot set a pin root, and would
 * otherwise pin (or reuse!) maps directly under /sys/fs/bpf. */
#ifdef XLB_NO_PIN
#define XLB_PIN_BY_NAME
#else
#define XLB_PIN_BY_NAME __uint(pinning, LIBBPF_PIN_BY_NAME)
#endif

/* Frontend (VIP/node IP, port, protocol) -> service. Written only by the
 * control plane and sparse, so no preallocation. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, XLB_FRONTENDS_MAX);
	__type(key, struct xlb_frontend_key);
	__type(value, struct xlb_service);
	XLB_PIN_BY_NAME;
} xlb_frontends SEC(".maps");

/* Backend ID -> backend. An array, so the lookup is inlined by the
 * verifier; an all-zero entry means "no such backend". */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_BACKENDS_MAX);
	__type(key, __u32);
	__type(value, struct xlb_backend);
	XLB_PIN_BY_NAME;
} xlb_backends SEC(".maps");

/* Maglev lookup tables live in slabs: mmapable arrays of 2^20 slots (4 MiB),
 * created by the control plane as it needs them and held here. A table is
 * M + 1 consecutive slots of one slab (xlb_types.h). The control plane
 * writes a new or changed table into free slots through the slab's memory
 * mapping and then points the service's descriptor at it; the slots it left
 * are reused only after an RCU grace period, so a packet never reads a
 * table being overwritten. All slabs have the template's size and flags, so
 * the verifier inlines their lookups. */
struct xlb_maglev_slab {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, XLB_MAGLEV_SLAB_SLOTS / XLB_MAGLEV_ENTRY_SLOTS);
	__type(key, __u32);
	__type(value, __u32[XLB_MAGLEV_ENTRY_SLOTS]); /* slot s: entry s / 16, index s % 16 */
};

/* Slab index -> slab. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, XLB_MAGLEV_SLABS_MAX);
	__type(key, __u32);
	XLB_PIN_BY_NAME;
	__array(values, struct xlb_maglev_slab); /* a flexible array: last */
} xlb_maglev_slabs SEC(".maps");

/* Service ID -> its table descriptor (slab << 20 | first slot, 0 = none),
 * switched by one aligned 4-byte store through the map's memory mapping. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, XLB_SERVICES_MAX);
	__type(key, __u32);
	__type(value, __u32);
	XLB_PIN_BY_NAME;
} xlb_maglev SEC(".maps");

/* Flow (client -> frontend) -> the backend it keeps. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_CONNTRACK_MAX);
	__type(key, struct xlb_flow_key);
	__type(value, struct xlb_ct_entry);
	XLB_PIN_BY_NAME;
} xlb_conntrack SEC(".maps");

/* Replies of flows DNATed without SNAT whose conntrack entry cannot be
 * found from the reply (pods' flows through tc; a flow from outside whose
 * frontend xlb_reply_frontends does not list; one the SYN-flood guard left
 * without an entry): where their restoration is found, in sets of
 * XLB_REPLY_WAYS elements; the set of a reply is its 5-tuple's hash modulo
 * the sets (xlb_reply_sets). Writing one is a store into an array element:
 * no allocation, no eviction. A set whose every way holds a live flow sends
 * the newcomer to xlb_rnat. Sized by the loader (datapath.conntrackSize
 * elements). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_RNAT_MAX);
	__type(key, __u32);
	__type(value, struct xlb_reply_slot);
	XLB_PIN_BY_NAME;
} xlb_replies SEC(".maps");

/* SNATed flows (xlb_snat.h): both directions of each flow to a remote
 * backend, in sets of XLB_SNAT_WAYS. A flow lives in the set its hash
 * names, and takes a port of that set (min + set + k * sets), so that a
 * reply to the port finds the set from the port alone: a new flow writes
 * one element. Sized by the loader (datapath.conntrackSize flows, at most
 * one set per port of the range). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_SNAT_SETS_MAX);
	__type(key, __u32);
	__type(value, struct xlb_snat_set);
	XLB_PIN_BY_NAME;
} xlb_snat_sets SEC(".maps");

/* Remote backends' next hops, by backend ID (struct xlb_next_hop): what a
 * new flow to the backend is sent to without a FIB lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_BACKENDS_MAX);
	__type(key, __u32);
	__type(value, struct xlb_next_hop);
	XLB_PIN_BY_NAME;
} xlb_backend_nh SEC(".maps");

/* Local backend -> the frontends from outside that send flows to it
 * (xlb_types.h, struct xlb_reply_frontends): how tc egress finds the
 * conntrack entry of a reply from a local backend without any state
 * written for it. Written by the control plane. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_BACKENDS_MAX);
	__type(key, struct xlb_backend_key);
	__type(value, struct xlb_reply_frontends);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	XLB_PIN_BY_NAME;
} xlb_reply_frontends SEC(".maps");

/* Replies of local flows whose xlb_replies set was full (rare): the second
 * write such a flow costs. Keyed by the reply's 5-tuple. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_RNAT_MAX);
	__type(key, struct xlb_flow_key);
	__type(value, struct xlb_reply_slot);
	XLB_PIN_BY_NAME;
} xlb_rnat SEC(".maps");

/* The next-hop generation: bumped by the agent whenever a neighbour, route
 * or link of this node changes; a conntrack entry's cached next hop is used
 * only while it was cached in the current generation (0: never). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	XLB_PIN_BY_NAME;
} xlb_nh_gen SEC(".maps");

/* Flow events for the agent (xlb_events.h). Not pinned: a new agent reads
 * the ring of the programs it loads, and events of the old ones are not
 * worth keeping. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, XLB_EVENTS_RING_BYTES);
} xlb_events SEC(".maps");

/* The events' rate limit per CPU (xlb_events.h). Not pinned, as xlb_events. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_event_limit);
} xlb_event_limit SEC(".maps");

/* New flows placed in the current tick, per CPU, for the SYN-flood guard
 * (xlb_flood_limit). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_flood_state);
	XLB_PIN_BY_NAME;
} xlb_flood SEC(".maps");

/* (client, service) -> the backend of its new flows, for sessionAffinity:
 * ClientIP (kube-proxy's `recent` match, Cilium's affinity map). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_AFFINITY_MAX);
	__type(key, struct xlb_affinity_key);
	__type(value, struct xlb_affinity_entry);
	XLB_PIN_BY_NAME;
} xlb_affinity SEC(".maps");

/* (socket cookie, backend) -> the service address the socket asked for:
 * written by the socket hooks when they translate a connect() or sendmsg(),
 * read back by getpeername() and recvmsg() (xlb_sock.bpf.c). An entry
 * outlives its socket until the LRU reclaims it; cookies are never reused. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_SOCK_RNAT_MAX);
	__type(key, struct xlb_sock_rnat_key);
	__type(value, struct xlb_sock_rnat_entry);
	XLB_PIN_BY_NAME;
} xlb_sock_rnat SEC(".maps");

/* (network namespace, service) -> the backend of its new connections, for
 * sessionAffinity: ClientIP at the socket hooks. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_SOCK_AFFINITY_MAX);
	__type(key, struct xlb_sock_affinity_key);
	__type(value, struct xlb_affinity_entry);
	XLB_PIN_BY_NAME;
} xlb_sock_affinity SEC(".maps");

/* (service, client CIDR) -> allowed, for loadBalancerSourceRanges. LPM tries
 * must not be preallocated. The value is unused (presence allows). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, XLB_SOURCE_RANGES_MAX);
	__type(key, struct xlb_source_range_key);
	__type(value, __u32);
	XLB_PIN_BY_NAME;
} xlb_source_ranges SEC(".maps");

/* Service ID -> packets and bytes, per CPU so that counting needs no atomics. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_SERVICES_MAX);
	__type(key, __u32);
	__type(value, struct xlb_service_stats);
	XLB_PIN_BY_NAME;
} xlb_service_stats SEC(".maps");

/* enum xlb_drop_reason -> dropped packets, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_DROP_REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
	XLB_PIN_BY_NAME;
} xlb_drops SEC(".maps");

/* Layout fingerprint -> the layout's description (NUL-terminated JSON:
 * type, flags, key and value fields): how a restarted agent reads a map that
 * an older agent laid out differently (docs/datapath.md, "Restarts and
 * upgrades"). Every other map is pinned as <name>_v<fingerprint>; this one is
 * pinned as xlb_layouts, and its own layout never changes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u8[XLB_LAYOUT_DESC_LEN]);
	XLB_PIN_BY_NAME;
} xlb_layouts SEC(".maps");

/* Owned VIPs times announcing interfaces (and VLANs); 16384 leaves room for
 * 4096 layer 2 VIPs on four interfaces each. */
#define XLB_ARP_VIPS_MAX 16384

/* (VIP, ingress ifindex, VLAN) -> MAC: where this node answers ARP for a VIP
 * (xlb_arp.h). Written only by src/l2 when ownership changes, so no
 * preallocation. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, XLB_ARP_VIPS_MAX);
	__type(key, struct xlb_arp_key);
	__type(value, struct xlb_arp_answer);
	XLB_PIN_BY_NAME;
} xlb_arp_vips SEC(".maps");

#endif /* XLB_MAPS_H */
