"""The differential corpus: each XDP program of progs/, how to prime it, what to feed it.

A `Case` names a source file and its entry program, a `prime(engine, obj)` that fills
maps and tail-call slots through the engine-neutral `Map` interface (so the interpreter
and the kernel start from identical state), and the packets: crafted ones aimed at the
program's branches, then seeded random traffic (`vxdp.packets.TrafficGenerator`) with
anomalies.  Packets are built once per case, so every engine sees the same bytes.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vxdp import packets as P
from vxdp.bpf.engine import Engine
from vxdp.bpf.maps import MapValue
from vxdp.bpf.program import XdpAction

PROGS = Path(__file__).parent / "progs"

Primer = Callable[[Engine, Any], None]  # (engine, BpfObject)

PASS, DROP, TX, ABORTED = XdpAction.PASS, XdpAction.DROP, XdpAction.TX, XdpAction.ABORTED


@dataclass(frozen=True)
class Case:
    """One program of the corpus and the traffic it is judged on."""

    source: str  # file in progs/
    program: str  # entry function
    crafted: Callable[[], list[bytes]] = list
    prime: Primer | None = None
    random: int = 200  # seeded random packets after the crafted ones
    gen: dict[str, Any] = field(default_factory=dict)  # TrafficGenerator keyword arguments
    variant: str = ""  # tells apart two cases of one program
    seed: int | None = None  # of the random traffic; default: derived from the id
    # a divergence of the core from the kernel, reported and not yet fixed: the suite
    # still compares, and expects the failure (strict: a fix turns it into an error)
    known_divergence: str | None = None

    @property
    def id(self) -> str:
        return self.program + (f"[{self.variant}]" if self.variant else "")

    @property
    def path(self) -> Path:
        return PROGS / self.source

    def packets(self, seed_offset: int = 0) -> list[bytes]:
        """Crafted packets, then random ones; `seed_offset` != 0 explores other traffic."""
        seed = zlib.crc32(self.id.encode()) if self.seed is None else self.seed
        seed += seed_offset
        kw = {"anomalies": 0.25, **self.gen}
        return self.crafted() + P.TrafficGenerator(seed, **kw).packets(self.random)


# --- encoding helpers --------------------------------------------------------------------

def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v & (2**64 - 1))


def ip4(addr: str) -> bytes:
    return ipaddress.IPv4Address(addr).packed


def be16(v: int) -> bytes:
    return struct.pack("!H", v)


def put(engine: Engine, map_name: str, key: bytes, value: MapValue) -> None:
    engine.map_by_name(map_name).update(key, value)


def flow_key(src: str, dst: str, sport: int, dport: int, proto: int) -> bytes:
    """struct flow_key of common.h: saddr, daddr, sport, dport (network order), proto, pad."""
    return ip4(src) + ip4(dst) + be16(sport) + be16(dport) + bytes([proto, 0, 0, 0])


def gen_flows(seed: int, **kw: Any) -> list[P.Flow]:
    return P.TrafficGenerator(seed, **kw).flows


def udp4(src: str = "10.0.0.1", dst: str = "10.1.0.1", sport: int = 1000, dport: int = 2000,
         payload: bytes = b"", **kw: Any) -> bytes:
    return P.udp_packet(src, dst, sport, dport, payload, **kw)


def tcp4(src: str = "10.0.0.1", dst: str = "10.1.0.1", sport: int = 1000, dport: int = 80,
         flags: str | int = "A", payload: bytes = b"", **kw: Any) -> bytes:
    return P.tcp_packet(src, dst, sport, dport, payload, flags=flags, **kw)


def short_frames() -> list[bytes]:
    """Frames of 14..59 bytes, unpadded: parsers must bounds-check every header."""
    base = udp4(payload=b"z" * 40)
    return [base[:n] for n in (14, 15, 20, 33, 34, 41, 42, 47, 59)]


# --- primers and crafted traffic per program ---------------------------------------------

FLOW_SEED = 5
FLOW_GEN: dict[str, Any] = {"mix": {"udp4": 1, "tcp4": 1}, "vlan_share": 0.1, "flows": 16}


def prime_flow_hash(engine: Engine, obj: Any) -> None:
    """The first 12 of the case's 16 random flows get a policy; 4 miss."""
    actions = [PASS, DROP, TX, 7]  # 7: not an action; the program returns it anyway
    for i, f in enumerate(gen_flows(FLOW_SEED, **FLOW_GEN)[:12]):
        proto = 6 if f.proto == "tcp" else 17
        policy = u32(actions[i % 4]) + u32(0) + u64(0)
        put(engine, "flows", flow_key(f.src, f.dst, f.sport, f.dport, proto), policy)


