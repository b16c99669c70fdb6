/* xdp_ipv6_exthdr.c: walk IPv6 extension headers to the upper-layer protocol.
 * Exercises: a bounded loop (at most 8 headers) with a bounds check per iteration,
 * variable header lengths ((hdrlen + 1) * 8, fragment header fixed 8), dropping
 * non-first fragments, and a per-protocol ARRAY of counters indexed by the result.
 */
#include "common.h"

#define MAX_EXT 8
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60
#define NEXTHDR_NONE 59

struct ext_hdr {
	__u8 nexthdr;
	__u8 hdrlen;
	__be16 frag_off; /* fragment header only */
	__be32 id;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} l4_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} max_depth SEC(".maps");

SEC("xdp")
int xdp_ipv6_exthdr(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	__u32 nh, depth = 0, zero = 0, *deepest;
	__u64 *cnt;
	int i;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IPV6))
		return XDP_PASS;
	nh = parse_ipv6(&c, &ip6);
	if ((int)nh < 0)
		return XDP_DROP;

	for (i = 0; i < MAX_EXT; i++) {
		struct ext_hdr *eh = c.pos;

		if (nh != NEXTHDR_HOP && nh != NEXTHDR_ROUTING && nh != NEXTHDR_FRAGMENT &&
		    nh != NEXTHDR_AUTH && nh != NEXTHDR_DEST)
			break;
		if ((void *)(eh + 1) > c.end)
			return XDP_DROP;
		if (nh == NEXTHDR_FRAGMENT) {
			if (bpf_ntohs(eh->frag_off) & 0xfff8)
				return XDP_DROP; /* not the first fragment: no L4 header */
			c.pos += 8;
		} else if (nh == NEXTHDR_AUTH) {
			c.pos += (eh->hdrlen + 2) * 4;
		} else {
			c.pos += (eh->hdrlen + 1) * 8;
		}
		nh = eh->nexthdr;
		depth++;
	}
	if (i == MAX_EXT)
		return XDP_DROP; /* too deep to trust */

	deepest = bpf_map_lookup_elem(&max_depth, &zero);
	if (deepest && depth > *deepest)
		*deepest = depth;
	cnt = bpf_map_lookup_elem(&l4_seen, &nh);
	if (cnt)
		*cnt += 1;
	return nh == NEXTHDR_NONE ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
