// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xlb_xdp_pass: lab only. A veth delivers frames sent into it with XDP_TX or
 * XDP_REDIRECT only when its peer has an XDP program attached
 * (drivers/net/veth.c); this one passes everything to the stack.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xlb_xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
