// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket-level load balancing (docs/datapath.md, "Socket hooks"): programs
 * on cgroup v2 socket hooks, attached where the node's processes and its
 * pods live, that serve services reached from inside the cluster without
 * touching a packet, as Cilium's socket LB does. Why each hook: the kernel
 * commits "bpf: Hooks for sys_connect" and "bpf: Add get{peer,sock}name
 * attach types for sock_addr".
 *
 *   cgroup/connect4      a TCP or connected UDP socket to a frontend is
 *                        connected to a backend instead: the kernel routes
 *                        to the backend from the first packet; no NAT, no
 *                        conntrack entry.
 *   cgroup/sendmsg4      a datagram of an unconnected UDP socket (a DNS
 *                        client) to a frontend is sent to a backend.
 *   cgroup/recvmsg4      the source of a datagram from that backend is
 *                        written back to the frontend, so that a resolver
 *                        checking where its answer came from accepts it.
 *   cgroup/getpeername4  the application sees the service address it
 *                        connected to, not the backend.
 *
 * The frontend lookup and the Maglev pick are the datapath's own
 * (xlb_lb.h), with the frontend's internal service ID (xlb_types.h: pods
 * and the node take internalTrafficPolicy's set for a ClusterIP and the
 * cluster set for every other frontend). The flow hash is the socket's
 * cookie: one socket keeps one backend (a UDP socket's datagrams all go to
 * the backend its replies come from), and a pod's sockets spread over the
 * table. A service without a usable endpoint refuses at once with
 * ECONNREFUSED, as kube-proxy's REJECT does.
 *
 * Return values: 1 lets the call proceed (with the rewritten address), 0
 * rejects it with the errno set by bpf_set_retval (EPERM by default).
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xlb_types.h"
#include "xlb_consts.h"
#include "xlb_maps.h"
#include "xlb_jhash.h"
#include "xlb_stats.h"
#include "xlb_lb.h"
#include "xlb_clock.h"
#include "xlb_events.h"

#define XLB_SYS_REJECT 0
#define XLB_SYS_PROCEED 1
#define XLB_ECONNREFUSED 111

/* Run-time knobs, set by the loader. With `xlb_sock_host_only`, only
 * sockets of the network namespace with cookie `xlb_host_netns_cookie`
 * (the node's) are translated; pods are left to tc on their interfaces
 * (socketLB.hostNamespaceOnly, for service meshes that must see the
 * service address). */
const volatile __u32 xlb_sock_host_only = 0;
const volatile __u64 xlb_host_netns_cookie = 0;

/* The destination port of a sock_addr context (network order in the low
 * 16 bits of a 32-bit field). */
static __always_inline __be16 xlb_sock_dport(const struct bpf_sock_addr *ctx)
{
	volatile __u32 port = ctx->user_port;

	return (__be16)port;
}

/* The frontend key address for `addr`: any loopback address reaches the
 * node ports written for 127.0.0.1 (as with iptables' route_localnet, and
 * Cilium's socket LB). */
static __always_inline __be32 xlb_sock_frontend_addr(__be32 addr)
{
	if ((addr & bpf_htonl(0xff000000)) == bpf_htonl(0x7f000000))
		return bpf_htonl(0x7f000001);
	return addr;
}

/* Whether this socket is left alone (socketLB.hostNamespaceOnly and a
 * socket of another network namespace). */
static __always_inline bool xlb_sock_skip(struct bpf_sock_addr *ctx)
{
	return xlb_sock_host_only && bpf_get_netns_cookie(ctx) != xlb_host_netns_cookie;
}

/* The backend of a new connection of this socket to service `service_id`
 * (of frontend `svc`): under ClientIP affinity the one its network
 * namespace's last connection went to while it keeps coming back within
 * the timeout, else the socket cookie's Maglev slot. */
