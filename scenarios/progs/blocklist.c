/* blocklist.c: a DDoS filter.  IPv4 frames whose source address is in `blocked` are
 * dropped before they reach the guest, and counted per source; the guest adds and
 * removes sources at run time (MAP UPDATE / DELETE over its control queue). */
#include "parse.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);    /* source IPv4 address, network order */
	__type(value, __u64);  /* frames dropped */
} blocked SEC(".maps");

SEC("xdp")
int xdp_blocklist(struct xdp_md *ctx)
{
	struct iphdr *ip = ipv4_of(ctx);
	__u32 src;
	__u64 *hits;

	if (!ip)
		return XDP_PASS;
	src = ip->saddr;
	hits = bpf_map_lookup_elem(&blocked, &src);
	if (!hits)
		return XDP_PASS;
	__sync_fetch_and_add(hits, 1);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
