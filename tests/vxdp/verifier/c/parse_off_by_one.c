/* reject: checks 14 bytes, reads the 15th. */
#include "vprog.h"

SEC("xdp")
int parse_off_by_one(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	if ((void *)(data + 14) > end)
		return XDP_DROP;
	return data[14] ? XDP_PASS : XDP_DROP;
}
