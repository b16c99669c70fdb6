/* accept: a packet-derived index into a map value, masked into range. */
#include "vprog.h"

struct table { __u8 slots[16]; };
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct table);
} tables SEC(".maps");

SEC("xdp")
int index_masked(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct table *t;

	if ((void *)(data + 1) > end)
		return XDP_DROP;
	t = bpf_map_lookup_elem(&tables, &zero);
	if (!t)
		return XDP_PASS;
	return t->slots[data[0] & 15];
}
