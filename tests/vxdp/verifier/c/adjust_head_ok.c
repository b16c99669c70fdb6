/* accept: pointers reloaded from the context after bpf_xdp_adjust_head. */
#include "vprog.h"

SEC("xdp")
int adjust_head_ok(struct xdp_md *ctx)
{
	unsigned char *data, *end;

	if (bpf_xdp_adjust_head(ctx, -4))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + 4 > end)
		return XDP_DROP;
	data[0] = 0xaa;
	return XDP_PASS;
}
