/* xdp_tcp_flags.c: TCP flag statistics and scan filtering on a per-CPU array.
 * Exercises: PERCPU_ARRAY lookups and plain (non-atomic) increments of per-CPU values,
 * reading the TCP flag byte through the bitfields, byte-order independent masks, and
 * dropping NULL, XMAS and SYN+FIN packets.
 */
#include "common.h"

enum { ST_TCP, ST_SYN, ST_SYNACK, ST_FIN, ST_RST, ST_NULL, ST_XMAS, ST_SYNFIN, ST_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST_MAX);
	__type(key, __u32);
	__type(value, __u64);
} tcp_stats SEC(".maps");

static __always_inline void bump(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&tcp_stats, &idx);

	if (v)
		*v += 1;
}

SEC("xdp")
int xdp_tcp_flags(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct tcphdr *tcp;
	__u8 flags;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (parse_ipv4(&c, &iph) != IPPROTO_TCP)
		return XDP_PASS;
	tcp = parse_tcp(&c);
	if (!tcp)
		return XDP_DROP;
	bump(ST_TCP);
	flags = ((__u8 *)tcp)[13];
	if (flags == 0) {
		bump(ST_NULL);
		return XDP_DROP;
	}
	if ((flags & 0x29) == 0x29) { /* FIN|PSH|URG */
		bump(ST_XMAS);
		return XDP_DROP;
	}
	if (tcp->syn && tcp->fin) {
		bump(ST_SYNFIN);
		return XDP_DROP;
	}
	if (tcp->syn)
		bump(tcp->ack ? ST_SYNACK : ST_SYN);
	if (tcp->fin)
		bump(ST_FIN);
	if (tcp->rst)
		bump(ST_RST);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
