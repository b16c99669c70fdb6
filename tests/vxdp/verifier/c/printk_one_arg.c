/* accept: bpf_printk with a bare format: clang leaves R3-R5 unset, and the kernel checks
 * only the format and its size (bpf_trace_printk_proto has no argument 3-5 types). */
#include "vprog.h"

SEC("xdp")
int printk_one_arg(struct xdp_md *ctx)
{
	bpf_printk("xdp packet");
	return XDP_PASS;
}
