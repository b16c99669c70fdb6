/* accept: bpf_fib_lookup on a stack struct, then bpf_perf_event_output of a tag and the
 * Ethernet header into a PERF_EVENT_ARRAY (libbpf sizes it to the CPUs). */
#include "vprog.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

SEC("xdp")
int perf_fib_ok(struct xdp_md *ctx)
{
	struct bpf_fib_lookup p = {};
	__u64 tag = 0x1122334455667788ull;
	long rc;

	p.family = 2;
	p.ifindex = ctx->ingress_ifindex;
	rc = bpf_fib_lookup(ctx, &p, sizeof(p), 0);
	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU | (14ull << 32), &tag, sizeof(tag));
	return rc == BPF_FIB_LKUP_RET_FWD_DISABLED ? XDP_PASS : XDP_DROP;
}
