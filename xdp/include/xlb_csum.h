/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_csum.h: incremental Internet checksum updates (RFC 1624, eqn. 3:
 * HC' = ~(~HC + ~m + m')). Differences are accumulated in 64 bits and folded
 * once per checksum, so rewriting an address and a port costs a few ALU
 * instructions and no helper call.
 *
 * Words are summed as they sit in memory: the one's complement sum is
 * byte-order independent (RFC 1071, 2(B)), so no byte swapping is needed.
 */
#ifndef XLB_CSUM_H
#define XLB_CSUM_H

#include <linux/types.h>

/* UDP's stand-in for a computed checksum of zero (RFC 768): zero on the
 * wire means "no checksum". */
#define XLB_CSUM_MANGLED_0 ((__sum16)0xffff)

/* Fold a 64-bit one's complement accumulator to 16 bits (end-around carry). */
static __always_inline __u16 xlb_csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* The accumulated difference `diff` plus that of a 32-bit word going from
 * `from` to `to` (~m + m'). */
static __always_inline __u64 xlb_csum_diff32(__u64 diff, __u32 from, __u32 to)
{
	return diff + (__u32)~from + to;
}

/* The accumulated difference `diff` plus that of a 16-bit word going from
 * `from` to `to`. */
static __always_inline __u64 xlb_csum_diff16(__u64 diff, __u16 from, __u16 to)
{
	return diff + (__u16)~from + to;
}

/* The checksum `check` after the changes summed in `diff`. */
static __always_inline __sum16 xlb_csum_updated(__sum16 check, __u64 diff)
{
	return (__sum16)~xlb_csum_fold((__u16)~check + diff);
}

/* The UDP checksum `check` after `diff`: 0 (no checksum, RFC 768) stays 0,
 * and a result of 0 is sent as 0xffff. */
static __always_inline __sum16 xlb_udp_csum_updated(__sum16 check, __u64 diff)
{
	__sum16 updated;

	if (!check)
		return 0;
	updated = xlb_csum_updated(check, diff);
	return updated ? updated : XLB_CSUM_MANGLED_0;
}

#endif /* XLB_CSUM_H */
