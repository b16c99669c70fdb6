/* accept: an ARRAY_OF_MAPS whose slot 1 holds inner_b from load (`.values`), a
 * HASH_OF_MAPS filled at run time; a lookup gives the inner map, NULL-checked, then its values. */
#include "vprog.h"

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} by_queue SEC(".maps") = { .values = { [1] = &inner_b } };

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 8);
	__type(key, __u32);
	__array(values, struct inner);
} by_ifindex SEC(".maps");

SEC("xdp")
int map_in_map_ok(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u32 q, ifi = ctx->ingress_ifindex, zero = 0;
	void *in;
	__u64 *v;

	if (data + 1 > end)
		return XDP_DROP;
	q = *(__u8 *)data & 1;  /* the slot, from the first byte */
	in = bpf_map_lookup_elem(&by_queue, &q);
	if (!in)
		return XDP_DROP;
	v = bpf_map_lookup_elem(in, &zero);
	if (!v)
		return XDP_ABORTED;
	*v += 1;
	in = bpf_map_lookup_elem(&by_ifindex, &ifi);
	if (in) {
		v = bpf_map_lookup_elem(in, &zero);
		if (v)
			*v += 2;
	}
	return XDP_PASS;
}
