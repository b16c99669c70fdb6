// A callback passed to bpf_loop(): a function pointer, loaded as BPF_PSEUDO_FUNC.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static int step(__u32 index, void *ctx)
{
	return 0;
}

SEC("xdp")
int loops(struct xdp_md *ctx)
{
	bpf_loop(4, step, 0, 0);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
