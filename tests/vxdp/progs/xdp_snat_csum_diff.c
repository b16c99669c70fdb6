/* xdp_snat_csum_diff.c: source NAT whose checksums are fixed with bpf_csum_diff.
 * Exercises: bpf_csum_diff with from and to buffers on the stack (4 and 8 bytes) and with
 * a zero-length `from` (a pure sum), the returned 32-bit partial sum folded by the program,
 * recomputing a whole IPv4 header checksum (options included) with csum_diff over the
 * packet, a NAT table in a HASH, and verifying the received header checksum first.
 */
#include "common.h"

struct nat_entry {
	__be32 new_saddr;
	__be16 new_sport;
	__u16 pad;
	__u64 translated;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __be32);
	__type(value, struct nat_entry);
} snat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} nat_stats SEC(".maps");

SEC("xdp")
int xdp_snat(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct nat_entry *nat;
	struct udphdr *udp;
	__u32 hlen, key;
	__u64 *bad;
	__s64 sum;
	__be32 from[2], to[2];

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (parse_ipv4(&c, &iph) != IPPROTO_UDP)
		return XDP_PASS;
	hlen = iph->ihl * 4;
	if (hlen > 60 || (void *)iph + 60 > c.end)
		return XDP_PASS; /* csum_diff needs a constant-bounded size */
	hlen &= 0x3c;
	sum = bpf_csum_diff(0, 0, (__be32 *)iph, hlen, 0);
	if (sum < 0 || csum_fold(sum) != 0) {
		key = 0;
		bad = bpf_map_lookup_elem(&nat_stats, &key);
		if (bad)
			*bad += 1;
		return XDP_DROP;
	}
	udp = parse_udp(&c);
	if (!udp)
		return XDP_DROP;
	nat = bpf_map_lookup_elem(&snat, &iph->saddr);
	if (!nat)
		return XDP_PASS;

	from[0] = iph->saddr;
	to[0] = nat->new_saddr;
	sum = bpf_csum_diff(from, 4, to, 4, (__u16)~iph->check);
	if (sum < 0)
		return XDP_ABORTED;
	iph->check = csum_fold(sum);
	if (udp->check) {
		from[1] = udp->source;
		to[1] = nat->new_sport;
		sum = bpf_csum_diff(from, 8, to, 8, (__u16)~udp->check);
		if (sum < 0)
			return XDP_ABORTED;
		udp->check = csum_fold(sum) ?: 0xffff;
	}
	iph->saddr = nat->new_saddr;
	udp->source = nat->new_sport;
	nat->translated++;
	key = 1;
	bad = bpf_map_lookup_elem(&nat_stats, &key);
	if (bad)
		*bad += 1; /* slot 1: translated packets */
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