def prime_vlan_pop(engine: Engine, obj: Any) -> None:
    for vid in (10, 11, 300):
        put(engine, "vlan_strip", u32(vid), b"\x01")
    for vid in range(1000, 1048):  # leave 16 free slots so the table fills during the run
        put(engine, "vlan_seen", struct.pack("<H", vid), u64(vid))


def crafted_vlan_pop() -> list[bytes]:
    return [udp4(vlans=(10,)), udp4(vlans=(20,)), udp4(vlans=(11, 30)), udp4(vlans=(300,)),
            tcp4(vlans=(0,)), udp4()] + [udp4(vlans=(v,)) for v in range(2000, 2010)]


def prime_vlan_push(engine: Engine, obj: Any) -> None:
    put(engine, "mac_vlan", P.mac("02:00:00:00:00:0a") + b"\0\0", struct.pack("<H", 42))
    put(engine, "mac_vlan", P.mac("02:00:00:00:00:0b") + b"\0\0", struct.pack("<H", 0))
    put(engine, "mac_vlan", P.mac("02:00:00:00:00:0c") + b"\0\0", struct.pack("<H", 0x1fff))


def crafted_vlan_push() -> list[bytes]:
    return [udp4(src_mac="02:00:00:00:00:0a"), udp4(src_mac="02:00:00:00:00:0b"),
            tcp4(src_mac="02:00:00:00:00:0c"), udp4(), udp4(vlans=(5,))]


def crafted_ipv6_exthdr() -> list[bytes]:
    s, d = "2001:db8:1::1", "2001:db8:2::1"
    out = []
    l4 = P.udp(s, d, 1, 2, b"x" * 20)
    for chain in ([], [0], [0, 60], [0, 43, 44, 60], [60] * 7, [60] * 8, [60] * 9):
        body, nxt = l4, 17
        for kind in reversed(chain):
            body = P.ipv6_ext(kind, nxt, b"opt" if kind != 44 else b"") + body
            nxt = kind
        out.append(P.ethernet(P.DEFAULT_DST_MAC, P.DEFAULT_SRC_MAC, P.ETH_P_IPV6,
                              P.ipv6(s, d, nxt, body)))
    frag_later = P.ipv6_ext(44, 17, struct.pack("!HI", (100 << 3) | 1, 9)) + l4
    out.append(P.ethernet(P.DEFAULT_DST_MAC, P.DEFAULT_SRC_MAC, P.ETH_P_IPV6,
                          P.ipv6(s, d, 44, frag_later)))
    out.append(P.ethernet(P.DEFAULT_DST_MAC, P.DEFAULT_SRC_MAC, P.ETH_P_IPV6,
                          P.ipv6(s, d, 59, b"")))
    auth = bytes([17, 4]) + bytes(22)  # AH, payload len 4 -> (4 + 2) * 4 = 24 bytes
    out.append(P.ethernet(P.DEFAULT_DST_MAC, P.DEFAULT_SRC_MAC, P.ETH_P_IPV6,
                          P.ipv6(s, d, 51, auth + l4)))
    return out


def crafted_tcp_flags() -> list[bytes]:
    return [tcp4(flags=f) for f in ("", "FPU", "SF", "S", "SA", "FA", "R", "RA", "A", 0xFF)]


def prime_lpm(engine: Engine, obj: Any) -> None:
    rules4 = [("10.0.0.0", 8, PASS, 1), ("10.0.0.0", 16, DROP, 2), ("10.0.5.0", 24, TX, 3),
              ("10.0.5.7", 32, ABORTED, 4), ("192.168.0.0", 16, DROP, 5)]
    for addr, plen, action, rid in rules4:
        put(engine, "acl4", u32(plen) + ip4(addr), u32(action) + u32(rid))
    rules6 = [("2001:db8::", 32, PASS, 6), ("2001:db8:1::", 48, DROP, 7),
              ("2001:db8:1:0:8000::", 65, TX, 8)]
    for addr, plen, action, rid in rules6:
        put(engine, "acl6", u32(plen) + ipaddress.IPv6Address(addr).packed,
            u32(action) + u32(rid))


