/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_jhash.h: the Linux kernel's jhash_3words (include/linux/jhash.h, Bob
 * Jenkins' lookup3 final mix), bit for bit, so that src/maglev/flowhash.ts
 * can predict the datapath's choice.
 */
#ifndef XLB_JHASH_H
#define XLB_JHASH_H

#include <linux/types.h>

/* lookup3's arbitrary start value, as in the kernel. */
#define XLB_JHASH_INITVAL 0xdeadbeef

static __always_inline __u32 xlb_rol32(__u32 word, unsigned int shift)
{
	return (word << shift) | (word >> (32 - shift));
}

/* jhash_3words(a, b, c, initval) of the kernel: lookup3's final mix of three
 * words seeded with initval + JHASH_INITVAL + 12 (3 words of 4 bytes). */
static __always_inline __u32 xlb_jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	__u32 seed = initval + XLB_JHASH_INITVAL + (3 << 2);

	a += seed;
	b += seed;
	c += seed;
	c ^= b; c -= xlb_rol32(b, 14);
	a ^= c; a -= xlb_rol32(c, 11);
	b ^= a; b -= xlb_rol32(a, 25);
	c ^= b; c -= xlb_rol32(b, 16);
	a ^= c; a -= xlb_rol32(c, 4);
	b ^= a; b -= xlb_rol32(a, 14);
	c ^= b; c -= xlb_rol32(b, 24);
	return c;
}

#endif /* XLB_JHASH_H */
