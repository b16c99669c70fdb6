/* accept: a bounded loop over up to 32 packet bytes, each checked against data_end. */
#include "vprog.h"

SEC("xdp")
int loop_ok(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 sum = 0;

	for (int i = 0; i < 32; i++) {
		if ((void *)(data + i + 1) > end)
			break;
		sum += data[i];
	}
	return sum & 1 ? XDP_PASS : XDP_DROP;
}
