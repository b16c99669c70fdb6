/* xdp_tail_loop.c: a program that tail-calls itself until the kernel says no.
 * Exercises: the tail call limit (MAX_TAIL_CALL_CNT = 33: the 34th run falls through),
 * a PROG_ARRAY slot pointing at the program itself, a counter per packet kept in the
 * XDP metadata across calls, a per-depth histogram, and the fall-through verdict.
 */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} self SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} depth_hist SEC(".maps");

SEC("xdp")
int xdp_tail_loop(struct xdp_md *ctx)
{
	__u32 *depth = (void *)(long)ctx->data_meta;
	__u32 d;
	__u64 *h;

	if ((void *)(depth + 1) > (void *)(long)ctx->data) {
		/* first run: make room for the counter */
		if (bpf_xdp_adjust_meta(ctx, -4))
			return XDP_ABORTED;
		depth = (void *)(long)ctx->data_meta;
		if ((void *)(depth + 1) > (void *)(long)ctx->data)
			return XDP_ABORTED;
		*depth = 0;
	}
	*depth += 1;
	d = *depth & 63;
	h = bpf_map_lookup_elem(&depth_hist, &d);
	if (h)
		*h += 1;
	bpf_tail_call(ctx, &self, 0);
	return XDP_PASS; /* the limit stopped us: depth is 34 */
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
