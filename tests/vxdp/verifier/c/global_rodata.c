/* accept: a constant from .rodata bounds an index (the verifier reads frozen maps). */
#include "vprog.h"

const volatile __u32 limit = 4;
__u64 hits[4];

SEC("xdp")
int global_rodata(struct xdp_md *ctx)
{
	__u32 i = ctx->rx_queue_index;

	if (i >= limit)
		return XDP_PASS;
	if (i < 4)
		hits[i]++;
	return XDP_PASS;
}
