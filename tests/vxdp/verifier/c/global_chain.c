/* A chain of global functions, g1 -> g2 -> ... -> g9.  Each global is verified on its
 * own, in one frame, so no walk meets the chain: the kernel counts it when it checks the
 * call stack's depth (check_max_stack_depth), at most 8 frames.
 *   global_chain_ok    accept: calls g3, 8 frames (main and g3..g9)
 *   global_chain_deep  reject: calls g1, 10 frames */
#include "vprog.h"

#define LINK(name, next) \
	__attribute__((noinline)) int name(int x) { return next(x + 1) + 1; }

__attribute__((noinline)) int g9(int x)
{
	asm volatile("" : "+r"(x)); /* opaque: nothing up the chain folds away */
	return x & 1;
}

LINK(g8, g9)
LINK(g7, g8)
LINK(g6, g7)
LINK(g5, g6)
LINK(g4, g5)
LINK(g3, g4)
LINK(g2, g3)
LINK(g1, g2)

SEC("xdp")
int global_chain_ok(struct xdp_md *ctx)
{
	return g3(ctx->ingress_ifindex) ? XDP_PASS : XDP_DROP;
}

SEC("xdp")
int global_chain_deep(struct xdp_md *ctx)
{
	return g1(ctx->ingress_ifindex) ? XDP_PASS : XDP_DROP;
}
