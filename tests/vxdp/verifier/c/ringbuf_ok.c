/* accept: a ring-buffer reservation submitted on every path. */
#include "vprog.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

SEC("xdp")
int ringbuf_ok(struct xdp_md *ctx)
{
	__u32 *e = bpf_ringbuf_reserve(&events, 8, 0);

	if (!e)
		return XDP_PASS;
	e[0] = ctx->rx_queue_index;
	e[1] = ctx->ingress_ifindex;
	bpf_ringbuf_submit(e, 0);
	return XDP_PASS;
}
