/* reject: the caller must pass as many readable and writable bytes as the global
 * function's argument type has (here 8, from a 4-byte slot at the top of the stack). */
#include "vprog.h"

__attribute__((noinline)) int read64(__u64 *p)
{
	return p ? (int)*p : 0;
}

SEC("xdp")
int global_short_arg(struct xdp_md *ctx)
{
	__u32 v[2] = {ctx->rx_queue_index, 0};

	return read64((__u64 *)&v[1]) ? XDP_PASS : XDP_DROP;
}
