// For `vxdp exec` tests: IPv4 frames are sent back with their MACs swapped (XDP_TX),
// ethertypes listed in `blocked` are dropped, everything else passes; `actions` counts.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u16);   /* ethertype, network order */
	__type(value, __u32);
} blocked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);   /* enum xdp_action */
	__type(value, __u64);
} actions SEC(".maps");

SEC("xdp")
int swap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 tmp[ETH_ALEN];
	__u32 act;
	__u16 proto;

	if (data + sizeof(*eth) > data_end)
		return XDP_ABORTED;
	proto = eth->h_proto;
	if (bpf_map_lookup_elem(&blocked, &proto)) {
		act = XDP_DROP;
	} else if (proto == bpf_htons(ETH_P_IP)) {
		__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
		__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
		__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
		act = XDP_TX;
	} else {
		act = XDP_PASS;
	}
	__u64 *n = bpf_map_lookup_elem(&actions, &act);
	if (n)
		*n += 1;
	return act;
}

char _license[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
