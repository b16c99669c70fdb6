/* icmp_guard.c: the host operator's policy: no ICMP reaches any guest.  Attached on the
 * host (host-attached), it runs before what a guest offloads. */
#include "parse.h"

SEC("xdp")
int xdp_icmp_guard(struct xdp_md *ctx)
{
	struct iphdr *ip = ipv4_of(ctx);

	return ip && ip->protocol == IPPROTO_ICMP ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
