/* reject: global functions must return a scalar (Linux 6.18 refuses void ones). */
#include "vprog.h"

__attribute__((noinline)) void bump(__u64 *p)
{
	if (p)
		*p += 1;
}

SEC("xdp")
int global_void_return(struct xdp_md *ctx)
{
	__u64 v = ctx->rx_queue_index;

	bump(&v);
	return v == 3 ? XDP_PASS : XDP_DROP;
}