def crafted_lpm() -> list[bytes]:
    srcs = ["10.0.5.7", "10.0.5.8", "10.0.6.1", "10.1.0.1", "10.200.0.1", "192.168.3.3",
            "172.16.0.1", "2001:db8:1::1", "2001:db8:1:0:8000::1", "2001:db8:3::1",
            "2001:dead::1"]
    out = []
    for s in srcs:
        d = "2001:db8:2::2" if ":" in s else "10.1.0.1"
        out.append(P.udp_packet(s, d, 1, 2, b"acl"))
    return out


def crafted_conntrack() -> list[bytes]:
    a, b = "10.0.0.1", "10.1.0.1"
    return [tcp4(a, b, 1111, 80, "S"), tcp4(b, a, 80, 1111, "SA"), tcp4(a, b, 1111, 80, "A"),
            tcp4(a, b, 1111, 80, "PA", b"GET /"), tcp4(b, a, 80, 1111, "FA"),
            tcp4(a, b, 1111, 80, "R"), tcp4(a, b, 1111, 80, "A"),  # gone after RST
            tcp4(a, b, 2222, 80, "A"), tcp4(a, b, 2223, 80, "R"),  # unsolicited
            udp4(a, b, 5353, 53), udp4(b, a, 53, 5353), udp4(a, b, 5353, 53)]


VIP = "10.1.0.100"


def prime_lb(engine: Engine, obj: Any) -> None:
    def vip(addr: str, port: int, proto: int, first: int, count: int) -> None:
        put(engine, "vips", ip4(addr) + be16(port) + bytes([proto, 0]), u32(first) + u32(count))

    vip(VIP, 80, 6, 0, 4)
    vip(VIP, 53, 17, 4, 2)
    vip("10.1.0.101", 443, 6, 0, 0)
    for i in range(6):
        backend = (ip4(f"10.2.0.{i + 1}") + be16(8000 + i) + P.mac(f"02:00:00:00:be:{i:02x}")
                   + bytes(4) + u64(0))
        put(engine, "backends", u32(i), backend)


def crafted_lb() -> list[bytes]:
    out = [tcp4(f"10.0.{i // 7}.{i}", VIP, 30000 + i * 17, 80, "S") for i in range(24)]
    out += [udp4(f"10.0.1.{i}", VIP, 40000 + i, 53, b"q" * i) for i in range(12)]
    zero = bytearray(udp4("10.0.9.9", VIP, 41000, 53, b"zero-csum"))
    zero[40:42] = b"\0\0"  # UDP checksum 0: must stay 0
    out += [bytes(zero), tcp4("10.0.0.1", "10.1.0.101", 1, 443, "S"),
            tcp4("10.0.0.1", VIP, 1, 81, "S"), udp4("10.0.0.1", VIP, 1, 80)]
    return out


def prime_snat(engine: Engine, obj: Any) -> None:
    for i in range(1, 9):
        put(engine, "snat", ip4(f"10.0.0.{i}"),
            ip4("203.0.113.1") + be16(61000 + i) + bytes(2) + u64(0))


def crafted_snat() -> list[bytes]:
    out = [udp4(f"10.0.0.{i}", "10.1.0.1", 5000 + i, 53, b"n" * (40 + i)) for i in range(1, 12)]
    zero = bytearray(udp4("10.0.0.2", "10.1.0.1", 5000, 53, b"n" * 50))
    zero[40:42] = b"\0\0"
    bad = bytearray(udp4("10.0.0.3", "10.1.0.1", 5000, 53, b"n" * 50))
    bad[24] ^= 1  # IPv4 checksum broken
    opts = P.ethernet(P.DEFAULT_DST_MAC, P.DEFAULT_SRC_MAC, P.ETH_P_IP, P.ipv4(
        "10.0.0.4", "10.1.0.1", 17, P.udp("10.0.0.4", "10.1.0.1", 7, 8, b"o" * 60),
        options=b"\x01\x01\x01\x01\x07\x07\x04\x00\x00\x00\x00"))
    return [*out, bytes(zero), bytes(bad), opts, udp4("10.0.0.1", payload=b"short")]


def prime_ipip_encap(engine: Engine, obj: Any) -> None:
    put(engine, "tunnels", ip4("10.1.0.0"),
        ip4("10.0.2.1") + ip4("10.0.2.2") + P.mac("02:00:00:00:aa:01") + bytes(2))


def crafted_ipip_encap() -> list[bytes]:
    return [udp4(payload=b"e" * 10), udp4(payload=b"e" * 1452), udp4(payload=b"e" * 1453),
            tcp4(dst="10.9.0.1"), udp4(vlans=(3,)), tcp4(flags="S")]


