/* reject: what a map-in-map gives is checked as its inner maps' template: values of
 * 8 bytes, so 8 bytes at offset 8 are past the end. */
#include "vprog.h"

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} inner_a SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = { .values = { [0] = &inner_a } };

SEC("xdp")
int map_in_map_past_value(struct xdp_md *ctx)
{
	__u32 zero = 0;
	void *in = bpf_map_lookup_elem(&outer, &zero);
	__u64 *v;

	if (!in)
		return XDP_DROP;
	v = bpf_map_lookup_elem(in, &zero);
	if (!v)
		return XDP_DROP;
	return v[1] ? XDP_PASS : XDP_DROP;
}
