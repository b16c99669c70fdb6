// Nested .text calls (main -> outer -> leaf, main -> other), global and static, plus
// global data in every kind of section; only section names libbpf 1.x accepts, so the
// same object can be loaded by bpftool and compared with vxdp's loader.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

__u64 calls = 1;                                       /* .data */
__u32 last_len;                                        /* .bss */
const volatile __u32 factor = 3;                       /* .rodata */
volatile __u32 tuned SEC(".data.tuning") = 9;          /* custom .data.* */
const volatile __u32 limit SEC(".rodata.limits") = 1500; /* custom .rodata.* */

static __attribute__((noinline)) __u32 leaf(__u32 x)
{
	__u32 key = x & 3;
	__u64 *h = bpf_map_lookup_elem(&hits, &key);
	if (h)
		*h += 1;
	return x * factor;
}

__attribute__((noinline)) int outer(__u32 x)
{
	calls += 1;
	return leaf(x) + 1;
}

static __attribute__((noinline)) __u32 other(__u32 x)
{
	return x ^ tuned;
}

SEC("xdp")
int nested(struct xdp_md *ctx)
{
	__u32 len = ctx->data_end - ctx->data;
	last_len = len;
	if (len > limit)
		return XDP_DROP;
	return (outer(len) + other(len)) & 1 ? XDP_PASS : XDP_TX;
}

SEC("xdp.frags")
int frags_only_other(struct xdp_md *ctx)
{
	return other(ctx->data_end - ctx->data) ? XDP_PASS : XDP_DROP;
}

char _license[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
