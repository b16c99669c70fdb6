/* xdp_parse_swap_tx.c: a UDP/TCP reflector (bench workload "parse+swap+TX").
 * Exercises: Ethernet/VLAN/IPv4/IPv6/UDP/TCP parsing, swapping MACs, addresses and ports in
 * place (checksums stay valid because the ones' complement sum is order independent),
 * and XDP_TX.  Anything that is not UDP or TCP is passed.
 */
#include "common.h"

SEC("xdp")
int xdp_swap_tx(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	__be16 *ports;
	int proto;

	cursor_init(&c, ctx);
	proto = parse_eth(&c, &eth, 0);
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph;
		__be32 a;

		proto = parse_ipv4(&c, &iph);
		if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
			return XDP_PASS;
		a = iph->saddr;
		iph->saddr = iph->daddr;
		iph->daddr = a;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6;
		struct in6_addr a;

		proto = parse_ipv6(&c, &ip6);
		if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
			return XDP_PASS;
		a = ip6->saddr;
		ip6->saddr = ip6->daddr;
		ip6->daddr = a;
	} else {
		return XDP_PASS;
	}
	ports = c.pos;
	if ((void *)(ports + 2) > c.end)
		return XDP_PASS;
	{
		__be16 p = ports[0];

		ports[0] = ports[1];
		ports[1] = p;
	}
	swap_macs(eth);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
