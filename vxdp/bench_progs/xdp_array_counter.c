/* xdp_array_counter.c: packets and bytes per IP protocol (bench workload "array counter").
 * Exercises: ARRAY lookups with a packet-derived key, atomic adds into a map value
 * (BPF_ATOMIC | BPF_ADD, no fetch), 64-bit counters, IPv4 and IPv6.
 */
#include "common.h"

struct counters {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct counters);
} proto_stats SEC(".maps");

SEC("xdp")
int xdp_count_proto(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct counters *v;
	__u32 key = 255; /* not IP */
	int proto;

	cursor_init(&c, ctx);
	proto = parse_eth(&c, &eth, 0);
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph;
		int p = parse_ipv4(&c, &iph);

		if (p >= 0)
			key = p;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6;
		int p = parse_ipv6(&c, &ip6);

		if (p >= 0)
			key = p;
	}
	v = bpf_map_lookup_elem(&proto_stats, &key);
	if (!v)
		return XDP_ABORTED;
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, ctx->data_end - ctx->data);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
