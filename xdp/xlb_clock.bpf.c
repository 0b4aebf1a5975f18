// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The kernel's clock for user space, which has no other way to read
 * jiffies. Run with BPF_PROG_TEST_RUN (never attached), each program returns
 * its reading as the verdict:
 *   xlb_clock_jiffies  jiffies modulo 2^32: src/datapath/clock.ts measures HZ
 *                      from two readings when the kernel's configuration
 *                      cannot be read;
 *   xlb_clock_now      xlb_now() of xlb_clock.h with the loader's
 *                      xlb_tick_shift: the datapath's ticks, the unit of the
 *                      `seen` fields (tests, conntrack ages).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "xlb_clock.h"

SEC("xdp")
int xlb_clock_jiffies(struct xdp_md *ctx)
{
	return (__u32)bpf_jiffies64();
}

SEC("xdp")
int xlb_clock_now(struct xdp_md *ctx)
{
	return xlb_now();
}

char _license[] SEC("license") = "Dual BSD/GPL";
