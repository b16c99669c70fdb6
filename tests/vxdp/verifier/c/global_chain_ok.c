/* accept: a chain of seven global functions under the main program, eight frames, the
 * most the kernel allows (MAX_CALL_FRAMES). */
#include "vprog.h"

#define LINK(name, next) \
	__attribute__((noinline)) int name(int x) { return next(x + 1) + 1; }

__attribute__((noinline)) int g7(int x)
{
	asm volatile("" : "+r"(x)); /* opaque: nothing up the chain folds away */
	return x & 1;
}

LINK(g6, g7)
LINK(g5, g6)
LINK(g4, g5)
LINK(g3, g4)
LINK(g2, g3)
LINK(g1, g2)

SEC("xdp")
int global_chain_ok(struct xdp_md *ctx)
{
	return g1(ctx->ingress_ifindex) ? XDP_PASS : XDP_DROP;
}
