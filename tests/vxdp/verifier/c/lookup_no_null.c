/* reject: the lookup result is used without a NULL check. */
#include "vprog.h"

SEC("xdp")
int lookup_no_null(struct xdp_md *ctx)
{
	__u32 key = ctx->rx_queue_index;
	__u32 *v = bpf_map_lookup_elem(&flows, &key);

	return *v;
}
