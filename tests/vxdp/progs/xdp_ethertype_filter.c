/* xdp_ethertype_filter.c: an allow-list firewall on the ethertype, with runt handling.
 * Exercises: ctx->data/data_end loads, bounds checks, 16-bit byte-swapped compares, a
 * switch lowered to a jump chain, ctx->ingress_ifindex and ctx->rx_queue_index reads,
 * and returning XDP_ABORTED for frames too short for an Ethernet header.
 */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} verdicts SEC(".maps");

SEC("xdp")
int xdp_ethertype_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 action;
	__u64 *cnt;

	if ((void *)(eth + 1) > data_end) {
		action = XDP_ABORTED;
		goto out;
	}
	switch (bpf_ntohs(eth->h_proto)) {
	case ETH_P_IP:
	case ETH_P_IPV6:
	case ETH_P_ARP:
		action = XDP_PASS;
		break;
	case ETH_P_8021Q:
		/* tagged frames only on queue 0 of ifindex 1 */
		action = (ctx->ingress_ifindex == 1 && ctx->rx_queue_index == 0) ? XDP_PASS : XDP_DROP;
		break;
	default:
		action = XDP_DROP;
	}
	if (data_end - data < 60)
		action = XDP_DROP;
out:
	cnt = bpf_map_lookup_elem(&verdicts, &action);
	if (cnt)
		*cnt += 1;
	return action;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
