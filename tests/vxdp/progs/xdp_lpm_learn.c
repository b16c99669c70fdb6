/* xdp_lpm_learn.c: an LPM trie written by the program itself.
 * Exercises: LPM_TRIE update and delete from BPF (learning each source /24, forgetting
 * it on TCP RST), lookups whose key prefix length is shorter than the stored prefixes
 * (/16 lookups must not match /24 entries), a /32 lookup finding the /24, the -ENOENT
 * of deleting an unknown prefix and the -ENOSPC of a full trie (16 entries).
 */
#include "common.h"

struct lpm_key {
	__u32 prefixlen;
	__be32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u64);
} learned SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, __s64);
} learn_stats SEC(".maps"); /* hits /32, hits /16, update errors, delete errors, learned */

static __always_inline void add(__u32 idx, __s64 v)
{
	__s64 *p = bpf_map_lookup_elem(&learn_stats, &idx);

	if (p)
		*p += v;
}

SEC("xdp")
int xdp_lpm_learn(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct lpm_key k;
	__u64 one = 1, *v;
	long err;
	int proto;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	proto = parse_ipv4(&c, &iph);
	if (proto < 0)
		return XDP_DROP;

	k.prefixlen = 16;
	k.addr = iph->saddr;
	if (bpf_map_lookup_elem(&learned, &k))
		add(1, 1);
	k.prefixlen = 32;
	v = bpf_map_lookup_elem(&learned, &k);
	if (v) {
		add(0, 1);
		*v += 1;
	}

	k.prefixlen = 24;
	k.addr = iph->saddr & bpf_htonl(0xffffff00);
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = parse_tcp(&c);

		if (tcp && tcp->rst) {
			err = bpf_map_delete_elem(&learned, &k);
			add(3, err);
			return XDP_DROP;
		}
	}
	if (!v) {
		err = bpf_map_update_elem(&learned, &k, &one, BPF_NOEXIST);
		if (err)
			add(2, err);
		else
			add(4, 1);
	}
	return v ? XDP_PASS : XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
