/* parse.h: what the scenario programs share: the Ethernet and IPv4 headers, checked
 * against data_end the way the verifier wants. */
#ifndef SCENARIO_PARSE_H
#define SCENARIO_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* The IPv4 header of an untagged IPv4 frame, or NULL. */
static __always_inline struct iphdr *ipv4_of(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return NULL;
	return ip;
}

/* The UDP header after an IPv4 header without options, or NULL. */
static __always_inline struct udphdr *udp_of(struct xdp_md *ctx, struct iphdr *ip)
{
	struct udphdr *udp = (void *)(ip + 1);

	if (ip->protocol != IPPROTO_UDP || ip->ihl != 5 ||
	    (void *)(udp + 1) > (void *)(long)ctx->data_end)
		return NULL;
	return udp;
}

#endif
