/* common.h: parsing cursors and checksum arithmetic shared by the vxdp differential corpus.
 *
 * Everything here is __always_inline so each program stays one function unless it asks
 * for bpf-to-bpf calls on purpose (xdp_subprog.c).  Checksums are RFC 1071 ones' complement
 * sums; incremental updates follow RFC 1624 (HC' = ~(~HC + ~m + m')).
 */
#pragma once

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

#define MAX_VLANS 2

/* ICMP and ICMPv6 echo share this layout (linux/icmp.h drags in libc headers). */
struct icmp_echo {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 seq;
};

#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

/* A parse position that only ever moves forward and never past the end. */
struct cursor {
	void *pos;
	void *end;
};

static __always_inline void cursor_init(struct cursor *c, struct xdp_md *ctx)
{
	c->pos = (void *)(long)ctx->data;
	c->end = (void *)(long)ctx->data_end;
}

static __always_inline int is_vlan(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

/* Ethernet plus up to MAX_VLANS tags; returns the inner ethertype (network order) or -1. */
static __always_inline int parse_eth(struct cursor *c, struct ethhdr **ethp, __u16 *vid)
{
	struct ethhdr *eth = c->pos;
	__be16 proto;

	if ((void *)(eth + 1) > c->end)
		return -1;
	c->pos = eth + 1;
	*ethp = eth;
	proto = eth->h_proto;
	if (vid)
		*vid = 0;
#pragma unroll
	for (int i = 0; i < MAX_VLANS; i++) {
		struct vlan_hdr *vh = c->pos;

		if (!is_vlan(proto))
			break;
		if ((void *)(vh + 1) > c->end)
			return -1;
		if (vid && i == 0)
			*vid = bpf_ntohs(vh->tci) & 0x0fff;
		proto = vh->encap_proto;
		c->pos = vh + 1;
	}
	return proto;
}

/* IPv4 header with options; returns the protocol or -1. */
static __always_inline int parse_ipv4(struct cursor *c, struct iphdr **iphp)
{
	struct iphdr *iph = c->pos;
	__u32 hlen;

	if ((void *)(iph + 1) > c->end)
		return -1;
	if (iph->version != 4 || iph->ihl < 5)
		return -1;
	hlen = iph->ihl * 4;
	if (c->pos + hlen > c->end)
		return -1;
	c->pos += hlen;
	*iphp = iph;
	return iph->protocol;
}

static __always_inline int parse_ipv6(struct cursor *c, struct ipv6hdr **ip6p)
{
	struct ipv6hdr *ip6 = c->pos;

	if ((void *)(ip6 + 1) > c->end)
		return -1;
	if (ip6->version != 6)
		return -1;
	c->pos = ip6 + 1;
	*ip6p = ip6;
	return ip6->nexthdr;
}

static __always_inline struct udphdr *parse_udp(struct cursor *c)
{
	struct udphdr *udp = c->pos;

	if ((void *)(udp + 1) > c->end)
		return 0;
	c->pos = udp + 1;
	return udp;
}

static __always_inline struct tcphdr *parse_tcp(struct cursor *c)
{
	struct tcphdr *tcp = c->pos;
	__u32 hlen;

	if ((void *)(tcp + 1) > c->end)
		return 0;
	hlen = tcp->doff * 4;
	if (hlen < sizeof(*tcp) || c->pos + hlen > c->end)
		return 0;
	c->pos += hlen;
	return tcp;
}

static __always_inline __u16 csum_fold(__u32 csum)
{
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	return (__u16)~csum;
}

/* RFC 1624 eqn. 3 for a 16-bit field changing from old to new (all network order). */
static __always_inline void csum_replace2(__sum16 *sum, __be16 old, __be16 new)
{
	__u32 c = (__u16)~*sum;

	c += (__u16)~old;
	c += new;
	*sum = csum_fold(c);
}

static __always_inline void csum_replace4(__sum16 *sum, __be32 old, __be32 new)
{
	__u32 c = (__u16)~*sum;

	c += (__u16)~(old & 0xffff);
	c += (__u16)~(old >> 16);
	c += new & 0xffff;
	c += new >> 16;
	*sum = csum_fold(c);
}

/* Full checksum of a 20-byte IPv4 header (no options), check field included as zero. */
static __always_inline __u16 ipv4_csum20(struct iphdr *iph)
{
	__u16 *w = (__u16 *)iph;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		if (i != 5)
			sum += w[i];
	return csum_fold(sum);
}

static __always_inline void swap_macs(struct ethhdr *eth)
{
	__u8 tmp[ETH_ALEN];

	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
}

struct flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* The IPv4 5-tuple of a TCP or UDP packet; returns 0 on success. */
static __always_inline int flow_of(struct cursor *c, struct iphdr *iph, int proto,
				   struct flow_key *key)
{
	__builtin_memset(key, 0, sizeof(*key));
	key->saddr = iph->saddr;
	key->daddr = iph->daddr;
	key->proto = proto;
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = parse_tcp(c);

		if (!tcp)
			return -1;
		key->sport = tcp->source;
		key->dport = tcp->dest;
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *udp = parse_udp(c);

		if (!udp)
			return -1;
		key->sport = udp->source;
		key->dport = udp->dest;
	}
	return 0;
}

/* A multiplicative mixing hash (no jhash: keep the corpus self-contained). */
static __always_inline __u32 flow_hash(const struct flow_key *k)
{
	__u32 h = 0x9e3779b9;

	h ^= k->saddr;
	h *= 0x85ebca6b;
	h ^= k->daddr;
	h *= 0xc2b2ae35;
	h ^= ((__u32)k->sport << 16) | k->dport;
	h *= 0x27d4eb2f;
	h ^= k->proto;
	h ^= h >> 15;
	return h;
}
