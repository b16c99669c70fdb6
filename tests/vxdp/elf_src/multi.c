// Several programs, BTF maps, global data in .data/.bss/.rodata, .text subprograms.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct pair { __u32 a; __u16 b; __u8 c[6]; };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__type(value, struct pair);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 128);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, __u64);
	__uint(value_size, 12);
} lru SEC(".maps");

__u32 seen = 7;                    /* .data */
__u64 total;                       /* .bss */
const volatile __u32 verdict = 2;  /* .rodata (XDP_PASS) */
const volatile __u8 pad_rodata[3] = {1, 2, 3};

static __attribute__((noinline)) __u32 bump(__u32 key)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(&counts, &key);
	if (v) { __sync_fetch_and_add(v, 1); return 1; }
	bpf_map_update_elem(&counts, &key, &one, BPF_ANY);
	return 0;
}

__attribute__((noinline)) int global_len(struct xdp_md *ctx)
{
	if (!ctx)
		return 0;
	return (int)(ctx->data_end - ctx->data);
}

static __attribute__((noinline)) int unused_helper(int x) { return x * 3; }

SEC("xdp")
int xdp_main(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct pair *p = bpf_map_lookup_elem(&stats, &key);
	if (p) p->a += 1;
	seen += 1;
	total += global_len(ctx);
	bump(seen & 7);
	return verdict;
}

SEC("xdp/drop")
int xdp_drop(struct xdp_md *ctx)
{
	bump(100);
	return XDP_DROP;
}

SEC("xdp.frags")
int xdp_frag(struct xdp_md *ctx)
{
	return pad_rodata[1] == 2 ? XDP_TX : XDP_ABORTED;
}

SEC("tc")
int tc_pass(struct __sk_buff *skb)
{
	return unused_helper(0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
