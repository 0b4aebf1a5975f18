// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Not a program: forces every shared type of xlb_types.h into BTF, so that
 * scripts/gen-layouts.ts can write the TypeScript layouts from the compiler's
 * own view of them (the approach Cilium takes to check its Go mirror, and
 * bpf2go takes to generate it).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "xlb_types.h"

#define XLB_BTF_KEEP(type, name) type name SEC(".xlb_btf") __attribute__((used))

XLB_BTF_KEEP(struct xlb_frontend_key, xlb_btf_frontend_key);
XLB_BTF_KEEP(struct xlb_service, xlb_btf_service);
XLB_BTF_KEEP(struct xlb_backend, xlb_btf_backend);
XLB_BTF_KEEP(struct xlb_flow_key, xlb_btf_flow_key);
XLB_BTF_KEEP(struct xlb_ct_entry, xlb_btf_ct_entry);
XLB_BTF_KEEP(struct xlb_reply_slot, xlb_btf_reply_slot);
XLB_BTF_KEEP(struct xlb_flood_state, xlb_btf_flood_state);
XLB_BTF_KEEP(struct xlb_snat_flow, xlb_btf_snat_flow);
XLB_BTF_KEEP(struct xlb_snat_set, xlb_btf_snat_set);
XLB_BTF_KEEP(struct xlb_next_hop, xlb_btf_next_hop);
XLB_BTF_KEEP(struct xlb_backend_key, xlb_btf_backend_key);
XLB_BTF_KEEP(struct xlb_reply_frontends, xlb_btf_reply_frontends);
XLB_BTF_KEEP(struct xlb_service_stats, xlb_btf_service_stats);
XLB_BTF_KEEP(struct xlb_affinity_key, xlb_btf_affinity_key);
XLB_BTF_KEEP(struct xlb_affinity_entry, xlb_btf_affinity_entry);
XLB_BTF_KEEP(struct xlb_sock_rnat_key, xlb_btf_sock_rnat_key);
XLB_BTF_KEEP(struct xlb_sock_rnat_entry, xlb_btf_sock_rnat_entry);
XLB_BTF_KEEP(struct xlb_sock_affinity_key, xlb_btf_sock_affinity_key);
XLB_BTF_KEEP(struct xlb_source_range_key, xlb_btf_source_range_key);
XLB_BTF_KEEP(struct xlb_arp_key, xlb_btf_arp_key);
XLB_BTF_KEEP(struct xlb_arp_answer, xlb_btf_arp_answer);
XLB_BTF_KEEP(enum xlb_service_flags, xlb_btf_service_flags);
XLB_BTF_KEEP(enum xlb_backend_flags, xlb_btf_backend_flags);
XLB_BTF_KEEP(enum xlb_ct_flags, xlb_btf_ct_flags);
XLB_BTF_KEEP(enum xlb_drop_reason, xlb_btf_drop_reason);
XLB_BTF_KEEP(enum xlb_limits, xlb_btf_limits);
XLB_BTF_KEEP(struct xlb_flow_event, xlb_btf_flow_event);
XLB_BTF_KEEP(struct xlb_event_limit, xlb_btf_event_limit);
XLB_BTF_KEEP(enum xlb_event_type, xlb_btf_event_type);
XLB_BTF_KEEP(enum xlb_event_point, xlb_btf_event_point);
XLB_BTF_KEEP(enum xlb_event_selection, xlb_btf_event_selection);

char _license[] SEC("license") = "Dual BSD/GPL";
