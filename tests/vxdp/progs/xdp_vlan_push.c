/* xdp_vlan_push.c: tag untagged frames with a VLAN chosen by their source MAC.
 * Exercises: growing the head with bpf_xdp_adjust_head(-4), re-deriving packet pointers
 * after the helper, a HASH keyed by a 6-byte MAC (padded to 8), a default from .rodata,
 * and reflecting tagged frames back with XDP_TX after swapping MACs.
 */
#include "common.h"

struct mac_key {
	__u8 addr[ETH_ALEN];
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__type(key, struct mac_key);
	__type(value, __u16);
} mac_vlan SEC(".maps");

const volatile __u16 default_vid = 100;

SEC("xdp")
int xdp_vlan_push(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ethhdr orig;
	struct vlan_hdr *vh;
	struct mac_key key = {};
	__u16 *vidp, vid;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (is_vlan(eth->h_proto)) {
		swap_macs(eth);
		return XDP_TX;
	}
	__builtin_memcpy(key.addr, eth->h_source, ETH_ALEN);
	vidp = bpf_map_lookup_elem(&mac_vlan, &key);
	vid = vidp ? *vidp : default_vid;
	if (vid == 0)
		return XDP_PASS;
	__builtin_memcpy(&orig, eth, sizeof(orig));

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct vlan_hdr)))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	vh = (void *)(eth + 1);
	if ((void *)(vh + 1) > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(eth->h_dest, orig.h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_source, orig.h_source, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_8021Q);
	vh->tci = bpf_htons(vid & 0x0fff);
	vh->encap_proto = orig.h_proto;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
