/* datapath.c: the programs `vxdp bench` runs on the C datapath, offloaded on the host port
 * and in guest driver mode (vxdp/bench_datapath.py).
 *
 *   xdp_drop     return XDP_DROP
 *   xdp_swap_tx  swap the Ethernet addresses and return XDP_TX (a reflector)
 */
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))

SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	(void)ctx;
	return XDP_DROP;
}

SEC("xdp")
int xdp_swap_tx(struct xdp_md *ctx)
{
	unsigned short *eth = (unsigned short *)(long)ctx->data;
	unsigned char *end = (unsigned char *)(long)ctx->data_end;
	unsigned short a0, a1, a2;

	if ((unsigned char *)eth + 14 > end)
		return XDP_PASS;
	/* as samples/bpf swap_src_dst_mac(): three 16-bit words each way */
	a0 = eth[0];
	a1 = eth[1];
	a2 = eth[2];
	eth[0] = eth[3];
	eth[1] = eth[4];
	eth[2] = eth[5];
	eth[3] = a0;
	eth[4] = a1;
	eth[5] = a2;
	return XDP_TX;
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	(void)ctx;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
