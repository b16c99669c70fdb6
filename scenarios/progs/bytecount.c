/* bytecount.c: bytes per IP protocol, updated with a plain read-modify-write (the way
 * per-CPU counters are usually written), every frame passed.  A map write other than an
 * atomic add: the SmartNIC's micro-engine has no mapping for it (docs/smartnic.md). */
#include "parse.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);    /* IP protocol */
	__type(value, __u64);  /* bytes */
} proto_bytes SEC(".maps");

SEC("xdp")
int xdp_bytecount(struct xdp_md *ctx)
{
	struct iphdr *ip = ipv4_of(ctx);
	__u32 proto;
	__u64 *total;

	if (!ip)
		return XDP_PASS;
	proto = ip->protocol;
	total = bpf_map_lookup_elem(&proto_bytes, &proto);
	if (total)
		*total += ctx->data_end - ctx->data;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
