/* xdp_subprog.c: the same classifier split into real BPF-to-BPF calls.
 * Exercises: __noinline static and global functions (BPF_PSEUDO_CALL), call frames
 * four deep, arguments in r1..r5 and a 64-bit return, a callee writing through a
 * pointer into its caller's stack, a callee calling a helper, and stack use per frame.
 */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} class_count SEC(".maps");

static __noinline __u64 mix(__u64 a, __u64 b, __u64 c, __u64 d, __u64 e)
{
	__u64 buf[8];

	for (int i = 0; i < 8; i++)
		buf[i] = (a + i) * (b | 1) ^ (c >> i);
	return buf[(d ^ e) & 7] + buf[e & 7];
}

static __noinline int account(__u32 cls, __u64 weight)
{
	__u64 *v = bpf_map_lookup_elem(&class_count, &cls);

	if (!v)
		return -1;
	*v += weight;
	return 0;
}

static __noinline int classify_ports(__u16 sport, __u16 dport, __u32 *cls)
{
	__u64 h = mix(sport, dport, sport ^ dport, dport >> 3, sport & 7);

	*cls = (dport < 1024 || sport < 1024) ? 0 : (h & 1) + 1;
	return account(*cls, h & 0xff) ? -1 : 0;
}

__noinline int classify(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	__be16 *ports;
	__u32 cls = 3;

	if (!ctx)
		return -1;
	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return account(3, 1) ? -1 : 3;
	if (parse_ipv4(&c, &iph) < 0)
		return -1;
	ports = c.pos;
	if ((void *)(ports + 2) > c.end)
		return -1;
	if (classify_ports(bpf_ntohs(ports[0]), bpf_ntohs(ports[1]), &cls))
		return -1;
	return cls;
}

SEC("xdp")
int xdp_subprog(struct xdp_md *ctx)
{
	int cls = classify(ctx);

	if (cls < 0)
		return XDP_ABORTED;
	return cls == 2 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
