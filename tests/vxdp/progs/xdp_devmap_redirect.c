/* xdp_devmap_redirect.c: L2 forwarding to other ports through a DEVMAP.
 * Exercises: bpf_redirect_map on a DEVMAP and a DEVMAP_HASH (sparse port ids, its value
 * also read with bpf_map_lookup_elem) with a key from a MAC table (HASH), the
 * fallback action in the flags' low bits when the slot is empty (XDP_PASS or XDP_DROP
 * by ethertype), bpf_redirect to a fixed ifindex for broadcast, and XDP_REDIRECT as the
 * program's return value; the per-port counter records which path was taken.
 */
#include "common.h"

struct mac_key {
	__u8 addr[ETH_ALEN];
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports_by_id SEC(".maps"); /* sparse port ids (>= 1000) */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct mac_key);
	__type(value, __u32);
} fdb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 10);
	__type(key, __u32);
	__type(value, __u64);
} port_tx SEC(".maps"); /* 0..7 by port, 8 flood, 9 fallback result sum */

static __always_inline void bump(__u32 idx, __u64 by)
{
	__u64 *v = bpf_map_lookup_elem(&port_tx, &idx);

	if (v)
		*v += by;
}

SEC("xdp")
int xdp_l2_fwd(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct mac_key key = {};
	__u32 *port;
	__u64 fallback;
	long ret;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_dest[0] & 1) {
		bump(8, 1);
		return bpf_redirect(1, 0); /* flood via ifindex 1 */
	}
	__builtin_memcpy(key.addr, eth->h_dest, ETH_ALEN);
	port = bpf_map_lookup_elem(&fdb, &key);
	if (!port)
		return XDP_PASS;
	fallback = eth->h_proto == bpf_htons(ETH_P_IP) ? XDP_PASS : XDP_DROP;
	if (*port >= 1000) {
		__u32 id = *port, *ifindex = bpf_map_lookup_elem(&tx_ports_by_id, &id);

		bump(9, ifindex ? *ifindex * 1000 : 0); /* devmap values are readable */
		ret = bpf_redirect_map(&tx_ports_by_id, id, fallback);
	} else {
		ret = bpf_redirect_map(&tx_ports, *port, fallback);
	}
	bump(*port & 7, 1);
	bump(9, ret);
	return ret;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