static __always_inline const struct xlb_backend *xlb_sock_select(struct bpf_sock_addr *ctx,
								 const struct xlb_service *svc, __u32 service_id,
								 __u64 cookie, __u32 *backend_id, __u32 *hash_out,
								 __u8 *selection)
{
	bool local_set = svc->flags & XLB_SVC_F_INT_LOCAL;
	__u32 hash = xlb_jhash_3words((__u32)cookie, (__u32)(cookie >> 32), 0, XLB_FLOW_HASH_SEED);
	struct xlb_sock_affinity_key key;
	struct xlb_affinity_entry entry = {};
	const struct xlb_backend *backend;
	__u64 now;
	__u32 id;

	*hash_out = hash;
	if (!(svc->flags & XLB_SVC_F_AFFINITY))
		return xlb_maglev_backend(service_id, hash, backend_id);
	__builtin_memset(&key, 0, sizeof(key));
	key.netns_cookie = bpf_get_netns_cookie(ctx);
	key.service_id = service_id;
	now = bpf_ktime_get_ns();
	id = xlb_affinity_pick(bpf_map_lookup_elem(&xlb_sock_affinity, &key), svc->affinity_timeout, now, local_set);
	if (id) {
		backend = bpf_map_lookup_elem(&xlb_backends, &id);
		if (backend && backend->addr) {
			*backend_id = id;
			*selection = XLB_SELECT_AFFINITY;
			return backend;
		}
	}
	backend = xlb_maglev_backend(service_id, hash, backend_id);
	if (!backend)
		return NULL;
	entry.last_ns = now;
	entry.backend_id = *backend_id;
	entry.backend_addr = backend->addr;
	entry.backend_port = backend->port;
	/* A failed write only loses affinity for the next connection. */
	bpf_map_update_elem(&xlb_sock_affinity, &key, &entry, BPF_ANY);
	return backend;
}

/* Remember that this socket's peer `backend` stands for frontend
 * addr:port (as the application wrote it), unless it already does: a UDP
 * socket sending query after query costs one lookup each, not an update. */
static __always_inline void xlb_sock_remember(__u64 cookie, const struct xlb_backend *backend, __u8 proto,
					      __be32 addr, __be16 port, __u32 service_id)
{
	struct xlb_sock_rnat_key key;
	struct xlb_sock_rnat_entry want = {
		.addr = addr,
		.port = port,
		.service_id = service_id,
	};
	struct xlb_sock_rnat_entry *have;

	__builtin_memset(&key, 0, sizeof(key));
	key.cookie = cookie;
	key.backend_addr = backend->addr;
	key.backend_port = backend->port;
	key.proto = proto;
	have = bpf_map_lookup_elem(&xlb_sock_rnat, &key);
	if (have && have->addr == addr && have->port == port && have->service_id == service_id)
		return;
	bpf_map_update_elem(&xlb_sock_rnat, &key, &want, BPF_ANY);
}

/* A flow event of the socket hooks: the socket's source as far as it is
 * known (a datagram's source address when the application gave one; a
 * connect() has none yet), the frontend it addressed. */
static __always_inline void xlb_sock_event(struct bpf_sock_addr *ctx, bool sendmsg, __u8 type, __u8 reason,
					   __u32 service_id, const struct xlb_backend *backend, __u32 hash,
					   __u8 selection)
{
	struct xlb_flow_key flow;

	__builtin_memset(&flow, 0, sizeof(flow));
	flow.saddr = sendmsg ? ctx->msg_src_ip4 : 0;
	flow.daddr = ctx->user_ip4;
	flow.dport = xlb_sock_dport(ctx);
	flow.proto = ctx->protocol;
	xlb_event_flow(&flow, 0, type, reason, service_id, backend ? backend->addr : 0, backend ? backend->port : 0, 0,
		       XLB_POINT_SOCK, hash, selection);
}

