/* xdp_rate_limit.c: per-source packet budgets that refill by packet count, not time.
 * Exercises: HASH update from the program with BPF_NOEXIST then BPF_EXIST (and the
 * -ENOENT / -EEXIST results), bpf_map_delete_elem to forget a source, E2BIG when the
 * table (8 entries) is full, reading a budget from an ARRAY set by user space, and a
 * global refill every 16 packets kept in .bss.
 */
#include "common.h"

struct bucket {
	__u32 tokens;
	__u32 drops;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __be32);
	__type(value, struct bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __s64);
} rl_config SEC(".maps"); /* 0: burst (set by user space), 1..3: error sums */

__u64 total_packets;

static __always_inline void add(__u32 idx, __s64 v)
{
	__s64 *p = bpf_map_lookup_elem(&rl_config, &idx);

	if (p)
		*p += v;
}

SEC("xdp")
int xdp_rate_limit(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct bucket fresh = {}, *b;
	__u32 zero = 0;
	__s64 *burst;
	__be32 src;
	long err;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (parse_ipv4(&c, &iph) < 0)
		return XDP_DROP;
	src = iph->saddr;
	burst = bpf_map_lookup_elem(&rl_config, &zero);
	if (!burst)
		return XDP_ABORTED;

	if (++total_packets % 16 == 0) {
		/* refill: forget one source so the table never stays full */
		err = bpf_map_delete_elem(&buckets, &src);
		add(3, err);
	}
	b = bpf_map_lookup_elem(&buckets, &src);
	if (!b) {
		fresh.tokens = *burst > 1 ? *burst - 1 : 0;
		err = bpf_map_update_elem(&buckets, &src, &fresh, BPF_EXIST);
		add(1, err); /* -ENOENT: it is not there */
		err = bpf_map_update_elem(&buckets, &src, &fresh, BPF_NOEXIST);
		add(2, err); /* 0, or -E2BIG when full */
		return err ? XDP_DROP : XDP_PASS;
	}
	if (b->tokens == 0) {
		b->drops++;
		return XDP_DROP;
	}
	fresh.tokens = b->tokens - 1;
	fresh.drops = b->drops;
	err = bpf_map_update_elem(&buckets, &src, &fresh, BPF_EXIST);
	add(1, err);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
