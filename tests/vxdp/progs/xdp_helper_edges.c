/* xdp_helper_edges.c: helper limits and error paths, every return code recorded.
 * Exercises: the exact headroom bpf_xdp_adjust_head can take (probed in 8-byte steps,
 * undone after each success) and its -EINVAL below ETH_HLEN; the exact tailroom of
 * bpf_xdp_adjust_tail (binary search) and its -EINVAL below ETH_HLEN; bpf_xdp_adjust_meta
 * past 32 bytes or unaligned (-EACCES) and past data (-EINVAL); bpf_csum_diff with a size
 * that is not a multiple of 4 (-EINVAL in older kernels, a sum in Linux 6.18) and the raw
 * value it returns; bpf_redirect_map with undefined flag bits and bpf_redirect with any
 * flag (XDP_ABORTED); bpf_get_smp_processor_id (runs are pinned to CPU 0); ARRAY update
 * with BPF_NOEXIST (-EEXIST), delete (-EINVAL) and lookups past max_entries (NULL);
 * bpf_xdp_get_buff_len; load/store offsets past 0xffff (-EFAULT) or the end (-EINVAL);
 * and a 384-byte stack buffer.
 */
#include "common.h"

enum {
	R_HEADROOM, R_HEAD_SHORT, R_TAILROOM, R_TAIL_SHORT, R_META_BIG, R_META_ODD,
	R_META_PAST, R_CSUM_ODD, R_REDIRECT_BAD, R_NOEXIST, R_DELETE, R_OOB_NULL,
	R_BUFF_LEN, R_STACK, R_CSUM_RAW, R_REDIRECT_FLAGS, R_CPU, R_LOAD_FAR, R_MAX
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, R_MAX);
	__type(key, __u32);
	__type(value, __s64);
} results SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} ports SEC(".maps");

static __always_inline void record(__u32 idx, __s64 v)
{
	__s64 *p = bpf_map_lookup_elem(&results, &idx);

	if (p)
		*p += v;
}

SEC("xdp")
int xdp_helper_edges(struct xdp_md *ctx)
{
	__u32 len = bpf_xdp_get_buff_len(ctx), idx;
	__u8 buf[384];
	__u64 headroom = 0, lo = 0, hi = 4096;
	__s64 zero64 = 0;
	__be32 words[2] = {1, 2};
	int off;

	__builtin_memset(buf, 0, sizeof(buf));
	record(R_BUFF_LEN, len);

	/* headroom: the largest k (step 8) such that adjust_head(-k) succeeds */
	for (off = 8; off <= 256; off += 8) {
		if (bpf_xdp_adjust_head(ctx, -off))
			break;
		headroom = off;
		if (bpf_xdp_adjust_head(ctx, off))
			return XDP_ABORTED;
	}
	record(R_HEADROOM, headroom);
	record(R_HEAD_SHORT, bpf_xdp_adjust_head(ctx, (int)len - 13));

	/* tailroom: binary search for the largest growth adjust_tail accepts */
	for (int i = 0; i < 13; i++) {
		__u64 mid = (lo + hi + 1) / 2;

		if (bpf_xdp_adjust_tail(ctx, (int)mid) == 0) {
			lo = mid;
			if (bpf_xdp_adjust_tail(ctx, -(int)mid))
				return XDP_ABORTED;
		} else {
			hi = mid - 1;
		}
	}
	record(R_TAILROOM, lo);
	record(R_TAIL_SHORT, bpf_xdp_adjust_tail(ctx, -(int)len + 13));

	record(R_META_BIG, bpf_xdp_adjust_meta(ctx, -36));
	record(R_META_ODD, bpf_xdp_adjust_meta(ctx, -6));
	record(R_META_PAST, bpf_xdp_adjust_meta(ctx, 4));

	record(R_CSUM_ODD, bpf_csum_diff(words, 6, words, 8, 0));
	words[0] = len;
	record(R_CSUM_RAW, bpf_csum_diff(words, 4, words + 1, 4, 0x12345678));
	record(R_REDIRECT_BAD, bpf_redirect_map(&ports, 0, 0x100) + 100);
	record(R_REDIRECT_FLAGS, bpf_redirect(1, 1) + 100);
	record(R_CPU, bpf_get_smp_processor_id() + 1);
	record(R_LOAD_FAR, bpf_xdp_load_bytes(ctx, 0x10000, buf, 8) +
			   bpf_xdp_store_bytes(ctx, len - 4, buf, 8) * 1000);

	idx = 0;
	record(R_NOEXIST, bpf_map_update_elem(&results, &idx, &zero64, BPF_NOEXIST));
	record(R_DELETE, bpf_map_delete_elem(&results, &idx));
	idx = R_MAX;
	record(R_OOB_NULL, bpf_map_lookup_elem(&results, &idx) == 0);

	if (bpf_xdp_load_bytes(ctx, 0, buf, len < sizeof(buf) ? 14 : sizeof(buf)) == 0) {
		__u64 sum = 0;

		for (int i = 0; i < (int)sizeof(buf); i += 8)
			sum += *(__u64 *)(buf + i);
		record(R_STACK, sum & 0xffff);
	}
	return len & 1 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
