/* reject: what a global function returns is an unknown scalar to its caller, whatever
 * its body computes, so it cannot index an array unchecked. */
#include "vprog.h"

__attribute__((noinline)) int pick(int x)
{
	return x & 3;
}

SEC("xdp")
int global_unknown_return(struct xdp_md *ctx)
{
	__u8 buf[4] = {1, 2, 3, 4};

	return buf[pick(ctx->rx_queue_index)];
}
