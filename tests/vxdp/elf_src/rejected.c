// Compiles, but the kernel verifier refuses it: packet read without a bounds check.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int unchecked(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;
	return data[20] == 0x45 ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
