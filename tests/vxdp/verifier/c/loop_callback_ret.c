/* reject: a bpf_loop callback returns 0 (go on) or 1 (stop), nothing else. */
#include "vprog.h"

static long step(__u64 i, void *data)
{
	return 2;
}

SEC("xdp")
int loop_callback_ret(struct xdp_md *ctx)
{
	bpf_loop(4, step, 0, 0);
	return XDP_PASS;
}
