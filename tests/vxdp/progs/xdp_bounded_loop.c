/* xdp_bounded_loop.c: payload inspection with bounded loops.
 * Exercises: a loop over up to 256 payload bytes with a bounds check per step (the
 * verifier's bounded-loop support, not unrolled), a byte histogram into an ARRAY,
 * a rolling checksum of the payload, a signature search ("EVIL") that drops, and a
 * per-packet result written back over the first 4 payload bytes.
 */
#include "common.h"

#define SCAN_MAX 256

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} nibble_hist SEC(".maps"); /* histogram of the high nibble of payload bytes */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} rolling SEC(".maps");

SEC("xdp")
int xdp_scan_payload(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct udphdr *udp;
	__u8 *p;
	__u32 a = 1, b = 0, match = 0, zero = 0, *roll;
	int i;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (parse_ipv4(&c, &iph) != IPPROTO_UDP)
		return XDP_PASS;
	udp = parse_udp(&c);
	if (!udp)
		return XDP_DROP;
	p = c.pos;

	for (i = 0; i < SCAN_MAX; i++) {
		__u32 nib;
		__u64 *h;

		if ((void *)(p + i + 1) > c.end)
			break;
		a = (a + p[i]) % 65521;
		b = (b + a) % 65521;
		nib = p[i] >> 4;
		h = bpf_map_lookup_elem(&nibble_hist, &nib);
		if (h)
			*h += 1;
		match = (match << 8) | p[i];
		if (match == 0x4556494c) /* "EVIL" */
			return XDP_DROP;
	}
	roll = bpf_map_lookup_elem(&rolling, &zero);
	if (roll)
		*roll ^= (b << 16) | a;
	if ((void *)(p + 4) <= c.end && i >= 8) {
		*(__be32 *)p = bpf_htonl((b << 16) | a);
		if (udp->check)
			udp->check = 0; /* payload changed */
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
