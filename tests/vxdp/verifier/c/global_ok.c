/* accept: global functions that check what their prototype allows: the context, a
 * nullable map value, and one global calling another with a stack buffer. */
#include "vprog.h"

__attribute__((noinline)) int pkt_len(struct xdp_md *ctx)
{
	return ctx->data_end - ctx->data;
}

__attribute__((noinline)) int bump(__u64 *p)
{
	if (!p)
		return 0;
	*p += 1;
	return 1;
}

__attribute__((noinline)) int twice(__u64 *p)
{
	__u64 local = 1;

	return bump(p) + bump(&local);
}

SEC("xdp")
int global_ok(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&counters, &k);

	if (pkt_len(ctx) < 60)
		return XDP_DROP;
	return twice(v) == 2 ? XDP_PASS : XDP_DROP;
}
