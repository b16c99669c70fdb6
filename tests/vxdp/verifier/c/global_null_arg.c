/* reject: a global function is verified on its own, from its BTF prototype: its pointer
 * argument may be NULL whatever this caller passes. */
#include "vprog.h"

__attribute__((noinline)) int first_word(__u32 *p)
{
	return *p;
}

SEC("xdp")
int global_null_arg(struct xdp_md *ctx)
{
	__u32 k = ctx->rx_queue_index;

	return first_word(&k) ? XDP_PASS : XDP_DROP;
}
