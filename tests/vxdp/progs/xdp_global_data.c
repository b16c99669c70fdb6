/* xdp_global_data.c: configuration and state in global variables, no explicit maps.
 * Exercises: .rodata (const volatile config, frozen), .data (an initialised port table
 * and a mutable threshold), .bss (zeroed counters and a last-seen record), all reached
 * through BPF_PSEUDO_MAP_VALUE with offsets, plus arrays indexed by a bounded value.
 */
#include "common.h"

const volatile __u32 cfg_drop_len = 1200;
const volatile __u8 cfg_verbose = 1;
const volatile __be16 cfg_ports[4] = {0x3500, 0x5000, 0xbb01, 0x401f}; /* 53,80,443,8000 be */

__u32 port_hits[4] = {10, 20, 30, 40};
__u32 small_threshold = 100;

__u64 seen_packets;
__u64 seen_bytes;
__u64 dropped_long;
struct {
	__be32 saddr;
	__be16 dport;
	__u16 len;
} last;

SEC("xdp")
int xdp_global_data(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	__be16 *ports;
	__u32 len = ctx->data_end - ctx->data;

	seen_packets++;
	seen_bytes += len;
	if (len > cfg_drop_len) {
		dropped_long++;
		return XDP_DROP;
	}
	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (parse_ipv4(&c, &iph) < 0)
		return XDP_PASS;
	ports = c.pos;
	if ((void *)(ports + 2) > c.end)
		return XDP_PASS;
	for (int i = 0; i < 4; i++) {
		if (ports[1] == cfg_ports[i]) {
			port_hits[i]++;
			break;
		}
	}
	if (cfg_verbose) {
		last.saddr = iph->saddr;
		last.dport = ports[1];
		last.len = len;
	}
	if (len < small_threshold)
		small_threshold--;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
