/* xdp_atomics.c: every BPF atomic operation on map values, 32 and 64 bits.
 * Exercises (cpu v3): atomic add/and/or/xor with and without fetch, xchg and cmpxchg
 * (BPF_ATOMIC with BPF_FETCH, BPF_XCHG, BPF_CMPXCHG), operands taken from the packet so
 * they vary, fetched old values folded into a second slot, and a cmpxchg-based
 * "first writer wins" latch.
 */
#include "common.h"

struct atom_state {
	__u64 add64;
	__u64 or64;
	__u64 and64;
	__u64 xor64;
	__u64 xchg64;
	__u64 cmpxchg64;
	__u64 fetched;  /* sum of every value a fetching op returned */
	__u32 add32;
	__u32 or32;
	__u32 and32;
	__u32 xor32;
	__u32 xchg32;
	__u32 latch32;  /* cmpxchg 0 -> first packet length */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct atom_state);
} atoms SEC(".maps");

SEC("xdp")
int xdp_atomics(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct atom_state *s;
	__u64 v, f = 0;
	__u32 w, key;

	if (data + 34 > data_end)
		return XDP_DROP;
	v = *(__u64 *)(data + 26); /* IPv4 addresses, or whatever is there */
	w = *(__u32 *)(data + 30);
	key = w & 1;
	s = bpf_map_lookup_elem(&atoms, &key);
	if (!s)
		return XDP_ABORTED;
	if (s->and64 == 0 && s->and32 == 0) {
		/* first use: seed the AND slots with all ones */
		__sync_val_compare_and_swap(&s->and64, 0, ~0ULL);
		__sync_val_compare_and_swap(&s->and32, 0, ~0U);
	}

	__sync_fetch_and_add(&s->add64, v >> 8);
	f += __sync_fetch_and_add(&s->add64, 1);
	f += __sync_fetch_and_or(&s->or64, v & 0x0101010101010101ULL);
	f += __sync_fetch_and_and(&s->and64, v | 0xf0f0f0f0f0f0f0f0ULL);
	f += __sync_fetch_and_xor(&s->xor64, v);
	f += __atomic_exchange_n(&s->xchg64, v ^ f, __ATOMIC_SEQ_CST);
	f += __sync_val_compare_and_swap(&s->cmpxchg64, s->cmpxchg64 & ~1ULL, v);

	__sync_fetch_and_add(&s->add32, w);
	f += __sync_fetch_and_or(&s->or32, w & 0x01010101);
	f += __sync_fetch_and_and(&s->and32, w | 0x0f0f0f0f);
	f += __sync_fetch_and_xor(&s->xor32, w);
	f += __atomic_exchange_n(&s->xchg32, (__u32)f, __ATOMIC_SEQ_CST);
	__sync_val_compare_and_swap(&s->latch32, 0, (__u32)(data_end - data));

	__sync_fetch_and_add(&s->fetched, f);
	return (f & 1) ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