/* connect4 and sendmsg4: send the socket to a backend when it addresses a
 * frontend served inside the cluster. A connect() is a new flow and sends
 * an event; a datagram of sendmsg() sends one only when it is refused (an
 * unconnected UDP socket's datagrams would otherwise send one each). */
static __always_inline int xlb_sock_forward(struct bpf_sock_addr *ctx, bool sendmsg)
{
	__u8 proto = ctx->protocol;
	__be32 addr = ctx->user_ip4;
	__be16 port = xlb_sock_dport(ctx);
	const struct xlb_service *svc;
	const struct xlb_backend *backend;
	__u32 backend_id = 0, hash = 0;
	__u8 selection = XLB_SELECT_MAGLEV;
	__u32 service_id;
	__u64 cookie;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return XLB_SYS_PROCEED;
	svc = xlb_lookup_frontend(xlb_sock_frontend_addr(addr), port, proto);
	if (!svc || !svc->internal_id || xlb_sock_skip(ctx))
		return XLB_SYS_PROCEED;
	service_id = svc->internal_id;
	cookie = bpf_get_socket_cookie(ctx);
	backend = xlb_sock_select(ctx, svc, service_id, cookie, &backend_id, &hash, &selection);
	if (!backend) {
		/* kube-proxy REJECTs a service without endpoints: refuse now
		 * rather than let the SYN or datagram go nowhere. */
		xlb_sock_event(ctx, sendmsg, XLB_EVENT_DROP, XLB_DROP_SOCK_REFUSED, service_id, NULL, 0, XLB_SELECT_MAGLEV);
		xlb_count_drop(XLB_DROP_SOCK_REFUSED);
		bpf_set_retval(-XLB_ECONNREFUSED);
		return XLB_SYS_REJECT;
	}
	xlb_sock_remember(cookie, backend, proto, addr, port, service_id);
	if (!sendmsg)
		xlb_sock_event(ctx, false, XLB_EVENT_NEW_FLOW, 0, service_id, backend, hash, selection);
	ctx->user_ip4 = backend->addr;
	ctx->user_port = (__u32)backend->port;
	return XLB_SYS_PROCEED;
}

/* recvmsg4 and getpeername4: a peer that is a backend this socket was sent
 * to reads as the frontend the application addressed, while that frontend
 * still leads to the same service. */
static __always_inline int xlb_sock_restore(struct bpf_sock_addr *ctx)
{
	__u8 proto = ctx->protocol;
	struct xlb_sock_rnat_key key;
	struct xlb_sock_rnat_entry *entry;
	const struct xlb_service *svc;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return XLB_SYS_PROCEED;
	__builtin_memset(&key, 0, sizeof(key));
	key.cookie = bpf_get_socket_cookie(ctx);
	key.backend_addr = ctx->user_ip4;
	key.backend_port = xlb_sock_dport(ctx);
	key.proto = proto;
	entry = bpf_map_lookup_elem(&xlb_sock_rnat, &key);
	if (!entry)
		return XLB_SYS_PROCEED;
	svc = xlb_lookup_frontend(xlb_sock_frontend_addr(entry->addr), entry->port, proto);
	if (!svc || svc->internal_id != entry->service_id)
		return XLB_SYS_PROCEED;
	ctx->user_ip4 = entry->addr;
	ctx->user_port = (__u32)entry->port;
	return XLB_SYS_PROCEED;
}

SEC("cgroup/connect4")
int xlb_sock_connect4(struct bpf_sock_addr *ctx)
{
	return xlb_sock_forward(ctx, false);
}

SEC("cgroup/sendmsg4")
int xlb_sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	return xlb_sock_forward(ctx, true);
}

SEC("cgroup/recvmsg4")
int xlb_sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	return xlb_sock_restore(ctx);
}

SEC("cgroup/getpeername4")
int xlb_sock_getpeername4(struct bpf_sock_addr *ctx)
{
	return xlb_sock_restore(ctx);
}

char _license[] SEC("license") = "Dual BSD/GPL";
