/* reject: atomics must be naturally aligned wherever they point (here 8 bytes at offset 4
 * of a map value); the kernel checks it at load time, strictly, on every architecture. */
#include "vprog.h"

struct pair {
	__u32 a[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pair);
} pairs SEC(".maps");

SEC("xdp")
int atomic_misaligned(struct xdp_md *ctx)
{
	__u32 k = 0;
	struct pair *p = bpf_map_lookup_elem(&pairs, &k);

	if (p)
		__sync_fetch_and_add((__u64 *)&p->a[1], 1);
	return XDP_PASS;
}
