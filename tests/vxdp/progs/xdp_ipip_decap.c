/* xdp_ipip_decap.c: terminate IPIP tunnels addressed to us.
 * Exercises: checking the outer header (protocol 4, our address from .rodata, no
 * fragments), bpf_xdp_adjust_head(+outer header length) including IPv4 options,
 * rebuilding the Ethernet header in front of the inner packet, a per-CPU decap
 * counter, and passing the inner packet up.
 */
#include "common.h"

const volatile __be32 tunnel_local = 0x0102000a; /* 10.0.2.1 in network order */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} decap_stats SEC(".maps"); /* 0: decapsulated, 1: refused */

static __always_inline int count(__u32 idx, int verdict)
{
	__u64 *v = bpf_map_lookup_elem(&decap_stats, &idx);

	if (v)
		*v += 1;
	return verdict;
}

SEC("xdp")
int xdp_ipip_decap(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth, eth_copy;
	struct iphdr *outer, *inner;
	int hlen;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if ((void *)eth + sizeof(*eth) != c.pos)
		return XDP_PASS;
	if (parse_ipv4(&c, &outer) != IPPROTO_IPIP)
		return XDP_PASS;
	if (outer->daddr != tunnel_local || (outer->frag_off & bpf_htons(0x3fff)))
		return count(1, XDP_DROP);
	inner = c.pos;
	if ((void *)(inner + 1) > c.end || inner->version != 4)
		return count(1, XDP_DROP);
	__builtin_memcpy(&eth_copy, eth, sizeof(eth_copy));
	hlen = outer->ihl * 4;

	if (bpf_xdp_adjust_head(ctx, hlen))
		return XDP_ABORTED;
	c.pos = (void *)(long)ctx->data;
	c.end = (void *)(long)ctx->data_end;
	eth = c.pos;
	if ((void *)(eth + 1) > c.end)
		return XDP_ABORTED;
	__builtin_memcpy(eth, &eth_copy, sizeof(*eth));
	return count(0, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
