/* reject: a packet byte indexes a 16-byte stack array without a bound. */
#include "vprog.h"

SEC("xdp")
int stack_index(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	volatile __u8 buf[16] = {};

	if ((void *)(data + 1) > end)
		return XDP_DROP;
	buf[data[0]] = 1;
	return buf[3];
}
