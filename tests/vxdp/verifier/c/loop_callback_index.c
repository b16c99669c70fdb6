/* reject: the callback's index is any number to the verifier (not below nr_loops). */
#include "vprog.h"

struct bytes4 {
	__u8 b[4];
};

static long step(__u64 i, void *data)
{
	struct bytes4 *c = data;

	c->b[i] = 1;
	return 0;
}

SEC("xdp")
int loop_callback_index(struct xdp_md *ctx)
{
	struct bytes4 c = {};

	bpf_loop(4, step, &c, 0);
	return c.b[0];
}
