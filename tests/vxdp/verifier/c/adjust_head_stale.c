/* reject: a packet pointer taken before bpf_xdp_adjust_head is used after it. */
#include "vprog.h"

SEC("xdp")
int adjust_head_stale(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	if ((void *)(data + 4) > end)
		return XDP_DROP;
	if (bpf_xdp_adjust_head(ctx, 4))
		return XDP_DROP;
	return data[0];
}
