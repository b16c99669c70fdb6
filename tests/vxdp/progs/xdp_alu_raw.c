/* xdp_alu_raw.c: instruction semantics C cannot express, written as BPF assembly.
 * Exercises: 64- and 32-bit LSH/RSH/ARSH by a register holding any byte value (BPF masks
 * the count to 63 or 31; in C an oversized shift is undefined), 32-bit ALU results being
 * zero-extended, BPF_NEG, BPF_END to big and little endian at 16/32/64 bits, DIV/MOD by
 * a zero register at both widths, and JSLT/JSGT/JSET on packet values; every result is
 * folded into an ARRAY.
 */
#include "common.h"

#define NRES 16

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NRES);
	__type(key, __u32);
	__type(value, __u64);
} raw_out SEC(".maps");

static __always_inline void put(__u32 idx, __u64 v)
{
	__u64 *p = bpf_map_lookup_elem(&raw_out, &idx);

	if (p)
		*p = (*p * 31) ^ v;
}

SEC("xdp")
int xdp_alu_raw(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 a, s, r, z;
	__u32 w, ws, wz;

	if (data + 48 > data_end)
		return XDP_DROP;
	a = *(__u64 *)(data + 30);
	s = *(__u8 *)(data + 45); /* any count 0..255 */
	z = *(__u8 *)(data + 46) & 0x80; /* zero about half the time */
	ws = s;
	wz = z;

	r = a; asm volatile("%0 <<= %1" : "+r"(r) : "r"(s)); put(0, r);
	r = a; asm volatile("%0 >>= %1" : "+r"(r) : "r"(s)); put(1, r);
	r = a; asm volatile("%0 s>>= %1" : "+r"(r) : "r"(s)); put(2, r);
	w = a; asm volatile("%0 <<= %1" : "+w"(w) : "w"(ws)); put(3, w);
	w = a; asm volatile("%0 >>= %1" : "+w"(w) : "w"(ws)); put(4, w);
	w = a; asm volatile("%0 s>>= %1" : "+w"(w) : "w"(ws)); put(5, w);
	r = a; asm volatile("%0 = -%0" : "+r"(r)); put(6, r);
	w = a; asm volatile("%0 = -%0" : "+w"(w)); put(7, w);
	r = a; asm volatile("%0 = be16 %0" : "+r"(r)); put(8, r);
	r = a; asm volatile("%0 = be32 %0" : "+r"(r)); put(9, r);
	r = a; asm volatile("%0 = be64 %0" : "+r"(r)); put(10, r);
	r = a; asm volatile("%0 = le16 %0" : "+r"(r)); put(11, r);
	r = a; asm volatile("%0 /= %1" : "+r"(r) : "r"(z)); put(12, r);
	/* clang 14 has no "%=" in BPF inline asm and lowers C % to div/mul/sub: encode
	 * "r1 %= r2" (0x9f) and "w1 %= w2" (0x9c) by hand */
	asm volatile("r1 = %1; r2 = %2; .quad 0x219f; %0 = r1"
		     : "=r"(r) : "r"(a), "r"(z) : "r1", "r2"); put(13, r);
	w = a; asm volatile("%0 /= %1" : "+w"(w) : "w"(wz)); put(14, w);
	asm volatile("r1 = %1; r2 = %2; .quad 0x219c; %0 = r1"
		     : "=r"(r) : "r"(a), "r"(z) : "r1", "r2"); put(15, r);

	if ((__s64)a < (__s64)(s << 56))
		return XDP_PASS;
	if ((__s32)a > (__s32)s)
		return XDP_TX;
	return (a & 0x10) ? XDP_DROP : XDP_ABORTED;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
