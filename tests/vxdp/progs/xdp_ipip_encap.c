/* xdp_ipip_encap.c: encapsulate IPv4 in IPv4 (IPIP) towards a tunnel endpoint.
 * Exercises: bpf_xdp_adjust_head(-20) to grow the head, writing a whole new outer header
 * (tot_len from the inner header, id from a .bss sequence, TTL 64, DF) and computing its
 * checksum from scratch, re-writing the Ethernet header at the new start, a HASH from
 * inner destination /24 to tunnel endpoint, and XDP_TX.
 */
#include "common.h"

struct tunnel {
	__be32 local;
	__be32 remote;
	__u8 next_hop[ETH_ALEN];
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __be32); /* inner daddr & 255.255.255.0 */
	__type(value, struct tunnel);
} tunnels SEC(".maps");

__u16 ip_id_seq;

SEC("xdp")
int xdp_ipip_encap(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth, eth_copy;
	struct iphdr *inner, *outer;
	struct tunnel *t;
	__be32 net;
	__u16 inner_len;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if ((void *)eth + sizeof(*eth) != c.pos)
		return XDP_PASS; /* no VLANs on the tunnel path */
	if (parse_ipv4(&c, &inner) < 0)
		return XDP_DROP;
	net = inner->daddr & bpf_htonl(0xffffff00);
	t = bpf_map_lookup_elem(&tunnels, &net);
	if (!t)
		return XDP_PASS;
	inner_len = bpf_ntohs(inner->tot_len);
	if (inner_len > 1480)
		return XDP_DROP; /* would need fragmentation */
	__builtin_memcpy(&eth_copy, eth, sizeof(eth_copy));

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
		return XDP_ABORTED;
	c.pos = (void *)(long)ctx->data;
	c.end = (void *)(long)ctx->data_end;
	eth = c.pos;
	outer = (void *)(eth + 1);
	if ((void *)(outer + 1) > c.end)
		return XDP_ABORTED;

	__builtin_memcpy(eth->h_source, eth_copy.h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, t->next_hop, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);

	outer->version = 4;
	outer->ihl = 5;
	outer->tos = 0;
	outer->tot_len = bpf_htons(inner_len + sizeof(struct iphdr));
	outer->id = bpf_htons(ip_id_seq++);
	outer->frag_off = bpf_htons(0x4000);
	outer->ttl = 64;
	outer->protocol = IPPROTO_IPIP;
	outer->saddr = t->local;
	outer->daddr = t->remote;
	outer->check = 0;
	outer->check = ipv4_csum20(outer);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
