// An extern kernel function (kfunc): not supported by vxdp.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern int bpf_some_kfunc(struct xdp_md *ctx) __ksym;

SEC("xdp")
int uses_kfunc(struct xdp_md *ctx)
{
	return bpf_some_kfunc(ctx);
}

char _license[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
