/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_types.h: every key, value, flag and drop reason shared between the
 * datapath and the control plane. This header is the single source of truth:
 * scripts/gen-layouts.ts reads the compiled object's BTF and writes
 * src/datapath/layouts.generated.ts, and the loader checks the sizes libbpf
 * reports against it before anything is attached.
 *
 * Rules (so that the BTF, the C and the TypeScript agree byte for byte):
 *   - no bitfields, no unions in map values, explicit padding fields;
 *   - __be16/__be32 for anything in network byte order, host order otherwise;
 *   - flags and reasons are C enums (BTF keeps their names and values).
 */
#ifndef XLB_TYPES_H
#define XLB_TYPES_H

#include <linux/types.h>

/* A service frontend: (VIP or node IP, L4 port, IP protocol).
 * Key of the xlb_frontends hash map. 8 bytes. */
struct xlb_frontend_key {
	__be32 addr;   /* VIP, ExternalIP or node IP (NodePort) */
	__be16 port;   /* frontend port */
	__u8 proto;    /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

/* What a frontend resolves to. Value of xlb_frontends. 16 bytes.
 *
 * A service port has up to two endpoint sets, as kube-proxy has (pkg/proxy/
 * topology.go): the cluster set and the local set, each with its own service
 * ID (its Maglev table, affinity and counters). Which one new flows to a
 * frontend use depends on where they come from: traffic from outside the
 * cluster (XDP) follows externalTrafficPolicy; traffic from pods and the
 * node itself (the socket hooks, tc on pod interfaces) follows
 * internalTrafficPolicy for a ClusterIP and takes the cluster set for every
 * other frontend (src/services/rules.ts). */
struct xlb_service {
	__u32 id;                /* service ID for traffic from outside; 0: not served to it (a ClusterIP) */
	__u32 flags;             /* enum xlb_service_flags */
	__u32 affinity_timeout;  /* seconds a client keeps its backend (XLB_SVC_F_AFFINITY) */
	__u32 internal_id;       /* service ID for traffic from inside the cluster; 0: not served to it */
};

/* A backend (an endpoint: pod IP and target port). Value of the xlb_backends
 * array, indexed by backend ID. An all-zero entry means "no such backend":
 * backend ID 0 is never allocated. 12 bytes. */
struct xlb_backend {
	__be32 addr;   /* backend IP */
	__be16 port;   /* backend (target) port */
	__u8 proto;    /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 flags;    /* enum xlb_backend_flags */
	__u32 service_id; /* the service port it belongs to (its cluster set's ID, else its
	                   * local set's): how a restarted agent finds its backend IDs
	                   * again; the datapath never reads it */
};

/* Fixed sizes and limits, as enum constants so that BTF carries them. */
enum xlb_limits {
	/* A Maglev lookup table is M + 1 consecutive slots of one slab
	 * (xlb_maglev_slabs): slot 0 the header, the table size M, then the M
	 * backend IDs. xlb_maglev holds each service's table descriptor, slab <<
	 * XLB_MAGLEV_SLAB_SHIFT | first slot; 0 means no table (slab 0 never
	 * hands out slot 0). */
	XLB_MAGLEV_HEADER_SLOTS = 1,
	XLB_MAGLEV_SLAB_SHIFT = 20,
	XLB_MAGLEV_SLAB_SLOTS = 1 << 20,
	/* Slots per slab array entry: a 64-byte value, so that the slab's
	 * memory mapping holds the slots back to back (an array's elements are
	 * 8-byte aligned, a 4-byte value would leave a gap after each). */
	XLB_MAGLEV_ENTRY_SLOTS = 16,
	/* Slabs: the descriptor's remaining 12 bits (4096 x 4 MiB). */
	XLB_MAGLEV_SLABS_MAX = 4096,
	/* Bytes of a map layout's description in xlb_layouts (NUL-terminated). */
	XLB_LAYOUT_DESC_LEN = 1024,
	/* Largest Maglev table (a prime); see src/maglev/primes.ts. */
	XLB_MAGLEV_MAX_M = 131071,
	/* Added to the protocol number to seed the flow hash; the same on every
	 * node so that ECMP-split flows pick the same backend everywhere. */
	XLB_FLOW_HASH_SEED = 0x786c62, /* "xlb" */
	/* Sets a new SNATed flow tries for a free port when every port of its
	 * own set is held towards its backend (xlb_snat.h): in order when there
	 * are no more sets than this (a small range is searched whole), else in
	 * a pseudo-random order drawn from the flow hash. At 90 % of a backend's
	 * ports held, all 256 are held with probability 0.9^256, about 2e-12.
	 * Cilium's SNAT_COLLISION_RETRIES is 32 (128 where the verifier allows
	 * 1M instructions). */
	XLB_SNAT_RETRIES = 256,
	/* Ways of a set of xlb_replies. */
	XLB_REPLY_WAYS = 4,
	/* Ways of a set of xlb_snat_sets: one byte of tags each fill a cache
	 * line with the forward and reply tags. */
	XLB_SNAT_WAYS = 32,
	/* Ports of one set of xlb_snat_sets a flow may take: the set's ports are
	 * min + set + k * sets; at most this many k (a range more than this many
	 * times the sets leaves its top unused). */
	XLB_SNAT_LANES = 16,
	/* Default conntrack lifetimes in seconds (the configuration's defaults;
	 * the loader sets the xlb_ct_timeout_* knobs in ticks): how long a flow
	 * may stay silent before its entries (and SNAT port) may be reused.
	 * Cilium's defaults (bpf-ct-timeout-regular-tcp, -tcp-syn, -tcp-fin,
	 * -any). */
	XLB_CT_TIMEOUT_TCP = 21600,
	XLB_CT_TIMEOUT_TCP_SYN = 60,
	XLB_CT_TIMEOUT_TCP_FIN = 10,
	XLB_CT_TIMEOUT_ANY = 60,
	/* A SNAT port whose flow saw a FIN or RST and has been silent this many
	 * seconds (xlb_snat_closed_reuse, in ticks) is taken before its FIN
	 * lifetime is up when every port a new flow could have is held: a new
	 * flow is worth more than the retransmissions a closed one may still
	 * see. */
	XLB_SNAT_CLOSED_REUSE = 2,
	/* Default SNAT port range for flows to remote backends, host order
	 * (datapath.snatPorts' default). It sits above Linux's default
	 * ephemeral range (32768..60999, net.ipv4.ip_local_port_range) so that
	 * the node's own connections never collide with translated ones. */
	XLB_SNAT_PORT_MIN_DEFAULT = 61000,
	XLB_SNAT_PORT_MAX_DEFAULT = 65535,
};

/* An IPv4 5-tuple as it appears in a packet. Key of the conntrack map
 * (original direction: client -> frontend) and of the reverse NAT map
 * (reply direction: backend -> client or node). 16 bytes. */
struct xlb_flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* Conntrack entry of a flow: which backend it keeps, its TCP state and when
 * the client last sent (docs/datapath.md, "Conntrack lifetimes"), and for a
 * flow this node forwards, its next hop as bpf_fib_lookup last gave it, used
 * while the next-hop generation (xlb_nh_gen) is unchanged. Value of
 * xlb_conntrack. 52 bytes. */
struct xlb_ct_entry {
	__u32 backend_id;     /* ID at the time of the pick */
	__be32 backend_addr;  /* copy, so that a reused ID is noticed */
	__be16 backend_port;  /* copy, as above */
	__be16 snat_port;     /* source port on this node when SNATed, else 0 */
	__u32 service_id;
	__u32 flags;          /* enum xlb_ct_flags */
	__u32 seen;           /* last packet from the client, ticks of ~1 s (xlb_now) */
	__u32 reply_seen;     /* last reply found through this entry (xlb_reply_frontends); 0: none */
	__u32 nh_gen;         /* xlb_nh_gen when the next hop was cached; 0: none */
	__u32 nh_ifindex;     /* egress interface */
	__u8 nh_dmac[6];      /* next hop's MAC */
	__u8 nh_smac[6];      /* egress interface's MAC */
	__u16 nh_mtu;         /* egress MTU (bpf_fib_lookup's mtu_result) */
	__u8 pad[2];
};

/* Frontends an xlb_reply_frontends entry lists. */
#define XLB_REPLY_FRONTENDS 4

/* Key of xlb_reply_frontends: a local backend's address, port and
 * protocol. 8 bytes. */
struct xlb_backend_key {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

/* Value of xlb_reply_frontends: frontends from outside whose services
 * send flows to the backend of the key (the first XLB_REPLY_FRONTENDS of
 * them, written by the control plane). A reply from that backend finds its
 * flow's conntrack entry by trying each: no state is written for its
 * replies when the flow is placed. 28 bytes. */
struct xlb_reply_frontends {
	__be32 addr[XLB_REPLY_FRONTENDS];
	__be16 port[XLB_REPLY_FRONTENDS];
	__u32 count;
};

/* How to restore a reply, and the reply's own 5-tuple (reply_*: backend ->
 * client, or backend -> hairpin address): an element of xlb_replies (local
 * and pod flows, 4-way sets) and the value of xlb_rnat (local flows whose set
 * was full). SNATed flows restore their replies from their own element of
 * xlb_snat_sets. 40 bytes. */
struct xlb_reply_slot {
	__be32 reply_saddr;
	__be32 reply_daddr;
	__be16 reply_sport;
	__be16 reply_dport;
	__u8 reply_proto;
	__u8 pad[3];
	__be32 vip;           /* becomes the reply's source address */
	__be32 client_addr;   /* becomes the reply's destination address */
	__be16 vip_port;      /* becomes the reply's source port */
	__be16 client_port;   /* becomes the reply's destination port */
	__u32 service_id;
	__u32 flags;          /* enum xlb_ct_flags: SNAT, HAIRPIN, INTERNAL, and CLOSING from the backend's side */
	__u32 seen;           /* last reply (created: the flow's first packet), ticks (xlb_now); 0: empty */
};

/* A SNATed flow in its set of xlb_snat_sets (xlb_snat.h): the flow as it
 * arrived (client -> frontend) and its conntrack state, whose snat_port is
 * the port it holds on the node. The element of a flow that holds a port of
 * another set than its own (XLB_CT_F_POINTER) lives in that port's set and
 * only points back to it: its flow key and its backend, port and reply
 * time. 68 bytes. */
struct xlb_snat_flow {
	struct xlb_flow_key flow;
	struct xlb_ct_entry ct;
};

/* One set of xlb_snat_sets: XLB_SNAT_WAYS SNATed flows, with one byte of
 * each flow's hash (tag: the flow's, 0 when the way is empty; rtag: its
 * reply's) so that a lookup reads the tags and only the way that matches,
 * and the CLOCK state of the set's replacement (ref: a bit per way, set
 * when its flow sends; hand: the way looked at next). 2248 bytes. */
struct xlb_snat_set {
	__u8 tag[XLB_SNAT_WAYS];
	__u8 rtag[XLB_SNAT_WAYS];
	__u32 ref;
	__u32 hand;
	struct xlb_snat_flow way[XLB_SNAT_WAYS];
};

/* A remote backend's next hop, as bpf_fib_lookup gave it for the first new
 * flow to it after the last change of neighbours, routes or links (value of
 * xlb_backend_nh, indexed by backend ID): new flows to the backend take it
 * without a FIB lookup while the next-hop generation is unchanged. 28 bytes. */
struct xlb_next_hop {
	__u32 gen;            /* xlb_nh_gen when cached; 0: none */
	__u32 ifindex;        /* egress interface */
	__u32 iif;            /* ingress interface of the packet that was looked up */
	__u8 dmac[6];
	__u8 smac[6];
	__u16 mtu;            /* the largest packet known to fit */
	__u8 pad[2];
};

/* The SYN-flood guard's count of new flows, per CPU (value of xlb_flood):
 * placed in tick `tick`, and placed without conntrack state since the
 * agent loaded the map, because more than xlb_flood_limit came in one tick
 * (Katran's is_under_flood, max_conn_rate). 16 bytes. */
struct xlb_flood_state {
	__u32 tick;
	__u32 placed;
	__u64 stateless;
};

/* A socket's peer as socket-level load balancing made it: the backend a
 * socket was sent to (connect, or sendto on an unconnected UDP socket).
 * Key of xlb_sock_rnat. 16 bytes. */
struct xlb_sock_rnat_key {
	__u64 cookie;          /* socket cookie (bpf_get_socket_cookie), unique while the socket lives */
	__be32 backend_addr;
	__be16 backend_port;
	__u8 proto;            /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

/* The service address the application asked for, which getpeername() and
 * recvfrom() report instead of the backend's. Value of xlb_sock_rnat.
 * 12 bytes. */
struct xlb_sock_rnat_entry {
	__be32 addr;           /* frontend address as the application wrote it */
	__be16 port;           /* frontend port */
	__u8 pad[2];
	__u32 service_id;      /* the frontend's internal_id when translated: a changed frontend is not restored */
};

/* A client of a service with sessionAffinity: ClientIP at the socket
 * hooks, where the client's address is not known yet: the client is its
 * network namespace (a pod has its own; Cilium does the same). Key of
 * xlb_sock_affinity. 16 bytes. */
struct xlb_sock_affinity_key {
	__u64 netns_cookie;    /* bpf_get_netns_cookie of the socket */
	__u32 service_id;
	__u32 pad;
};

/* A client of a service with sessionAffinity: ClientIP. Key of
 * xlb_affinity. 8 bytes. */
struct xlb_affinity_key {
	__be32 client_addr;
	__u32 service_id;
};

/* The backend a client's new flows go to, and when it was last chosen
 * (bpf_ktime_get_ns, CLOCK_MONOTONIC). Value of xlb_affinity. 24 bytes. */
struct xlb_affinity_entry {
	__u64 last_ns;
	__u32 backend_id;
	__be32 backend_addr;  /* copy, so that a reused ID is noticed */
	__be16 backend_port;  /* copy, as above */
	__u8 pad[6];
};

/* loadBalancerSourceRanges: key of the xlb_source_ranges LPM trie. The
 * service ID is matched whole (prefixlen = 32 + the CIDR's length). 12 bytes. */
struct xlb_source_range_key {
	__u32 prefixlen;
	__u32 service_id;
	__be32 addr;
};

/* Per-CPU packet and byte counters of one service (xlb_service_stats). */
struct xlb_service_stats {
	__u64 packets;
	__u64 bytes;
};

/* Where this node answers ARP for a VIP (layer 2 mode): the VIP, the
 * interface the request arrives on, and its VLAN. Key of xlb_arp_vips.
 * 12 bytes. */
struct xlb_arp_key {
	__be32 vip;
	__u32 ifindex; /* XDP ingress ifindex (the parent of a VLAN sub-interface) */
	__u16 vlan;    /* VLAN ID of the request's 802.1Q/802.1ad tag, 0 untagged */
	__u8 pad[2];
};

/* The MAC to answer with. Value of xlb_arp_vips. 8 bytes. */
struct xlb_arp_answer {
	__u8 mac[6];   /* the announcing interface's MAC */
	__u8 pad[2];
};

enum xlb_service_flags {
	XLB_SVC_F_NODEPORT = 1 << 0,   /* frontend is a node IP and nodePort */
	XLB_SVC_F_EXTERNAL = 1 << 1,   /* LoadBalancer VIP or ExternalIP */
	XLB_SVC_F_AFFINITY = 1 << 2,   /* sessionAffinity ClientIP: see xlb_affinity */
	XLB_SVC_F_SOURCE_RANGES = 1 << 3, /* new flows only from xlb_source_ranges */
	XLB_SVC_F_EXT_LOCAL = 1 << 4,  /* `id` is the local set's (externalTrafficPolicy Local) */
	XLB_SVC_F_INT_LOCAL = 1 << 5,  /* `internal_id` is the local set's (internalTrafficPolicy Local, ClusterIP) */
	XLB_SVC_F_REMOTE = 1 << 6,     /* a backend is on another node: its flows from outside are SNATed
	                                * (xlb_snat_sets, looked in first); without it, only xlb_conntrack */
};

enum xlb_backend_flags {
	XLB_BE_F_LOCAL = 1 << 0,       /* runs on this node: DNAT and pass */
	XLB_BE_F_DRAINING = 1 << 1,    /* in no cluster set: keeps its flows, takes no new ones there
	                                * (terminating, not ready, or outside this node's topology) */
	XLB_BE_F_NOT_LOCAL_SET = 1 << 2, /* in no local set: takes no new flows there */
};

enum xlb_ct_flags {
	XLB_CT_F_SNAT = 1 << 0,        /* remote backend: SNATed to the node IP */
	XLB_CT_F_ESTABLISHED = 1 << 1, /* TCP: the client sent more than SYNs */
	XLB_CT_F_CLOSING = 1 << 2,     /* TCP: a FIN or RST went by (conntrack: the
	                                * client's; reverse NAT: the backend's) */
	XLB_CT_F_INTERNAL = 1 << 3,    /* from a pod (tc on its interface): DNAT only, to a
	                                * backend on any node (pod addresses are routable) */
	XLB_CT_F_HAIRPIN = 1 << 4,     /* from a pod to a service it backs itself (tc): its
	                                * source becomes the hairpin address, so that the
	                                * reply leaves the pod and can be restored */
	XLB_CT_F_REPLIED = 1 << 5,     /* reply elements only: the backend has answered */
	XLB_CT_F_POINTER = 1 << 6,     /* xlb_snat_sets: points to the flow that holds this
	                                * set's port from another set (xlb_snat.h) */
};

/* Why the datapath dropped a packet. Index of the xlb_drops per-CPU array.
 * Names reach TypeScript through BTF (layouts.generated.ts). */
enum xlb_drop_reason {
	XLB_DROP_TRUNCATED = 0,        /* L4 header of a frontend packet cut short */
	XLB_DROP_NO_BACKEND = 1,       /* service has no Maglev table or it is empty */
	XLB_DROP_SNAT_EXHAUSTED = 2,   /* no free SNAT port after the bounded retries */
	XLB_DROP_FIB_LOOKUP = 3,       /* no route or neighbour towards the backend/client */
	XLB_DROP_FRAG_NEEDED = 4,      /* packet larger than the egress MTU (DF set) */
	XLB_DROP_CT_INSERT = 5,        /* conntrack or reverse NAT insert failed */
	XLB_DROP_REDIRECT = 6,         /* bpf_redirect failed */
	XLB_DROP_SOURCE_RANGE = 7,     /* new flow from outside the service's loadBalancerSourceRanges */
	XLB_DROP_SOCK_REFUSED = 8,     /* connect() or sendmsg() to a service without a usable
	                                * endpoint, refused with ECONNREFUSED (socket hooks) */
	XLB_DROP_BAD_CHECKSUM = 9,     /* IPv4 header checksum wrong on a packet that would have
	                                * created state (a new flow, a reply to a SNAT port) */
	XLB_DROP_REASON_MAX = 10,
};

/* What a flow event reports (struct xlb_flow_event). */
enum xlb_event_type {
	XLB_EVENT_NEW_FLOW = 1,        /* a new flow was placed on a backend */
	XLB_EVENT_DROP = 2,            /* a packet was dropped (its reason: enum xlb_drop_reason) */
	XLB_EVENT_FLOW_END = 3,        /* the client closed a flow (its first FIN or RST) */
};

/* Where the datapath saw the packet of an event (Hubble's observation point). */
enum xlb_event_point {
	XLB_POINT_XDP = 1,             /* XDP on an external interface */
	XLB_POINT_TC_EGRESS = 2,       /* tc egress of an external interface */
	XLB_POINT_TC_POD = 3,          /* tc on a pod's interface */
	XLB_POINT_SOCK = 4,            /* a cgroup socket hook */
};

/* How a new flow's backend was chosen (struct xlb_flow_event). */
enum xlb_event_selection {
	XLB_SELECT_MAGLEV = 0,         /* the Maglev lookup table's slot hash % M */
	XLB_SELECT_AFFINITY = 1,       /* ClientIP affinity: the client's previous backend */
};

/* One flow event: a new flow placed, or a packet dropped, with the packet's
 * 5-tuple and what the datapath made of it. Record of the xlb_events ring
 * buffer (docs/datapath.md, "Flow events"). 48 bytes. */
struct xlb_flow_event {
	__u64 ts_ns;          /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;           /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 type;            /* enum xlb_event_type */
	__u8 reason;          /* enum xlb_drop_reason (XLB_EVENT_DROP) */
	__u8 tcp_flags;
	__u32 service_id;     /* the service the packet was for; 0: none known */
	__be32 backend_addr;  /* the backend chosen (XLB_EVENT_NEW_FLOW), else 0 */
	__be16 backend_port;
	__be16 snat_port;     /* the node's source port towards a remote backend; 0: none */
	__u8 point;           /* enum xlb_event_point */
	__u8 selection;       /* enum xlb_event_selection (XLB_EVENT_NEW_FLOW) */
	__u8 pad[2];
	__u32 hash;           /* the flow hash a new flow was placed by: its Maglev slot is hash % M */
	__u32 pad2;
};

/* Per-CPU state of the events' rate limit (xlb_events_per_tick): events
 * sent in the current tick, and events not sent (over the rate, or the ring
 * buffer full). Value of xlb_event_limit. 16 bytes. */
struct xlb_event_limit {
	__u32 tick;
	__u32 sent;
	__u64 suppressed;
};


#endif /* XLB_TYPES_H */
