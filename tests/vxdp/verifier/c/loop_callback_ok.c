/* accept: bpf_loop with callbacks (BPF_PSEUDO_FUNC): a fixed count, and a count the
 * verifier does not know, where the callback's rounds converge on one state. */
#include "vprog.h"

struct sums {
	__u64 sum;
	__u32 seen;
	__u32 odd;
};

static long add_index(__u64 i, void *data)
{
	struct sums *s = data;

	s->sum += i;
	return s->sum > 100;
}

static long count_odd(__u64 i, void *data)
{
	struct sums *s = data;

	s->seen = 1;
	s->odd += i & 1;
	return s->odd > 10;
}

SEC("xdp")
int loop_callback_ok(struct xdp_md *ctx)
{
	struct sums s = {};
	long n = bpf_loop(10, add_index, &s, 0);

	n += bpf_loop(ctx->rx_queue_index, count_odd, &s, 0);
	return (s.sum + s.seen + n) & 3;
}
