/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_clock.h: the clock of conntrack and reverse NAT lifetimes.
 *
 * Time is jiffies shifted right by `xlb_tick_shift`, a tick of about one
 * second whatever the kernel's HZ (the loader picks the shift from HZ:
 * src/datapath/clock.ts). bpf_jiffies64() is inlined by the verifier into a
 * load of `jiffies`; bpf_ktime_get_coarse_ns() is a helper call that cost
 * ~14 ns a packet here and bpf_ktime_get_ns() ~32 ns, more than a third of
 * the established path.
 */
#ifndef XLB_CLOCK_H
#define XLB_CLOCK_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

/* log2 of the jiffies in a tick, set by the loader (both objects: the tc
 * program stamps replies too). 8 is right for HZ=250. */
const volatile __u32 xlb_tick_shift = 8;

/* Now, in ticks: the unit of the `seen` fields. */
static __always_inline __u32 xlb_now(void)
{
	return bpf_jiffies64() >> xlb_tick_shift;
}

/* True when `seen` lies more than `lifetime` ticks before `now`. Signed, so
 * that a `seen` written a moment later by another CPU counts as fresh. */
static __always_inline int xlb_silent_for(__u32 now, __u32 seen, __u32 lifetime)
{
	return (__s32)(now - seen) > (__s32)lifetime;
}

#endif /* XLB_CLOCK_H */
