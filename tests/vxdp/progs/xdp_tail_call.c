/* xdp_tail_call.c: a protocol dispatcher built from tail calls.
 * Exercises: a PROG_ARRAY filled from user space, bpf_tail_call to per-protocol handlers
 * (TCP, UDP, ICMP in slots 0..2; slot 3 a shared logger chained from the TCP handler),
 * falling through when a slot is empty (ICMP is left empty by some setups), handlers
 * sharing the caller's maps, and state carried across calls in the XDP metadata.
 */
#include "common.h"

enum { SLOT_TCP, SLOT_UDP, SLOT_ICMP, SLOT_LOG, SLOT_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, SLOT_MAX + 4);
	__type(key, __u32);
	__type(value, __u32);
} jump_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} handled SEC(".maps"); /* by slot; 7 = fell through */

static __always_inline void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&handled, &slot);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("xdp")
int xdp_dispatch(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	__u32 *hops;

	if (bpf_xdp_adjust_meta(ctx, -4))
		return XDP_ABORTED;
	hops = (void *)(long)ctx->data_meta;
	if ((void *)(hops + 1) > (void *)(long)ctx->data)
		return XDP_ABORTED;
	*hops = 0;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	switch (parse_ipv4(&c, &iph)) {
	case IPPROTO_TCP:
		bpf_tail_call(ctx, &jump_table, SLOT_TCP);
		break;
	case IPPROTO_UDP:
		bpf_tail_call(ctx, &jump_table, SLOT_UDP);
		break;
	case IPPROTO_ICMP:
		bpf_tail_call(ctx, &jump_table, SLOT_ICMP);
		break;
	}
	bump(7);
	return XDP_PASS;
}

static __always_inline __u32 *hop_count(struct xdp_md *ctx)
{
	__u32 *hops = (void *)(long)ctx->data_meta;

	if ((void *)(hops + 1) > (void *)(long)ctx->data)
		return 0;
	return hops;
}

SEC("xdp")
int xdp_handle_tcp(struct xdp_md *ctx)
{
	__u32 *hops = hop_count(ctx);

	if (!hops)
		return XDP_ABORTED;
	*hops += 1;
	bump(SLOT_TCP);
	bpf_tail_call(ctx, &jump_table, SLOT_LOG);
	return XDP_DROP; /* logger missing */
}

SEC("xdp")
int xdp_handle_udp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	bump(SLOT_UDP);
	return data_end - data > 200 ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int xdp_handle_icmp(struct xdp_md *ctx)
{
	bump(SLOT_ICMP);
	return XDP_TX;
}

SEC("xdp")
int xdp_log(struct xdp_md *ctx)
{
	__u32 *hops = hop_count(ctx);

	bump(SLOT_LOG);
	if (!hops)
		return XDP_ABORTED;
	*hops += 1;
	return *hops == 2 ? XDP_PASS : XDP_ABORTED;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
