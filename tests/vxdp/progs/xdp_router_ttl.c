/* xdp_router_ttl.c: a minimal IPv4/IPv6 forwarder with a next-hop table.
 * Exercises: TTL decrement with the RFC 1624 update of the header checksum (the
 * 16-bit word holding TTL and protocol), hop-limit decrement for IPv6, a HASH of
 * next hops keyed by destination /24 (IPv4) or the top 64 bits (IPv6), MAC rewrite from
 * the value, per-next-hop counters, XDP_TX, and passing TTL <= 1 up to the stack.
 */
#include "common.h"

struct nexthop {
	__u8 dmac[ETH_ALEN];
	__u8 smac[ETH_ALEN];
	__u64 forwarded;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __be32);
	__type(value, struct nexthop);
} routes4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, struct nexthop);
} routes6 SEC(".maps");

static __always_inline int forward(struct ethhdr *eth, struct nexthop *nh)
{
	__builtin_memcpy(eth->h_dest, nh->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, nh->smac, ETH_ALEN);
	__sync_fetch_and_add(&nh->forwarded, 1);
	return XDP_TX;
}

SEC("xdp")
int xdp_router(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct nexthop *nh;
	int proto;

	cursor_init(&c, ctx);
	proto = parse_eth(&c, &eth, 0);
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph;
		__be32 net;
		__u16 old;

		if (parse_ipv4(&c, &iph) < 0)
			return XDP_DROP;
		if (iph->ttl <= 1)
			return XDP_PASS;
		net = iph->daddr & bpf_htonl(0xffffff00);
		nh = bpf_map_lookup_elem(&routes4, &net);
		if (!nh)
			return XDP_PASS;
		old = *(__u16 *)&iph->ttl;
		iph->ttl--;
		csum_replace2(&iph->check, old, *(__u16 *)&iph->ttl);
		return forward(eth, nh);
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6;
		__u64 prefix;

		if (parse_ipv6(&c, &ip6) < 0)
			return XDP_DROP;
		if (ip6->hop_limit <= 1)
			return XDP_PASS;
		__builtin_memcpy(&prefix, &ip6->daddr, sizeof(prefix));
		nh = bpf_map_lookup_elem(&routes6, &prefix);
		if (!nh)
			return XDP_PASS;
		ip6->hop_limit--;
		return forward(eth, nh);
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
