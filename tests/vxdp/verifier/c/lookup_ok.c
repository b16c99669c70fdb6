/* accept: lookup, NULL check, atomic increment, update of a new key. */
#include "vprog.h"

SEC("xdp")
int lookup_ok(struct xdp_md *ctx)
{
	__u32 key = ctx->rx_queue_index, one = 1;
	__u32 *v = bpf_map_lookup_elem(&flows, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&flows, &key, &one, BPF_NOEXIST);
	return XDP_PASS;
}
