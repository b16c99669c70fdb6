/* xdp_runtime_mix.c: a program whose verdicts a test can predict from the packet alone.
 * IPv4 UDP: even destination port PASS, odd DROP.  IPv4 TCP: swap the MACs and TX.
 * Everything else: PASS.
 */
#include "common.h"

SEC("xdp")
int xdp_runtime_mix(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct udphdr *udp;
	int proto;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	proto = parse_ipv4(&c, &iph);
	if (proto == IPPROTO_TCP) {
		swap_macs(eth);
		return XDP_TX;
	}
	if (proto != IPPROTO_UDP)
		return XDP_PASS;
	udp = parse_udp(&c);
	if (!udp)
		return XDP_PASS;
	return (bpf_ntohs(udp->dest) & 1) ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
