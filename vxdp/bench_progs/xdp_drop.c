/* xdp_drop.c: the smallest useful XDP program, drop everything.
 * Exercises: program entry and exit, the fixed per-packet cost (bench workload "drop").
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_drop_all(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
