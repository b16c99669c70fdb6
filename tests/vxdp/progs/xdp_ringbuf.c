/* xdp_ringbuf.c: packet sampling into a BPF ring buffer.
 * Exercises: RINGBUF (4 KiB, so it fills up within a test run since nobody consumes),
 * bpf_ringbuf_output of the first 64 bytes, bpf_ringbuf_reserve / submit of a fixed
 * record and reserve / discard for uninteresting packets, both helpers' failures once
 * the ring is full (-EAGAIN, NULL) counted in an ARRAY; the ring's contents are not
 * compared, the counters are.
 */
#include "common.h"

struct sample {
	__u32 len;
	__u32 ifindex;
	__u8 head[64];
};

struct event {
	__u32 kind;
	__u32 len;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 6);
	__type(key, __u32);
	__type(value, __s64);
} rb_stats SEC(".maps"); /* output ok, output err sum, reserved, reserve failed, discarded, submitted */

static __always_inline void add(__u32 idx, __s64 v)
{
	__s64 *p = bpf_map_lookup_elem(&rb_stats, &idx);

	if (p)
		*p += v;
}

SEC("xdp")
int xdp_sample(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct sample s = {};
	struct event *e;
	__u32 len = data_end - data;
	long err;

	s.len = len;
	s.ifindex = ctx->ingress_ifindex;
	if (data + sizeof(s.head) <= data_end)
		__builtin_memcpy(s.head, data, sizeof(s.head));
	err = bpf_ringbuf_output(&samples, &s, sizeof(s), 0);
	if (err)
		add(1, err);
	else
		add(0, 1);

	e = bpf_ringbuf_reserve(&samples, sizeof(*e), 0);
	if (!e) {
		add(3, 1);
		return XDP_PASS;
	}
	add(2, 1);
	e->kind = 1;
	e->len = len;
	if (len < 100) {
		bpf_ringbuf_discard(e, 0);
		add(4, 1);
	} else {
		bpf_ringbuf_submit(e, 0);
		add(5, 1);
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
