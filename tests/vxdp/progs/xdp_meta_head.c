/* xdp_meta_head.c: metadata that travels with the packet while the head moves.
 * Exercises: bpf_xdp_adjust_meta(-8) then bpf_xdp_adjust_head(+14) and (-14), which move
 * the metadata with data (the kernel memmoves it), the headroom left for adjust_head
 * once metadata is present (probed in 4-byte steps), reading the metadata back after
 * every move, and a packet that leaves with its metadata (test-run output includes it).
 */
#include "common.h"

struct meta {
	__u32 magic;
	__u32 len;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} meta_seen SEC(".maps"); /* 0: headroom sum, 1: intact after +14, 2: intact after -14 */

static __always_inline void add(__u32 idx, __u64 v)
{
	__u64 *p = bpf_map_lookup_elem(&meta_seen, &idx);

	if (p)
		*p += v;
}

static __always_inline struct meta *meta_of(struct xdp_md *ctx)
{
	struct meta *m = (void *)(long)ctx->data_meta;

	if ((void *)(m + 1) > (void *)(long)ctx->data)
		return 0;
	return m;
}

SEC("xdp")
int xdp_meta_head(struct xdp_md *ctx)
{
	void *data, *data_end;
	struct ethhdr eth;
	struct meta *m;
	__u32 len = ctx->data_end - ctx->data;
	int off, room = 0;

	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct meta)))
		return XDP_ABORTED;
	m = meta_of(ctx);
	if (!m)
		return XDP_ABORTED;
	m->magic = 0x5eedf00d;
	m->len = len;

	for (off = 4; off <= 256; off += 4) {
		if (bpf_xdp_adjust_head(ctx, -off))
			break;
		room = off;
		if (bpf_xdp_adjust_head(ctx, off))
			return XDP_ABORTED;
	}
	add(0, room);

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(eth) > data_end)
		return XDP_DROP;
	__builtin_memcpy(&eth, data, sizeof(eth));
	if (bpf_xdp_adjust_head(ctx, (int)sizeof(eth)))
		return XDP_PASS; /* too short to strip */
	m = meta_of(ctx);
	if (!m)
		return XDP_ABORTED;
	add(1, m->magic == 0x5eedf00d && m->len == len);
	m->len += 1;

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(eth)))
		return XDP_ABORTED;
	m = meta_of(ctx);
	if (!m)
		return XDP_ABORTED;
	add(2, m->magic == 0x5eedf00d && m->len == len + 1);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(eth) > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, &eth, sizeof(eth));
	return len & 1 ? XDP_PASS : XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
