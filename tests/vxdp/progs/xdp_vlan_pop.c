/* xdp_vlan_pop.c: strip the outer 802.1Q tag of allowed VLANs, count every VLAN seen.
 * Exercises: VLAN/QinQ parsing, a HASH keyed by VLAN id updated from the program
 * (lookup-or-insert with BPF_NOEXIST), an ARRAY as a VLAN allow-list, moving the MAC
 * addresses forward and shrinking the head with bpf_xdp_adjust_head(+4).
 */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u64);
} vlan_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} vlan_strip SEC(".maps");

SEC("xdp")
int xdp_vlan_pop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct vlan_hdr *vh;
	struct ethhdr saved;
	__u64 one = 1, *cnt;
	__u32 vid32;
	__u16 vid;
	__u8 *strip;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (!is_vlan(eth->h_proto))
		return XDP_PASS;
	vh = (void *)(eth + 1);
	if ((void *)(vh + 1) > data_end)
		return XDP_DROP;
	vid = bpf_ntohs(vh->tci) & 0x0fff;
	cnt = bpf_map_lookup_elem(&vlan_seen, &vid);
	if (cnt)
		__sync_fetch_and_add(cnt, 1);
	else if (bpf_map_update_elem(&vlan_seen, &vid, &one, BPF_NOEXIST))
		return XDP_ABORTED; /* table full */

	vid32 = vid;
	strip = bpf_map_lookup_elem(&vlan_strip, &vid32);
	if (!strip || !*strip)
		return XDP_PASS;

	__builtin_memcpy(&saved, eth, sizeof(saved));
	saved.h_proto = vh->encap_proto;
	if (bpf_xdp_adjust_head(ctx, (int)sizeof(struct vlan_hdr)))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(eth, &saved, sizeof(saved));
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
