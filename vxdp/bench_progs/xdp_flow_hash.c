/* xdp_flow_hash.c: a 5-tuple flow table (bench workload "5-tuple hash lookup").
 * Exercises: HASH lookups with a 16-byte stack key built from the packet, per-flow policy
 * read from the value (action), per-flow counters written back through the value
 * pointer, and a miss counter in a second map.
 */
#include "common.h"

struct flow_policy {
	__u32 action;
	__u32 hits;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct flow_key);
	__type(value, struct flow_policy);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} misses SEC(".maps");

SEC("xdp")
int xdp_flow_lookup(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct flow_key key;
	struct flow_policy *pol;
	__u32 zero = 0;
	__u64 *miss;
	int proto;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	proto = parse_ipv4(&c, &iph);
	if (proto < 0)
		return XDP_DROP;
	if (flow_of(&c, iph, proto, &key))
		return XDP_DROP;
	pol = bpf_map_lookup_elem(&flows, &key);
	if (pol) {
		pol->hits++;
		pol->bytes += ctx->data_end - ctx->data;
		return pol->action;
	}
	miss = bpf_map_lookup_elem(&misses, &zero);
	if (miss)
		*miss += 1;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
