// Legacy `maps` section, static data reached through section symbols, a custom
// .data.* section, static .text functions called through the .text section symbol.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def SEC("maps") pkt_count = {
	.type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 8, .max_entries = 2,
};
struct bpf_map_def SEC("maps") by_len = {
	.type = BPF_MAP_TYPE_HASH, .key_size = 4, .value_size = 4, .max_entries = 16,
	.map_flags = BPF_F_NO_PREALLOC,
};

static volatile __u32 twice_calls;         /* .bss offset 0 */
static volatile __u32 hidden_counter;      /* .bss offset 4: section symbol + addend 4 */
static volatile __u64 hidden_data[2] = {5, 6}; /* .data, through the section symbol */
volatile int custom SEC(".data.custom") = 42;

static __attribute__((noinline)) __u32 twice(__u32 x)
{
	twice_calls += 1;
	return x * 2;
}
static __attribute__((noinline)) __u32 plus_one(__u32 x) { return twice(x) + 1; }

SEC("xdp")
int count(struct xdp_md *ctx)
{
	__u32 key = 0, len = ctx->data_end - ctx->data;
	__u64 *n = bpf_map_lookup_elem(&pkt_count, &key);
	if (n)
		*n += 1;
	__u32 doubled = plus_one(len);
	bpf_map_update_elem(&by_len, &len, &doubled, BPF_ANY);
	hidden_counter += 1;
	hidden_data[1] += len;
	custom += 1;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
