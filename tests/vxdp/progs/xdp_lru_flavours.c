/* xdp_lru_flavours.c: the other two LRU flavours under eviction pressure.
 * Exercises: LRU_HASH with BPF_F_NO_COMMON_LRU (per-CPU LRU lists, 48 entries) and
 * LRU_PERCPU_HASH (40 entries) as flow caches smaller than the traffic: lookups that set
 * the reference bit, inserts past capacity that never fail, and in-place updates of the
 * survivors; the surviving keys and per-CPU values are compared with the kernel's.
 */
#include "common.h"

struct flow4 {
	__be32 saddr;
	__be16 sport;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 48);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct flow4);
	__type(value, __u64);
} cache_local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 40);
	__type(key, struct flow4);
	__type(value, __u32);
} cache_percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __s64);
} flavour_stats SEC(".maps"); /* hits, insert error sum */

static __always_inline void add(__u32 idx, __s64 v)
{
	__s64 *p = bpf_map_lookup_elem(&flavour_stats, &idx);

	if (p)
		*p += v;
}

SEC("xdp")
int xdp_lru_flavours(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct flow4 k = {};
	__be16 *ports;
	__u64 *v, one = 1;
	__u32 *pc, init = 1;
	int hits = 0;

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

	v = bpf_map_lookup_elem(&cache_local, &k);
	if (v) {
		*v += 1;
		hits++;
	} else {
		add(1, bpf_map_update_elem(&cache_local, &k, &one, BPF_NOEXIST));
	}
	pc = bpf_map_lookup_elem(&cache_percpu, &k);
	if (pc) {
		*pc += 1;
		hits++;
	} else {
		add(1, bpf_map_update_elem(&cache_percpu, &k, &init, BPF_NOEXIST));
	}
	add(0, hits);
	return hits == 2 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
