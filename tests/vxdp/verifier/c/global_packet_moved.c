/* reject: a global function that may move the packet (bpf_xdp_adjust_head) invalidates
 * the caller's packet pointers. */
#include "vprog.h"

__attribute__((noinline)) int pop(struct xdp_md *ctx)
{
	return bpf_xdp_adjust_head(ctx, 0);
}

SEC("xdp")
int global_packet_moved(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;

	if (data + 1 > end)
		return XDP_DROP;
	pop(ctx);
	return *(__u8 *)data;
}
