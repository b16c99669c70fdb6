/* xdp_adjust_tail.c: truncate samples and append trailers at the end of the packet.
 * Exercises: bpf_xdp_adjust_tail with a negative delta (truncate to a snap length held in
 * .data, for UDP port 9) and a positive delta (append an 8-byte trailer carrying a
 * sequence number for UDP port 7; the grown bytes must arrive zeroed before the program
 * writes them), fixing IPv4 tot_len, UDP len and the IPv4 checksum, clearing the UDP
 * checksum, and the helper's -EINVAL when shrinking below the Ethernet header.
 */
#include "common.h"

__u32 snap_len = 96;
__u64 trailer_seq;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} tail_errors SEC(".maps");

SEC("xdp")
int xdp_adjust_tail(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct udphdr *udp;
	__u32 len = ctx->data_end - ctx->data, zero = 0;
	__u32 l3off, want;
	__u64 *tr;
	__s64 *err;
	__be16 dport;
	long ret;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (parse_ipv4(&c, &iph) != IPPROTO_UDP)
		return XDP_PASS;
	udp = parse_udp(&c);
	if (!udp)
		return XDP_DROP;
	dport = udp->dest;
	l3off = (void *)iph - (void *)eth;

	if (dport == bpf_htons(9)) {
		want = snap_len;
		if (len <= want)
			return XDP_PASS;
		ret = bpf_xdp_adjust_tail(ctx, (int)want - (int)len);
		len = want;
	} else if (dport == bpf_htons(7)) {
		ret = bpf_xdp_adjust_tail(ctx, 8);
		len += 8;
	} else if (dport == bpf_htons(13)) {
		ret = bpf_xdp_adjust_tail(ctx, -(int)len + 4); /* must be refused */
		err = bpf_map_lookup_elem(&tail_errors, &zero);
		if (err)
			*err += ret;
		return XDP_PASS;
	} else {
		return XDP_PASS;
	}
	if (ret)
		return XDP_ABORTED;

	/* packet pointers are stale after the helper: parse again */
	c.pos = (void *)(long)ctx->data;
	c.end = (void *)(long)ctx->data_end;
	if (l3off > 22)
		return XDP_ABORTED;
	iph = c.pos + l3off;
	if ((void *)(iph + 1) > c.end)
		return XDP_ABORTED;
	if (dport == bpf_htons(7)) {
		__u32 off = len - 8;

		if (off > 4000)
			return XDP_ABORTED;
		tr = c.pos + off;
		if ((void *)(tr + 1) > c.end)
			return XDP_ABORTED;
		if (*tr != 0)
			return XDP_ABORTED; /* grown bytes must be zero */
		*tr = bpf_cpu_to_be64(++trailer_seq);
	}
	iph->tot_len = bpf_htons(len - l3off);
	if (iph->ihl == 5) {
		iph->check = 0;
		iph->check = ipv4_csum20(iph);
	}
	udp = (void *)iph + iph->ihl * 4;
	if ((void *)(udp + 1) > c.end)
		return XDP_PASS;
	udp->len = bpf_htons(len - l3off - iph->ihl * 4);
	udp->check = 0;
	return dport == bpf_htons(7) ? XDP_TX : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
