/* reject: the callback's state changes every round and the count is unknown, so its
 * rounds never converge: the kernel gives up at its limit, and so do we. */
#include "vprog.h"

struct counted {
	__u32 n;
	__u8 b[8];
};

static long step(__u64 i, void *data)
{
	struct counted *c = data;

	if (c->n < 8)
		c->b[c->n] = 1;
	c->n++;
	return 0;
}

SEC("xdp")
int loop_callback_grows(struct xdp_md *ctx)
{
	struct counted c = {};

	bpf_loop(ctx->rx_queue_index, step, &c, 0);
	return c.b[0];
}
