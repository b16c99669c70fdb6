/* accept: bpf-to-bpf calls, a stack buffer passed down to a callee. */
#include "vprog.h"

static __attribute__((noinline)) int fill(__u8 *buf, int n)
{
	for (int i = 0; i < 8; i++)
		buf[i] = n + i;
	return buf[3];
}

static __attribute__((noinline)) int twice(int x)
{
	__u8 buf[8];

	return fill(buf, x) * 2;
}

SEC("xdp")
int subprog_ok(struct xdp_md *ctx)
{
	return twice(ctx->rx_queue_index) > 10 ? XDP_PASS : XDP_DROP;
}
