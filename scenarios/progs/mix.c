/* mix.c: a program whose verdicts follow from the packet alone, counted per action.
 * IPv4 UDP to an odd port: DROP.  IPv4 TCP: the MAC addresses swapped, XDP_TX (a
 * reflector).  Everything else: PASS.  `actions` counts the frames of each XDP action
 * (key: the action), for the guest to read over its control queue. */
#include "parse.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, __u64);
} actions SEC(".maps");

static __always_inline int verdict(struct xdp_md *ctx)
{
	struct iphdr *ip = ipv4_of(ctx);
	struct udphdr *udp;

	if (!ip)
		return XDP_PASS;
	if (ip->protocol == IPPROTO_TCP) {
		struct ethhdr *eth = (void *)(long)ctx->data;
		unsigned char tmp[ETH_ALEN];

		__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
		__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
		__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
		return XDP_TX;
	}
	udp = udp_of(ctx, ip);
	if (udp && (bpf_ntohs(udp->dest) & 1))
		return XDP_DROP;
	return XDP_PASS;
}

SEC("xdp")
int xdp_mix(struct xdp_md *ctx)
{
	__u32 action = verdict(ctx);
	__u64 *count = bpf_map_lookup_elem(&actions, &action);

	if (count)
		__sync_fetch_and_add(count, 1);
	return action;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
