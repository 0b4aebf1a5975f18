// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xlb_bench_restore: benchmarks only (bench/datapath). BPF_PROG_TEST_RUN
 * with `repeat` hands every iteration the buffer the previous iteration
 * rewrote (DNAT, SNAT, MAC swap), so a plain repeated run of
 * xlb_xdp_ingress measures the path of the *rewritten* packet after the
 * first iteration. These wrappers put the original frame back at the start
 * of each iteration and then tail-call the program in slot 0 of
 * xlb_bench_target, so every iteration takes the path its case names:
 *
 *   xlb_bench_ingress        restore, tail call
 *   xlb_bench_ingress_syn    restore, give the frame a source (address,
 *                            port) never used before, tail call: every SYN
 *                            misses conntrack and creates a flow
 *   xlb_bench_pass           XDP_PASS: the target of the wrappers' own-cost
 *                            runs
 *
 * The benchmark puts the real xlb_xdp_ingress of xdp/build/xlb_xdp.bpf.o
 * (the object the agent loads, its maps filled through BpfLBMaps) in slot 0
 * to measure, and xlb_bench_pass to measure the wrapper alone (restore,
 * source change and tail call), whose cost it subtracts.
 *
 * Why a tail call and not a BPF-to-BPF call: libbpf 1.1 (Debian 12)
 * refuses a call to a function that is itself an entry point ("bad call
 * relo against 'xlb_xdp_ingress' in section 'xdp'"), and a tail call
 * measures the very program the agent attaches.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xlb_csum.h"

/* Largest frame the benchmark restores: Ethernet + IPv4 + TCP with room
 * for options; the benchmark's frames are 54 bytes. */
#define XLB_BENCH_FRAME_MAX 128

/* The frame to restore, written by the benchmark before each run. */
struct xlb_bench_frame {
	__u32 len;   /* bytes of `bytes` that make the frame, 1..XLB_BENCH_FRAME_MAX */
	__u32 seq;   /* SYN mode: iterations so far; picks the next new source */
	__u8 bytes[XLB_BENCH_FRAME_MAX];
};

/* Not pinned: private to one loaded benchmark object. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_bench_frame);
} xlb_bench_frame SEC(".maps");

/* Slot 0: the program each wrapper hands the restored frame to. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} xlb_bench_target SEC(".maps");

/* Copy the original frame over the packet; NULL when no frame is set or
 * the packet is not that frame's length (the run then aborts). */
static __always_inline struct xlb_bench_frame *xlb_bench_restore(struct xdp_md *ctx)
{
	__u32 key = 0, len;
	struct xlb_bench_frame *frame = bpf_map_lookup_elem(&xlb_bench_frame, &key);

	if (!frame)
		return NULL;
	len = frame->len;
	if (len < 1 || len > XLB_BENCH_FRAME_MAX)
		return NULL;
	if (ctx->data_end - ctx->data != len)
		return NULL;
	if (bpf_xdp_store_bytes(ctx, 0, frame->bytes, len))
		return NULL;
	return frame;
}

/* Give the restored TCP/IPv4 frame (no VLAN tag) a source never used
 * before in this run: address = original + seq / 2^15, port = 32768 +
 * seq % 2^15, so 2^32 iterations get distinct 5-tuples. Checksums are
 * updated (RFC 1624) so that the frame stays valid. 0, or -1 when the frame
 * is not TCP/IPv4 without options. */
static __always_inline int xlb_bench_new_source(struct xdp_md *ctx, struct xlb_bench_frame *frame)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip + 1);
	__u32 seq = frame->seq++;
	__be32 saddr;
	__be16 sport;
	__u64 diff;

	if ((void *)(tcp + 1) > data_end || ip->protocol != IPPROTO_TCP || ip->ihl != 5)
		return -1;
	saddr = bpf_htonl(bpf_ntohl(ip->saddr) + (seq >> 15));
	sport = bpf_htons(0x8000 | (seq & 0x7fff));
	diff = xlb_csum_diff32(0, ip->saddr, saddr);
	ip->check = xlb_csum_updated(ip->check, diff);
	tcp->check = xlb_csum_updated(tcp->check, xlb_csum_diff16(diff, tcp->source, sport));
	ip->saddr = saddr;
	tcp->source = sport;
	return 0;
}

/* Hand the frame to slot 0 of xlb_bench_target; only an empty slot returns. */
static __always_inline int xlb_bench_call_target(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &xlb_bench_target, 0);
	return XDP_ABORTED;
}

SEC("xdp")
int xlb_bench_ingress(struct xdp_md *ctx)
{
	if (!xlb_bench_restore(ctx))
		return XDP_ABORTED;
	return xlb_bench_call_target(ctx);
}

SEC("xdp")
int xlb_bench_ingress_syn(struct xdp_md *ctx)
{
	struct xlb_bench_frame *frame = xlb_bench_restore(ctx);

	if (!frame || xlb_bench_new_source(ctx, frame))
		return XDP_ABORTED;
	return xlb_bench_call_target(ctx);
}

SEC("xdp")
int xlb_bench_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