def _ipip(outer_dst: str, inner: bytes, *, frag: bool = False, options: bytes = b"") -> bytes:
    return P.ethernet(P.DEFAULT_DST_MAC, P.DEFAULT_SRC_MAC, P.ETH_P_IP,
                      P.ipv4("10.0.2.2", outer_dst, P.IPPROTO_IPIP, inner, more_fragments=frag,
                             dont_fragment=not frag, options=options))


def crafted_ipip_decap() -> list[bytes]:
    inner = P.ipv4("10.9.0.1", "10.1.0.7", 17, P.udp("10.9.0.1", "10.1.0.7", 1, 2, b"in"))
    return [_ipip("10.0.2.1", inner), _ipip("10.0.2.1", inner, options=b"\x01" * 4),
            _ipip("10.0.2.9", inner), _ipip("10.0.2.1", inner, frag=True),
            _ipip("10.0.2.1", b"\x60" + bytes(39)), _ipip("10.0.2.1", inner[:10]), udp4()]


def crafted_adjust_tail() -> list[bytes]:
    out = []
    for port in (9, 7, 13):
        for size in (0, 30, 54, 200, 1400):
            out.append(udp4(dport=port, payload=b"t" * size))
    out += [udp4(dport=9, payload=b"s" * n) for n in (55, 60, 97, 150, 300, 600, 1000, 1472)]
    out += [udp4(dport=9, payload=b"v" * 300, vlans=(4,)), udp4(dport=7, vlans=(4, 5)),
            tcp4(dport=9)]
    return out


def prime_meta(engine: Engine, obj: Any) -> None:
    for port, mark, dscp, flags in ((53, 1, 46, 1), (80, 2, 0, 2), (123, 3, 10, 3),
                                    (4000, 12, 63, 1)):
        put(engine, "classes", be16(port), u32(mark) + struct.pack("<HH", dscp, flags))


def crafted_meta() -> list[bytes]:
    return [udp4(dport=p, payload=b"m" * 20) for p in (53, 80, 123, 4000, 9)] + [tcp4()]


TAIL_SLOTS = {0: "xdp_handle_tcp", 1: "xdp_handle_udp", 2: "xdp_handle_icmp", 3: "xdp_log"}


def tail_primer(slots: Sequence[int]) -> Primer:
    def prime(engine: Engine, obj: Any) -> None:
        for slot in slots:
            value = engine.load_tail_target(obj.programs[TAIL_SLOTS[slot]])
            put(engine, "jump_table", u32(slot), u32(value))
    return prime


def crafted_tail() -> list[bytes]:
    return [tcp4(), udp4(payload=b"u" * 10), udp4(payload=b"u" * 300),
            P.icmp_packet("10.0.0.1", "10.1.0.1"), P.icmp_packet("2001:db8::1", "2001:db8::2")]


def crafted_global() -> list[bytes]:
    return [udp4(dport=p, payload=b"g" * n) for p in (53, 80, 443, 8000, 1)
            for n in (0, 100, 1300)]


def crafted_loop() -> list[bytes]:
    return [udp4(payload=b"xxEVILxx"), udp4(payload=b"E" * 300 + b"EVIL"),
            udp4(payload=b"a" * 252 + b"EVIL"), udp4(payload=b"EVI"), udp4(payload=b""),
            udp4(payload=bytes(range(256)))]


def prime_devmap(engine: Engine, obj: Any) -> None:
    put(engine, "tx_ports", u32(1), u32(1))  # ifindex 1: loopback exists everywhere
    put(engine, "tx_ports", u32(2), u32(1))
    put(engine, "tx_ports_by_id", u32(1000), u32(1))
    put(engine, "tx_ports_by_id", u32(1001), u32(1))
    for last, port in ((0x11, 1), (0x12, 2), (0x13, 3), (0x02, 5), (0x14, 1000), (0x15, 1001),
                       (0x16, 1002)):
        put(engine, "fdb", P.mac(f"02:00:00:00:00:{last:02x}") + bytes(2), u32(port))


def crafted_devmap() -> list[bytes]:
    out = []
    for dst in ("02:00:00:00:00:11", "02:00:00:00:00:12", "02:00:00:00:00:13",
                "02:00:00:00:00:14", "02:00:00:00:00:15", "02:00:00:00:00:16",
                "02:00:00:00:00:99", "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01"):
        out += [udp4(dst_mac=dst), P.udp_packet("2001:db8::1", "2001:db8::2", 1, 2,
                                                dst_mac=dst)]
    return out


