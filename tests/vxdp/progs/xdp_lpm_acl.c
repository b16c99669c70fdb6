/* xdp_lpm_acl.c: longest-prefix-match ACL for IPv4 and IPv6 sources.
 * Exercises: two LPM_TRIE maps (BPF_F_NO_PREALLOC; 8-byte and 20-byte keys with the
 * prefix length first), the most specific prefix winning, a rule value carrying the
 * verdict and a hit counter, and a default verdict when nothing matches.
 */
#include "common.h"

struct lpm4_key {
	__u32 prefixlen;
	__be32 addr;
};

struct lpm6_key {
	__u32 prefixlen;
	struct in6_addr addr;
};

struct rule {
	__u32 action;
	__u32 rule_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm4_key);
	__type(value, struct rule);
} acl4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm6_key);
	__type(value, struct rule);
} acl6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} rule_hits SEC(".maps");

static __always_inline int apply(struct rule *r)
{
	__u32 id;
	__u64 *hits;

	if (!r)
		return XDP_PASS;
	id = r->rule_id;
	hits = bpf_map_lookup_elem(&rule_hits, &id);
	if (hits)
		__sync_fetch_and_add(hits, 1);
	return r->action;
}

SEC("xdp")
int xdp_lpm_acl(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	int proto;

	cursor_init(&c, ctx);
	proto = parse_eth(&c, &eth, 0);
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph;
		struct lpm4_key k = {.prefixlen = 32};

		if (parse_ipv4(&c, &iph) < 0)
			return XDP_DROP;
		k.addr = iph->saddr;
		return apply(bpf_map_lookup_elem(&acl4, &k));
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6;
		struct lpm6_key k = {.prefixlen = 128};

		if (parse_ipv6(&c, &ip6) < 0)
			return XDP_DROP;
		k.addr = ip6->saddr;
		return apply(bpf_map_lookup_elem(&acl6, &k));
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
