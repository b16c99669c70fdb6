/* accept: metadata written after checking data_meta against data. */
#include "vprog.h"

SEC("xdp")
int meta_ok(struct xdp_md *ctx)
{
	__u32 *meta;

	if (bpf_xdp_adjust_meta(ctx, -4))
		return XDP_PASS;
	meta = (void *)(long)ctx->data_meta;
	if ((void *)(meta + 1) > (void *)(long)ctx->data)
		return XDP_PASS;
	*meta = 0x1234;
	return XDP_PASS;
}
