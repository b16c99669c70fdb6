/* xdp_strtol.c: a text protocol on UDP port 4000 ("SET <key> <value>\n"), parsed in BPF.
 * Exercises: bpf_strtoul (base 10) and bpf_strtol (base 0: 0x.. hex, 0.. octal, signs)
 * on stack copies of packet text, their return value (characters consumed, or -EINVAL /
 * -ERANGE), a HASH updated with the parsed pair, and a reply written into the packet
 * (the consumed-count of each number) before XDP_TX.
 */
#include "common.h"

#define TEXT_MAX 32

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __s64);
} kv SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __s64);
} parse_errors SEC(".maps"); /* 0: key errors, 1: value errors (sums of errnos) */

static __always_inline void add(__u32 idx, __s64 v)
{
	__s64 *p = bpf_map_lookup_elem(&parse_errors, &idx);

	if (p)
		*p += v;
}

SEC("xdp")
int xdp_strtol(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct udphdr *udp;
	char text[TEXT_MAX];
	unsigned long key = 0;
	long value = 0, n1, n2;
	__u32 off, l4off;
	__u8 *p;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (parse_ipv4(&c, &iph) != IPPROTO_UDP)
		return XDP_PASS;
	udp = parse_udp(&c);
	if (!udp || udp->dest != bpf_htons(4000))
		return XDP_PASS;
	p = c.pos;
	if ((void *)(p + 4) > c.end || p[0] != 'S' || p[1] != 'E' || p[2] != 'T' || p[3] != ' ')
		return XDP_DROP;
	l4off = (void *)p - (void *)(long)ctx->data;
	__builtin_memset(text, 0, sizeof(text));
	if (bpf_xdp_load_bytes(ctx, l4off + 4, text, sizeof(text) - 1) &&
	    bpf_xdp_load_bytes(ctx, l4off + 4, text, 8))
		return XDP_DROP;

	n1 = bpf_strtoul(text, sizeof(text), 10, &key);
	if (n1 < 0) {
		add(0, n1);
		return XDP_DROP;
	}
	off = n1 + 1;
	if (off > TEXT_MAX / 2 - 1)
		return XDP_DROP;
	n2 = bpf_strtol(text + off, TEXT_MAX / 2, 0, &value);
	if (n2 < 0) {
		add(1, n2);
		return XDP_DROP;
	}
	bpf_map_update_elem(&kv, &key, &value, BPF_ANY);

	/* reply "OK" + the two consumed counts in place of "SET " */
	if ((void *)(p + 4) > c.end)
		return XDP_DROP;
	p[0] = 'O';
	p[1] = 'K';
	p[2] = '0' + (n1 % 10);
	p[3] = '0' + (n2 % 10);
	udp->check = 0;
	swap_macs(eth);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
