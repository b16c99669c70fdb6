/* xdp_adjust_meta.c: classify into XDP metadata, then act on the metadata.
 * Exercises: bpf_xdp_adjust_meta(-8) and reading ctx->data_meta, bounds checks of the
 * metadata against ctx->data, writing a struct into the metadata area and reading it
 * back after more parsing, rewriting the IPv4 DSCP from the metadata with an
 * incremental checksum update, and giving the metadata back with adjust_meta(+8).
 */
#include "common.h"

struct meta {
	__u32 mark;
	__u16 dscp;
	__u16 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32);
	__type(key, __be16); /* destination port */
	__type(value, struct meta);
} classes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} marks SEC(".maps");

SEC("xdp")
int xdp_adjust_meta(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct udphdr *udp;
	struct meta *m, *cls;
	void *data;
	__u32 idx;
	__u64 *cnt;
	__be16 port;
	__u16 old;

	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct meta)))
		return XDP_ABORTED;
	m = (void *)(long)ctx->data_meta;
	data = (void *)(long)ctx->data;
	if ((void *)(m + 1) > data)
		return XDP_ABORTED;
	m->mark = 7;
	m->dscp = 0;
	m->flags = 0;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		goto done;
	if (parse_ipv4(&c, &iph) != IPPROTO_UDP)
		goto done;
	udp = parse_udp(&c);
	if (!udp)
		goto done;
	port = udp->dest;
	cls = bpf_map_lookup_elem(&classes, &port);
	if (cls)
		*m = *cls;

	/* reload everything: the metadata is the only state carried forward */
	m = (void *)(long)ctx->data_meta;
	data = (void *)(long)ctx->data;
	if ((void *)(m + 1) > data)
		return XDP_ABORTED;
	if (m->flags & 1) {
		__u16 *w = (__u16 *)iph;

		old = w[0];
		iph->tos = (m->dscp << 2) | (iph->tos & 3);
		csum_replace2(&iph->check, old, w[0]);
	}
done:
	m = (void *)(long)ctx->data_meta;
	data = (void *)(long)ctx->data;
	if ((void *)(m + 1) > data)
		return XDP_ABORTED;
	idx = m->mark & 7;
	cnt = bpf_map_lookup_elem(&marks, &idx);
	if (cnt)
		*cnt += 1;
	if (m->flags & 2)
		return XDP_DROP;
	if (bpf_xdp_adjust_meta(ctx, (int)sizeof(struct meta)))
		return XDP_ABORTED;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
