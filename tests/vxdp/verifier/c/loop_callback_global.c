/* reject: a callback must be a static function. */
#include "vprog.h"

__attribute__((noinline)) long step(__u64 i, void *data)
{
	return 0;
}

SEC("xdp")
int loop_callback_global(struct xdp_md *ctx)
{
	bpf_loop(4, step, 0, 0);
	return XDP_PASS;
}
