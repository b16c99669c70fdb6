/* xdp_alu.c: integer semantics that engines get wrong, fed with packet bytes.
 * Exercises: 64- and 32-bit division and modulo by packet-derived divisors including
 * zero (BPF defines x/0 = 0 and x%0 = x), shifts by masked variable amounts, arithmetic
 * right shift of negative values, 32-bit wrap-around and zero extension, signed and
 * unsigned comparisons, multiplication overflow, and byte swaps; every result lands in
 * an ARRAY so a wrong bit shows.
 */
#include "common.h"

#define NRES 16

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NRES);
	__type(key, __u32);
	__type(value, __u64);
} alu_out SEC(".maps");

static __always_inline void put(__u32 idx, __u64 v)
{
	__u64 *p = bpf_map_lookup_elem(&alu_out, &idx);

	if (p)
		*p ^= v + idx; /* fold over packets: order matters, so does every bit */
}

SEC("xdp")
int xdp_alu(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 a, b;
	__u32 x, y;
	__s64 s;
	__s32 s32;
	__u8 sh;

	if (data + 48 > data_end)
		return XDP_DROP;
	a = *(__u64 *)(data + 14);
	b = *(__u8 *)(data + 40) & 0x0f; /* often zero */
	x = *(__u32 *)(data + 30);
	y = *(__u8 *)(data + 41) & 0x07;
	sh = *(__u8 *)(data + 42);

	put(0, b ? a / b : 0);
	put(1, a / (b | 0));      /* may divide by zero */
	put(2, a % (b | 0));      /* may take modulo zero */
	put(3, x / (y | 0));
	put(4, x % (y | 0));
	put(5, a << (sh & 63));
	put(6, a >> (sh & 63));
	s = (__s64)(a | 0x8000000000000000ULL);
	put(7, (__u64)(s >> (sh & 63)));
	s32 = (__s32)(x | 0x80000000U);
	put(8, (__u32)(s32 >> (sh & 31)));
	put(9, (__u32)(x + 0xfffffff0U));
	put(10, (__u64)(__u32)(x * 0x9e3779b9U));
	put(11, a * 0x9e3779b97f4a7c15ULL);
	put(12, (__s64)a < 0 ? 1 : 2);
	put(13, (__s32)x < (__s32)y ? 3 : 4);
	put(14, bpf_ntohl(x) ^ bpf_be64_to_cpu(a));
	put(15, (__u64)(-(__s64)x) ^ ~a);
	return (a ^ x) & 1 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
