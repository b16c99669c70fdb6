/* xdp_icmp_echo.c: answer ICMP and ICMPv6 echo requests from XDP.
 * Exercises: ICMP type rewrite with an incremental checksum update (ICMPv4) and the same
 * for ICMPv6 (whose checksum covers a pseudo-header, unchanged by swapping addresses),
 * IPv4 address swap and TTL reset with the header checksum recomputed, IPv6 hop limit
 * reset, MAC swap and XDP_TX; requests with a bad IPv4 header checksum are dropped.
 */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} echo_replies SEC(".maps"); /* 0: ICMP, 1: ICMPv6 */

static __always_inline void bump(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&echo_replies, &idx);

	if (v)
		*v += 1;
}

static __always_inline void set_type(struct icmp_echo *icmp, __u8 type)
{
	__u16 *w = (__u16 *)icmp;
	__u16 old = w[0];

	icmp->type = type;
	csum_replace2(&icmp->checksum, old, w[0]);
}

SEC("xdp")
int xdp_icmp_echo(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct icmp_echo *icmp;
	int proto;

	cursor_init(&c, ctx);
	proto = parse_eth(&c, &eth, 0);
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph;
		__be32 a;

		if (parse_ipv4(&c, &iph) != IPPROTO_ICMP)
			return XDP_PASS;
		icmp = c.pos;
		if ((void *)(icmp + 1) > c.end)
			return XDP_DROP;
		if (icmp->type != ICMP_ECHO || icmp->code != 0)
			return XDP_PASS;
		if (iph->ihl != 5 || ipv4_csum20(iph) != iph->check)
			return XDP_DROP;
		set_type(icmp, ICMP_ECHOREPLY);
		a = iph->saddr;
		iph->saddr = iph->daddr;
		iph->daddr = a;
		iph->ttl = 64;
		iph->check = ipv4_csum20(iph);
		bump(0);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6;
		struct in6_addr a;

		if (parse_ipv6(&c, &ip6) != IPPROTO_ICMPV6)
			return XDP_PASS;
		icmp = c.pos;
		if ((void *)(icmp + 1) > c.end)
			return XDP_DROP;
		if (icmp->type != ICMPV6_ECHO_REQUEST || icmp->code != 0)
			return XDP_PASS;
		set_type(icmp, ICMPV6_ECHO_REPLY);
		a = ip6->saddr;
		ip6->saddr = ip6->daddr;
		ip6->daddr = a;
		ip6->hop_limit = 64;
		bump(1);
	} else {
		return XDP_PASS;
	}
	swap_macs(eth);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
