// A CO-RE field access (preserve_access_index): not supported by vxdp.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct md_view {
	__u32 data;
	__u32 data_end;
} __attribute__((preserve_access_index));

SEC("xdp")
int uses_core(struct xdp_md *ctx)
{
	struct md_view *v = (void *)ctx;
	return v->data_end - v->data > 100 ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
