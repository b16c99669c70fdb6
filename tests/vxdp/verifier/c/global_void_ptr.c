/* reject: a global function's pointer argument must point to a type of known size. */
#include "vprog.h"

__attribute__((noinline)) int is_set(void *p)
{
	return p != 0;
}

SEC("xdp")
int global_void_ptr(struct xdp_md *ctx)
{
	__u64 v = 0;

	return is_set(&v) ? XDP_PASS : XDP_DROP;
}
