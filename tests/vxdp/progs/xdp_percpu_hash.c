/* xdp_percpu_hash.c: per-source accounting in a per-CPU hash, with a top talker guard.
 * Exercises: PERCPU_HASH lookup, insert from the program (the kernel zeroes the other
 * CPUs' slots), update of a struct value in place, and a drop once a source exceeds a
 * packet budget held in .data.
 */
#include "common.h"

struct src_stats {
	__u64 packets;
	__u64 bytes;
	__u32 max_len;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 256);
	__type(key, __be32);
	__type(value, struct src_stats);
} src_acct SEC(".maps");

__u64 budget = 12;

SEC("xdp")
int xdp_percpu_src(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct src_stats *s, init = {};
	__u32 len = ctx->data_end - ctx->data;
	__be32 src;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (parse_ipv4(&c, &iph) < 0)
		return XDP_DROP;
	src = iph->saddr;
	s = bpf_map_lookup_elem(&src_acct, &src);
	if (!s) {
		init.packets = 1;
		init.bytes = len;
		init.max_len = len;
		bpf_map_update_elem(&src_acct, &src, &init, BPF_ANY);
		return XDP_PASS;
	}
	s->packets++;
	s->bytes += len;
	if (len > s->max_len)
		s->max_len = len;
	return s->packets > budget ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
