/* xdp_lru_evict.c: a flow cache smaller than the traffic, so the LRU must evict.
 * Exercises: LRU_HASH (32 entries) inserts past capacity that never fail, eviction of
 * entries not recently used (lookups set the reference bit that protects an entry),
 * BPF_EXIST updates of surviving entries, and a miss counter; the surviving keys after
 * the run are compared with the kernel's.
 */
#include "common.h"

struct flow4 {
	__be32 saddr;
	__be16 sport;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32);
	__type(key, struct flow4);
	__type(value, __u64);
} cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __s64);
} cache_stats SEC(".maps"); /* hits, misses, insert errors */

static __always_inline void add(__u32 idx, __s64 v)
{
	__s64 *p = bpf_map_lookup_elem(&cache_stats, &idx);

	if (p)
		*p += v;
}

SEC("xdp")
int xdp_lru_evict(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct flow4 k = {};
	__be16 *ports;
	__u64 *v, one = 1;
	long err;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (parse_ipv4(&c, &iph) < 0)
		return XDP_DROP;
	ports = c.pos;
	if ((void *)(ports + 2) > c.end)
		return XDP_DROP;
	k.saddr = iph->saddr;
	k.sport = ports[0];
	v = bpf_map_lookup_elem(&cache, &k);
	if (v) {
		add(0, 1);
		one = *v + 1;
		err = bpf_map_update_elem(&cache, &k, &one, BPF_EXIST);
		if (err)
			add(2, err);
		return XDP_PASS;
	}
	add(1, 1);
	err = bpf_map_update_elem(&cache, &k, &one, BPF_NOEXIST);
	if (err)
		add(2, err);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
