/* conntrack.c: remembers IPv4 flows in an LRU hash (flows come and go, the oldest are
 * evicted) and passes everything.  A NIC-like device offers no LRU maps: this is the
 * program a `smartnic` profile refuses. */
#include "parse.h"

struct flow {
	__u32 saddr, daddr;
	__u8 proto, pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow);
	__type(value, __u64);
} flows SEC(".maps");

SEC("xdp")
int xdp_conntrack(struct xdp_md *ctx)
{
	struct iphdr *ip = ipv4_of(ctx);
	struct flow key = {};
	__u64 one = 1, *seen;

	if (!ip)
		return XDP_PASS;
	key.saddr = ip->saddr;
	key.daddr = ip->daddr;
	key.proto = ip->protocol;
	seen = bpf_map_lookup_elem(&flows, &key);
	if (seen)
		__sync_fetch_and_add(seen, 1);
	else
		bpf_map_update_elem(&flows, &key, &one, BPF_NOEXIST);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
