/* xdp_lru_conntrack.c: a tiny TCP/UDP connection tracker on an LRU hash.
 * Exercises: LRU_HASH insert with BPF_NOEXIST and its -EEXIST result, lookups by the
 * forward and the reversed tuple, an in-value state machine driven by TCP flags,
 * bpf_map_delete_elem on RST (and its -ENOENT for an unknown flow, counted), and
 * dropping unsolicited TCP that does not open a connection.
 */
#include "common.h"

enum { CT_NEW = 1, CT_ESTABLISHED = 2, CT_CLOSING = 3 };

struct ct_entry {
	__u32 state;
	__u32 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow_key);
	__type(value, struct ct_entry);
} conntrack SEC(".maps");

enum { E_EXIST, E_NOENT, E_INVALID, E_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, E_MAX);
	__type(key, __u32);
	__type(value, __s64);
} ct_errors SEC(".maps");

static __always_inline void note(__u32 idx, long err)
{
	__s64 *v = bpf_map_lookup_elem(&ct_errors, &idx);

	if (v)
		*v += err;
}

SEC("xdp")
int xdp_conntrack(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct tcphdr *tcp = 0;
	struct flow_key key, rev;
	struct ct_entry *ct, fresh = {.state = CT_NEW, .packets = 1};
	__u32 len = ctx->data_end - ctx->data;
	long err;
	int proto;

	cursor_init(&c, ctx);
	if (parse_eth(&c, &eth, 0) != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	proto = parse_ipv4(&c, &iph);
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return XDP_PASS;
	tcp = c.pos;
	if (flow_of(&c, iph, proto, &key))
		return XDP_DROP;
	if (proto != IPPROTO_TCP)
		tcp = 0;
	else if ((void *)(tcp + 1) > c.end)
		return XDP_DROP;

	ct = bpf_map_lookup_elem(&conntrack, &key);
	if (!ct) {
		rev = key;
		rev.saddr = key.daddr;
		rev.daddr = key.saddr;
		rev.sport = key.dport;
		rev.dport = key.sport;
		ct = bpf_map_lookup_elem(&conntrack, &rev);
		if (ct && ct->state == CT_NEW)
			ct->state = CT_ESTABLISHED;
	}
	if (!ct) {
		if (tcp && !tcp->syn) {
			note(E_INVALID, 1);
			if (tcp->rst) {
				err = bpf_map_delete_elem(&conntrack, &key);
				note(E_NOENT, err);
			}
			return XDP_DROP;
		}
		fresh.bytes = len;
		err = bpf_map_update_elem(&conntrack, &key, &fresh, BPF_NOEXIST);
		if (err) {
			note(E_EXIST, err);
			return XDP_ABORTED;
		}
		/* a second NOEXIST insert must fail with -EEXIST */
		err = bpf_map_update_elem(&conntrack, &key, &fresh, BPF_NOEXIST);
		note(E_EXIST, err);
		return XDP_PASS;
	}
	ct->packets++;
	ct->bytes += len;
	if (tcp && (tcp->fin))
		ct->state = CT_CLOSING;
	if (tcp && tcp->rst) {
		bpf_map_delete_elem(&conntrack, &key);
		return XDP_DROP;
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";  /* this file: Apache-2.0 OR GPL-2.0-only; "GPL" tells the kernel */