def crafted_strtol() -> list[bytes]:
    texts = [b"SET 12 34\n", b"SET 7 -0x10", b"SET 5 0777", b"SET 3 +12 junk",
             b"SET 99999999999999999999999 1", b"SET abc 1", b"SET 1 zz", b"SET 4 ",
             b"SET ", b"GET 1", b"SET 0x20 0x7fffffffffffffff", b"SET 8 -9223372036854775809",
             b"SET 123456789012345 0", b"SET 42 \t 42"]
    return [udp4(dport=4000, payload=t) for t in texts] + [udp4(dport=4001, payload=b"SET 1 1")]


def crafted_icmp() -> list[bytes]:
    v4 = P.icmp_packet("10.0.0.1", "10.1.0.1", 7, 1, b"ping" * 10)
    bad = bytearray(v4)
    bad[24] ^= 0xFF  # IPv4 header checksum
    opts = P.ethernet(P.DEFAULT_DST_MAC, P.DEFAULT_SRC_MAC, P.ETH_P_IP, P.ipv4(
        "10.0.0.1", "10.1.0.1", 1, P.icmp_echo(1, 1, b"x"), options=b"\x01\x01\x01\x01"))
    return [v4, bytes(bad), opts, P.icmp_packet("10.0.0.1", "10.1.0.1", reply=True),
            P.icmp_packet("2001:db8::1", "2001:db8::2", 9, 9, b"ping6"),
            P.icmp_packet("2001:db8::1", "2001:db8::2", reply=True),
            P.icmp_packet("10.0.0.1", "10.1.0.1", vlans=(8,))]


def prime_router(engine: Engine, obj: Any) -> None:
    nexthop = P.mac("02:00:00:00:0f:01") + P.mac("02:00:00:00:0f:02") + bytes(4) + u64(0)
    put(engine, "routes4", ip4("10.1.0.0"), nexthop)
    put(engine, "routes6", ipaddress.IPv6Address("2001:db8:2::").packed[:8], nexthop)


def crafted_router() -> list[bytes]:
    return [udp4(ttl=t) for t in (0, 1, 2, 64, 255)] + [
        P.udp_packet("2001:db8:1::1", "2001:db8:2::1", 1, 2, ttl=t) for t in (1, 2, 64)] + [
        udp4(dst="10.7.0.1")]


def prime_rate_limit(engine: Engine, obj: Any) -> None:
    put(engine, "rl_config", u32(0), u64(3))


def prime_tail_loop(engine: Engine, obj: Any) -> None:
    put(engine, "self", u32(0), u32(engine.load_tail_target(obj.programs["xdp_tail_loop"])))


def crafted_lpm_learn() -> list[bytes]:
    return [udp4("10.0.1.1"), udp4("10.0.1.2"), udp4("10.0.1.1"), tcp4("10.0.1.3", flags="R"),
            udp4("10.0.1.1"), tcp4("10.0.99.1", flags="R"), udp4("10.0.2.1"),
            udp4("10.0.2.1")]


# --- the corpus ----------------------------------------------------------------------------

V4_MIX = {"udp4": 1.0, "tcp4": 1.0, "icmp4": 0.2}
V6_MIX = {"udp6": 1.0, "tcp6": 1.0, "icmp6": 0.3, "udp4": 0.3}

