/* xdp_load_store_bytes.c: header rewriting through bpf_xdp_load_bytes/store_bytes.
 * Exercises: copying the Ethernet and IPv4 headers to the stack (two calls) with
 * bpf_xdp_load_bytes, editing the copy (MAC swap, TTL decrement, checksum recomputed in
 * full), writing it back with bpf_xdp_store_bytes, both helpers' -EINVAL for a range
 * past the end of the packet (summed into a map), and offsets derived from
 * bpf_xdp_get_buff_len.
 */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __s64);
} lsb_results SEC(".maps"); /* 0: load errors, 1: store errors, 2: rewritten */

static __always_inline void add(__u32 idx, __s64 v)
{
	__s64 *p = bpf_map_lookup_elem(&lsb_results, &idx);

	if (p)
		*p += v;
}

SEC("xdp")
int xdp_load_store(struct xdp_md *ctx)
{
	struct ethhdr eth;
	struct iphdr ip;
	__u8 tail[16];
	__u32 len = bpf_xdp_get_buff_len(ctx);
	long err;

	err = bpf_xdp_load_bytes(ctx, 0, &eth, sizeof(eth));
	if (!err)
		err = bpf_xdp_load_bytes(ctx, sizeof(eth), &ip, sizeof(ip));
	if (err) {
		add(0, err);
		return XDP_PASS;
	}
	if (eth.h_proto != bpf_htons(ETH_P_IP) || ip.version != 4 || ip.ihl != 5)
		return XDP_PASS;
	if (ip.ttl <= 1)
		return XDP_DROP;

	/* probe past the end: offset len - 8 with 16 bytes must fail */
	err = bpf_xdp_load_bytes(ctx, len - 8, tail, sizeof(tail));
	add(0, err);
	err = bpf_xdp_store_bytes(ctx, len - 8, tail, sizeof(tail));
	add(1, err);
	/* the last 16 bytes are fine: reverse them in place */
	if (len >= 64) {
		__u8 rev[16];

		if (bpf_xdp_load_bytes(ctx, len - 16, tail, sizeof(tail)) == 0) {
			for (int i = 0; i < 16; i++)
				rev[i] = tail[15 - i];
			add(1, bpf_xdp_store_bytes(ctx, len - 16, rev, sizeof(rev)));
		}
	}

	swap_macs(&eth);
	ip.ttl--;
	ip.check = 0;
	ip.check = ipv4_csum20(&ip);
	err = bpf_xdp_store_bytes(ctx, 0, &eth, sizeof(eth));
	if (!err)
		err = bpf_xdp_store_bytes(ctx, sizeof(eth), &ip, sizeof(ip));
	if (err) {
		add(1, err);
		return XDP_ABORTED;
	}
	add(2, 1);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
