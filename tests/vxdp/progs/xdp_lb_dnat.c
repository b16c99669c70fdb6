/* xdp_lb_dnat.c: an L4 load balancer that rewrites the destination (DNAT) and reflects.
 * Exercises: a HASH of virtual services (VIP, port, proto) -> backend set, backend choice
 * by flow hash modulo the set size (BPF_MOD by a map value), an ARRAY of backends,
 * rewriting daddr and dport with RFC 1624 incremental updates of the IPv4 header checksum
 * and the UDP/TCP checksum (pseudo-header included; a zero UDP checksum stays zero),
 * MAC rewrite to the backend's address and XDP_TX.
 */
#include "common.h"

struct vip_key {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct vip_info {
	__u32 first;  /* index of the first backend in `backends` */
	__u32 count;  /* how many follow */
};

struct backend {
	__be32 addr;
	__be16 port;
	__u8 mac[ETH_ALEN];
	__u64 packets;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32);
	__type(key, struct vip_key);
	__type(value, struct vip_info);
} vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

SEC("xdp")
int xdp_lb_dnat(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct flow_key fk;
	struct vip_key vk = {};
	struct vip_info *vip;
	struct backend *be;
	__sum16 *l4sum;
	__be16 *dport;
	__u32 idx;
	int proto;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	proto = parse_ipv4(&c, &iph);
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return XDP_PASS;
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = c.pos;

		if ((void *)(tcp + 1) > c.end)
			return XDP_DROP;
		l4sum = &tcp->check;
		dport = &tcp->dest;
	} else {
		struct udphdr *udp = c.pos;

		if ((void *)(udp + 1) > c.end)
			return XDP_DROP;
		l4sum = &udp->check;
		dport = &udp->dest;
	}
	if (flow_of(&c, iph, proto, &fk))
		return XDP_DROP;

	vk.addr = iph->daddr;
	vk.port = *dport;
	vk.proto = proto;
	vip = bpf_map_lookup_elem(&vips, &vk);
	if (!vip)
		return XDP_PASS;
	if (vip->count == 0)
		return XDP_DROP;
	idx = vip->first + flow_hash(&fk) % vip->count;
	be = bpf_map_lookup_elem(&backends, &idx);
	if (!be)
		return XDP_ABORTED;
	be->packets++;

	if (proto == IPPROTO_TCP || *l4sum) {
		csum_replace4(l4sum, iph->daddr, be->addr);
		csum_replace2(l4sum, *dport, be->port);
		if (proto == IPPROTO_UDP && *l4sum == 0)
			*l4sum = 0xffff;
	}
	csum_replace4(&iph->check, iph->daddr, be->addr);
	iph->daddr = be->addr;
	*dport = be->port;

	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, be->mac, ETH_ALEN);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