CASES: tuple[Case, ...] = (
    Case("xdp_drop.c", "xdp_drop_all", short_frames),
    Case("xdp_ethertype_filter.c", "xdp_ethertype_filter", short_frames,
         gen={"anomalies": 0.4, "vlan_share": 0.3}),
    Case("xdp_parse_swap_tx.c", "xdp_swap_tx", short_frames, gen={"vlan_share": 0.3}),
    Case("xdp_array_counter.c", "xdp_count_proto", short_frames),
    Case("xdp_flow_hash.c", "xdp_flow_lookup", short_frames, prime_flow_hash, gen=FLOW_GEN,
         seed=FLOW_SEED),
    Case("xdp_vlan_pop.c", "xdp_vlan_pop", crafted_vlan_pop, prime_vlan_pop,
         gen={"vlan_share": 0.6, "flows": 24}),
    Case("xdp_vlan_push.c", "xdp_vlan_push", crafted_vlan_push, prime_vlan_push,
         gen={"vlan_share": 0.3}),
    Case("xdp_ipv6_exthdr.c", "xdp_ipv6_exthdr", crafted_ipv6_exthdr,
         gen={"mix": V6_MIX, "anomalies": 0.5}),
    Case("xdp_tcp_flags.c", "xdp_tcp_flags", crafted_tcp_flags,
         gen={"mix": {"tcp4": 1.0, "udp4": 0.1}, "anomalies": 0.4}),
    Case("xdp_percpu_hash.c", "xdp_percpu_src", short_frames, gen={"flows": 4, "mix": V4_MIX}),
    Case("xdp_lpm_acl.c", "xdp_lpm_acl", crafted_lpm, prime_lpm,
         gen={"src_net": "10.0.0.0/21", "src_net6": "2001:db8:1::/63"}),
    Case("xdp_lru_conntrack.c", "xdp_conntrack", crafted_conntrack,
         gen={"mix": V4_MIX, "flows": 10}),
    Case("xdp_lb_dnat.c", "xdp_lb_dnat", crafted_lb, prime_lb,
         gen={"dst_net": "10.1.0.100/31", "mix": V4_MIX, "flows": 64}),
    Case("xdp_snat_csum_diff.c", "xdp_snat", crafted_snat, prime_snat,
         gen={"src_net": "10.0.0.0/28", "mix": V4_MIX}),
    Case("xdp_ipip_encap.c", "xdp_ipip_encap", crafted_ipip_encap, prime_ipip_encap),
    Case("xdp_ipip_decap.c", "xdp_ipip_decap", crafted_ipip_decap),
    Case("xdp_adjust_tail.c", "xdp_adjust_tail", crafted_adjust_tail, gen={"mix": V4_MIX}),
    Case("xdp_adjust_meta.c", "xdp_adjust_meta", crafted_meta, prime_meta),
    Case("xdp_tail_call.c", "xdp_dispatch", crafted_tail, tail_primer((0, 1, 3)),
         variant="icmp-empty"),
    Case("xdp_tail_call.c", "xdp_dispatch", crafted_tail, tail_primer((0, 1, 2)),
         variant="no-logger", random=60),
    Case("xdp_global_data.c", "xdp_global_data", crafted_global),
    Case("xdp_atomics.c", "xdp_atomics", short_frames),
    Case("xdp_bounded_loop.c", "xdp_scan_payload", crafted_loop, gen={"mix": V4_MIX}),
    Case("xdp_devmap_redirect.c", "xdp_l2_fwd", crafted_devmap, prime_devmap),
    Case("xdp_load_store_bytes.c", "xdp_load_store", short_frames),
    Case("xdp_ringbuf.c", "xdp_sample", short_frames),
    Case("xdp_strtol.c", "xdp_strtol", crafted_strtol, random=60),
    Case("xdp_icmp_echo.c", "xdp_icmp_echo", crafted_icmp,
         gen={"mix": {"icmp4": 1.0, "icmp6": 1.0, "udp4": 0.2}}),
    Case("xdp_router_ttl.c", "xdp_router", crafted_router, prime_router,
         gen={"anomalies": 0.4}),
    Case("xdp_subprog.c", "xdp_subprog", short_frames),
    Case("xdp_alu.c", "xdp_alu", short_frames, random=400),
    Case("xdp_alu_raw.c", "xdp_alu_raw", short_frames, random=400),
    Case("xdp_rate_limit.c", "xdp_rate_limit", short_frames, prime_rate_limit,
         gen={"flows": 12, "mix": V4_MIX}),
    Case("xdp_helper_edges.c", "xdp_helper_edges", short_frames, random=40),
    Case("xdp_tail_loop.c", "xdp_tail_loop", short_frames, prime_tail_loop, random=20),
    Case("xdp_meta_head.c", "xdp_meta_head", short_frames),
    Case("xdp_lru_evict.c", "xdp_lru_evict", short_frames, random=400,
         gen={"flows": 80, "mix": V4_MIX}),
    Case("xdp_lru_flavours.c", "xdp_lru_flavours", short_frames, random=400,
         gen={"flows": 90, "mix": V4_MIX}),
    Case("xdp_lpm_learn.c", "xdp_lpm_learn", crafted_lpm_learn,
         gen={"src_net": "10.0.0.0/19", "flows": 40, "mix": V4_MIX, "anomalies": 0.3}),
)

BY_ID: dict[str, Case] = {c.id: c for c in CASES}
