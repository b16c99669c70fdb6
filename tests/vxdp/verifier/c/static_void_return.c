/* accept: a static function need not set R0 (a void function's exit); only a caller
 * reading it would be rejected. */
#include "vprog.h"

static __attribute__((noinline)) void touch(__u64 *p)
{
	*p = 1;
}

SEC("xdp")
int static_void_return(struct xdp_md *ctx)
{
	__u64 v;

	touch(&v);
	return v == 1 ? XDP_PASS : XDP_DROP;
}
