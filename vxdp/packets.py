"""Packet builders and a seeded traffic generator.

Builders return wire bytes (no FCS) with every length and checksum right, so a packet
that leaves here is what a NIC would hand to XDP:

    frame = udp_packet("10.0.0.1", "10.0.0.2", 1234, 53, b"query")
    frame = tcp_packet("2001:db8::1", "2001:db8::2", 40000, 443, flags="S", vlans=(10,))
    frame = ethernet(dst, src, ETH_P_IP, ipv4(src_ip, dst_ip, IPPROTO_UDP, udp(...)))

Layers compose bottom-up: `udp`/`tcp`/`icmpv6_echo` take the IP addresses because their
checksum covers the pseudo-header (RFC 768, RFC 9293 §3.1, RFC 8200 §8.1).
`TrafficGenerator` draws flows, sizes and protocol mixes from one seed, so a test or a
benchmark can name its traffic by (seed, count) and get the same bytes back.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from vxdp.errors import UsageError

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_IPV6 = 0x86DD

IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_ICMPV6 = 58
IPPROTO_NONE = 59
IPPROTO_DSTOPTS = 60

ETH_HLEN = 14
ETH_ZLEN = 60  # minimum frame without FCS; shorter frames are padded with zeros
ETH_FRAME_MAX = 1514

TCP_FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40,
             "C": 0x80}

Address = str | bytes


def checksum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 Internet checksum of `data` (odd length padded), folded and complemented.

    `initial` is a partial (uncomplemented) sum to start from, such as a pseudo-header's.
    """
    if len(data) % 2:
        data += b"\0"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = initial + sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac(text: str) -> bytes:
    """'02:00:00:00:00:01' -> 6 bytes."""
    parts = text.split(":")
    if len(parts) != 6:
        raise UsageError(f"bad MAC address {text!r}: need six colon-separated octets")
    return bytes(int(p, 16) for p in parts)


def ip_bytes(addr: Address) -> bytes:
    """An IPv4 or IPv6 address as text or packed bytes -> packed bytes (4 or 16)."""
    if isinstance(addr, bytes):
        if len(addr) not in (4, 16):
            raise UsageError(f"packed IP address must be 4 or 16 bytes, not {len(addr)}")
        return addr
    try:
        return ipaddress.ip_address(addr).packed
    except ValueError as exc:
        raise UsageError(f"bad IP address {addr!r}") from exc


def _pseudo_sum(src: Address, dst: Address, proto: int, length: int) -> int:
    s, d = ip_bytes(src), ip_bytes(dst)
    if len(s) != len(d):
        raise UsageError("source and destination addresses of different IP versions")
    if len(s) == 4:
        pseudo = s + d + struct.pack("!BBH", 0, proto, length)
    else:
        pseudo = s + d + struct.pack("!IxxxB", length, proto)
    return sum(struct.unpack(f"!{len(pseudo) // 2}H", pseudo))


def ethernet(dst: bytes | str, src: bytes | str, ethertype: int, payload: bytes, *,
             vlans: Sequence[int] = (), pad: bool = True) -> bytes:
    """An Ethernet II frame; `vlans` pushes 802.1Q tags outermost first (QinQ for two,
    the outer one with TPID 0x88a8)."""
    d = mac(dst) if isinstance(dst, str) else dst
    s = mac(src) if isinstance(src, str) else src
    tags = b""
    for i, vid in enumerate(vlans):
        if not 0 <= vid < 4096:
            raise UsageError(f"VLAN id {vid} out of range 0..4095")
        tpid = ETH_P_8021AD if len(vlans) > 1 and i == 0 else ETH_P_8021Q
        tags += struct.pack("!HH", tpid, vid)
    frame = d + s + tags + struct.pack("!H", ethertype) + payload
    if pad and len(frame) < ETH_ZLEN:
        frame += bytes(ETH_ZLEN - len(frame))
    return frame


def ipv4(src: Address, dst: Address, proto: int, payload: bytes, *, ttl: int = 64,
         tos: int = 0, ident: int = 0, dont_fragment: bool = True, more_fragments: bool = False,
         frag_offset: int = 0, options: bytes = b"") -> bytes:
    """An IPv4 packet with its header checksum; `options` is padded to 32-bit words."""
    if len(options) % 4:
        options += bytes(4 - len(options) % 4)
    ihl = 5 + len(options) // 4
    if ihl > 15:
        raise UsageError(f"IPv4 options of {len(options)} bytes exceed 40")
    flags = (0x4000 if dont_fragment else 0) | (0x2000 if more_fragments else 0)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, ihl * 4 + len(payload), ident,
                         flags | (frag_offset & 0x1FFF), ttl, proto, 0, ip_bytes(src),
                         ip_bytes(dst)) + options
    csum = checksum(header)
    return header[:10] + struct.pack("!H", csum) + header[12:] + payload


def ipv6(src: Address, dst: Address, next_header: int, payload: bytes, *, hop_limit: int = 64,
         traffic_class: int = 0, flow_label: int = 0) -> bytes:
    """An IPv6 packet; extension headers are part of `payload` (see `ipv6_ext`)."""
    first = (6 << 28) | (traffic_class << 20) | (flow_label & 0xFFFFF)
    return struct.pack("!IHBB16s16s", first, len(payload), next_header, hop_limit,
                       ip_bytes(src), ip_bytes(dst)) + payload


def ipv6_ext(kind: int, next_header: int, body: bytes = b"") -> bytes:
    """One IPv6 extension header (hop-by-hop, routing, destination options or fragment).

    Options headers are padded with PadN to a multiple of 8; a fragment header takes
    `body` as its 6 bytes of offset/flags and identification.
    """
    if kind == IPPROTO_FRAGMENT:
        return struct.pack("!BB", next_header, 0) + body.ljust(6, b"\0")[:6]
    data = body
    room = (-(len(data) + 2)) % 8
    if room == 1:
        data += b"\0"  # Pad1
    elif room:
        data += bytes([1, room - 2]) + bytes(room - 2)  # PadN
    return struct.pack("!BB", next_header, (len(data) + 2) // 8 - 1) + data


def udp(src: Address, dst: Address, sport: int, dport: int, payload: bytes = b"", *,
        with_checksum: bool = True) -> bytes:
    """A UDP datagram; IPv4 may leave the checksum zero, IPv6 always carries one."""
    length = 8 + len(payload)
    csum = 0
    if with_checksum or len(ip_bytes(src)) == 16:
        csum = checksum(struct.pack("!HHHH", sport, dport, length, 0) + payload,
                        _pseudo_sum(src, dst, IPPROTO_UDP, length)) or 0xFFFF
    return struct.pack("!HHHH", sport, dport, length, csum) + payload


def tcp(src: Address, dst: Address, sport: int, dport: int, payload: bytes = b"", *,
        seq: int = 0, ack: int = 0, flags: str | int = "A", window: int = 65535,
        urgent: int = 0, options: bytes = b"") -> bytes:
    """A TCP segment; `flags` as letters ("SA", "FPU") or the flag byte."""
    if isinstance(flags, str):
        try:
            bits = sum(TCP_FLAGS[f] for f in set(flags.upper()))
        except KeyError as exc:
            raise UsageError(f"unknown TCP flag in {flags!r} (use {''.join(TCP_FLAGS)})") \
                from exc
    else:
        bits = flags & 0xFF
    if len(options) % 4:
        options += bytes(4 - len(options) % 4)
    doff = 5 + len(options) // 4
    header = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                         doff << 4, bits, window, 0, urgent) + options
    segment = header + payload
    csum = checksum(segment, _pseudo_sum(src, dst, IPPROTO_TCP, len(segment)))
    return segment[:16] + struct.pack("!H", csum) + segment[18:]


def icmp_echo(ident: int, seq: int, payload: bytes = b"", *, reply: bool = False) -> bytes:
    """An ICMP (IPv4) echo request or reply (RFC 792)."""
    msg = struct.pack("!BBHHH", 0 if reply else 8, 0, 0, ident, seq) + payload
    return msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]


def icmpv6_echo(src: Address, dst: Address, ident: int, seq: int, payload: bytes = b"", *,
                reply: bool = False) -> bytes:
    """An ICMPv6 echo request or reply (RFC 4443 §4), checksum over the pseudo-header."""
    msg = struct.pack("!BBHHH", 129 if reply else 128, 0, 0, ident, seq) + payload
    csum = checksum(msg, _pseudo_sum(src, dst, IPPROTO_ICMPV6, len(msg)))
    return msg[:2] + struct.pack("!H", csum) + msg[4:]


DEFAULT_SRC_MAC = "02:00:00:00:00:01"
DEFAULT_DST_MAC = "02:00:00:00:00:02"


def _frame(src: Address, dst: Address, proto: int, l4: bytes, vlans: Sequence[int],
           src_mac: str, dst_mac: str, ttl: int) -> bytes:
    if len(ip_bytes(src)) == 4:
        return ethernet(dst_mac, src_mac, ETH_P_IP, ipv4(src, dst, proto, l4, ttl=ttl),
                        vlans=vlans)
    return ethernet(dst_mac, src_mac, ETH_P_IPV6, ipv6(src, dst, proto, l4, hop_limit=ttl),
                    vlans=vlans)


def udp_packet(src: Address, dst: Address, sport: int, dport: int, payload: bytes = b"", *,
               vlans: Sequence[int] = (), src_mac: str = DEFAULT_SRC_MAC,
               dst_mac: str = DEFAULT_DST_MAC, ttl: int = 64) -> bytes:
    """A whole Ethernet frame carrying UDP over IPv4 or IPv6 (chosen by the addresses)."""
    return _frame(src, dst, IPPROTO_UDP, udp(src, dst, sport, dport, payload), vlans,
                  src_mac, dst_mac, ttl)


def tcp_packet(src: Address, dst: Address, sport: int, dport: int, payload: bytes = b"", *,
               flags: str | int = "A", seq: int = 0, ack: int = 0, vlans: Sequence[int] = (),
               src_mac: str = DEFAULT_SRC_MAC, dst_mac: str = DEFAULT_DST_MAC,
               ttl: int = 64) -> bytes:
    """A whole Ethernet frame carrying TCP over IPv4 or IPv6."""
    segment = tcp(src, dst, sport, dport, payload, seq=seq, ack=ack, flags=flags)
    return _frame(src, dst, IPPROTO_TCP, segment, vlans, src_mac, dst_mac, ttl)


def icmp_packet(src: Address, dst: Address, ident: int = 1, seq: int = 1,
                payload: bytes = b"", *, reply: bool = False, vlans: Sequence[int] = (),
                src_mac: str = DEFAULT_SRC_MAC, dst_mac: str = DEFAULT_DST_MAC,
                ttl: int = 64) -> bytes:
    """An echo request (or reply) frame: ICMP for IPv4 addresses, ICMPv6 for IPv6."""
    if len(ip_bytes(src)) == 4:
        return _frame(src, dst, IPPROTO_ICMP, icmp_echo(ident, seq, payload, reply=reply),
                      vlans, src_mac, dst_mac, ttl)
    msg = icmpv6_echo(src, dst, ident, seq, payload, reply=reply)
    return _frame(src, dst, IPPROTO_ICMPV6, msg, vlans, src_mac, dst_mac, ttl)


@dataclass(frozen=True)
class Flow:
    """One conversation: the headers every packet of it shares."""

    proto: str  # "udp", "tcp" or "icmp" (ICMPv6 when the addresses are IPv6)
    src: str
    dst: str
    sport: int = 0  # for ICMP: the echo identifier
    dport: int = 0
    vlans: tuple[int, ...] = ()
    src_mac: str = DEFAULT_SRC_MAC
    dst_mac: str = DEFAULT_DST_MAC

    @property
    def ipv6(self) -> bool:
        return ":" in self.src

    @property
    def header_len(self) -> int:
        """Bytes of headers in front of the payload."""
        l3 = 40 if self.ipv6 else 20
        l4 = {"udp": 8, "tcp": 20, "icmp": 8}[self.proto]
        return ETH_HLEN + 4 * len(self.vlans) + l3 + l4

    def packet(self, payload: bytes = b"", *, flags: str | int = "A", seq: int = 0,
               ttl: int = 64) -> bytes:
        if self.proto == "udp":
            return udp_packet(self.src, self.dst, self.sport, self.dport, payload,
                              vlans=self.vlans, src_mac=self.src_mac, dst_mac=self.dst_mac,
                              ttl=ttl)
        if self.proto == "tcp":
            return tcp_packet(self.src, self.dst, self.sport, self.dport, payload,
                              flags=flags, seq=seq, vlans=self.vlans, src_mac=self.src_mac,
                              dst_mac=self.dst_mac, ttl=ttl)
        if self.proto == "icmp":
            return icmp_packet(self.src, self.dst, self.sport, seq & 0xFFFF, payload,
                               vlans=self.vlans, src_mac=self.src_mac, dst_mac=self.dst_mac,
                               ttl=ttl)
        raise UsageError(f"unknown flow protocol {self.proto!r} (udp, tcp or icmp)")


DEFAULT_MIX: Mapping[str, float] = {"udp4": 0.35, "tcp4": 0.3, "icmp4": 0.05, "udp6": 0.12,
                                    "tcp6": 0.12, "icmp6": 0.06}
IMIX: tuple[int, ...] = (60,) * 7 + (590,) * 4 + (1514,)  # simple IMIX, frame sizes w/o FCS
WELL_KNOWN_PORTS = (53, 80, 123, 443, 4000, 7, 9, 8080)
TCP_FLAG_CHOICES = ("S", "SA", "A", "A", "A", "PA", "PA", "FA", "R", "RA")
ANOMALIES = ("truncate", "ttl1", "garbage", "ip_options", "ipv6_ext", "bad_checksum",
             "tcp_flags", "non_ip")


def parse_mix(text: str | None) -> Mapping[str, float]:
    """A protocol mix written `udp4:0.5,tcp4:0.3,icmp4` (a bare kind weighs 1); None or
    "" is DEFAULT_MIX.  TrafficGenerator checks the kinds and weights."""
    if not text:
        return DEFAULT_MIX
    out: dict[str, float] = {}
    for item in text.split(","):
        kind, _, weight = item.strip().partition(":")
        try:
            out[kind] = float(weight) if weight else 1.0
        except ValueError:
            raise UsageError(f"protocol mix {text!r}: weight {weight!r} of {kind} is not a "
                             f"number") from None
    return out


class TrafficGenerator:
    """Seeded random traffic: a fixed set of flows, sizes and a protocol mix.

    The same arguments always give the same packets, on any machine and Python 3.11+
    (everything comes from one `random.Random(seed)`).  `anomalies` is the share of
    packets that are deliberately odd (truncated, TTL 1, random bytes, IPv4 options,
    IPv6 extension headers, a wrong checksum, strange TCP flags, a non-IP ethertype):
    parsers must survive them, and differential tests want them.
    """

    def __init__(self, seed: int, *, flows: int = 16, mix: Mapping[str, float] = DEFAULT_MIX,
                 sizes: Sequence[int] | None = None, vlan_share: float = 0.1,
                 anomalies: float = 0.0, src_net: str = "10.0.0.0/16",
                 dst_net: str = "10.1.0.0/24", src_net6: str = "2001:db8:1::/64",
                 dst_net6: str = "2001:db8:2::/64") -> None:
        if flows < 1:
            raise UsageError("a traffic generator needs at least one flow")
        unknown = set(mix) - {"udp4", "tcp4", "icmp4", "udp6", "tcp6", "icmp6"}
        if unknown or not mix or any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
            raise UsageError(f"bad protocol mix {dict(mix)!r}: weights >= 0 for udp4, tcp4, "
                             "icmp4, udp6, tcp6, icmp6")
        if not 0.0 <= anomalies <= 1.0 or not 0.0 <= vlan_share <= 1.0:
            raise UsageError("anomalies and vlan_share are shares between 0 and 1")
        self.rng = random.Random(seed)
        self.sizes = tuple(sizes) if sizes is not None else None
        self.anomalies = anomalies
        self._nets = {4: (ipaddress.ip_network(src_net), ipaddress.ip_network(dst_net)),
                      6: (ipaddress.ip_network(src_net6), ipaddress.ip_network(dst_net6))}
        kinds = list(mix)
        weights = [mix[k] for k in kinds]
        self.flows: list[Flow] = [self._new_flow(self.rng.choices(kinds, weights)[0], vlan_share)
                                  for _ in range(flows)]
        self._flow_weights = [1.0 / (i + 1) for i in range(flows)]  # a few heavy hitters
        self._seq = 0

    def _address(self, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
        host_bits = net.max_prefixlen - net.prefixlen
        offset = self.rng.randrange(1, 2 ** min(host_bits, 32) - 1) if host_bits > 1 else 0
        return str(net.network_address + offset)

    def _new_flow(self, kind: str, vlan_share: float) -> Flow:
        rng = self.rng
        proto, version = kind[:-1], int(kind[-1])
        src_net, dst_net = self._nets[version]
        vlans: tuple[int, ...] = ()
        if rng.random() < vlan_share:
            vlans = (rng.randrange(1, 4095),)
            if rng.random() < 0.2:
                vlans = (rng.randrange(1, 4095), *vlans)
        dport = rng.choice(WELL_KNOWN_PORTS) if rng.random() < 0.5 else rng.randrange(1, 65536)
        return Flow(proto, self._address(src_net), self._address(dst_net),
                    rng.randrange(1024, 65536), dport if proto != "icmp" else 0, vlans,
                    f"02:00:00:{rng.randrange(256):02x}:{rng.randrange(256):02x}:01",
                    DEFAULT_DST_MAC)

    def _frame_size(self) -> int:
        if self.sizes is None:
            return self.rng.randint(ETH_ZLEN, ETH_FRAME_MAX)
        return self.rng.choice(self.sizes)

    def packet(self) -> bytes:
        """The next packet."""
        rng = self.rng
        flow = rng.choices(self.flows, self._flow_weights)[0]
        self._seq += 1
        payload = rng.randbytes(max(0, self._frame_size() - flow.header_len))
        if rng.random() >= self.anomalies:
            flags = rng.choice(TCP_FLAG_CHOICES)
            return flow.packet(payload, flags=flags, seq=self._seq * 1000)
        return self._anomaly(flow, payload, rng.choice(ANOMALIES))

    def _anomaly(self, flow: Flow, payload: bytes, kind: str) -> bytes:
        rng = self.rng
        if kind == "truncate":
            frame = flow.packet(payload)
            return frame[:rng.randint(ETH_HLEN, max(ETH_HLEN, len(frame) - 1))]
        if kind == "ttl1":
            return flow.packet(payload, ttl=1)
        if kind == "garbage":
            return rng.randbytes(rng.randint(ETH_HLEN, 256))
        if kind == "tcp_flags":
            return flow.packet(payload, flags=rng.randrange(256))
        if kind == "bad_checksum":
            damaged = bytearray(flow.packet(payload))
            at = rng.randrange(ETH_HLEN + 4 * len(flow.vlans) + 10, len(damaged) - 1)
            damaged[at] ^= 0x5A
            return bytes(damaged)
        if kind == "non_ip":
            return ethernet(flow.dst_mac, flow.src_mac, rng.choice((ETH_P_ARP, 0x88CC, 0x9000)),
                            payload[:rng.randint(0, 200)], vlans=flow.vlans)
        proto = {"udp": IPPROTO_UDP, "tcp": IPPROTO_TCP}.get(flow.proto, IPPROTO_UDP)
        v6 = kind == "ipv6_ext" or flow.ipv6
        src = flow.src if flow.ipv6 or not v6 else "2001:db8:1::9"
        dst = flow.dst if flow.ipv6 or not v6 else "2001:db8:2::9"
        l4 = (udp(src, dst, flow.sport, flow.dport, payload[:300]) if proto == IPPROTO_UDP
              else tcp(src, dst, flow.sport, flow.dport, payload[:300], flags="PA"))
        if not v6:  # ip_options
            opts = bytes([7, 7, 4]) + rng.randbytes(4) + bytes([1])  # record route, NOP
            return ethernet(flow.dst_mac, flow.src_mac, ETH_P_IP,
                            ipv4(src, dst, proto, l4, options=opts), vlans=flow.vlans)
        chain = [IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT]
        kinds = [k for k in chain if rng.random() < 0.6] or [IPPROTO_DSTOPTS]
        body = l4
        for i in reversed(range(len(kinds))):
            nxt = proto if i == len(kinds) - 1 else kinds[i + 1]
            if kinds[i] == IPPROTO_FRAGMENT:  # a first fragment or a later one
                ext_body = struct.pack("!HI", rng.choice((0, 185)) << 3 | 1,
                                       rng.randrange(2**32))
            else:
                ext_body = rng.randbytes(rng.randrange(0, 14))
            body = ipv6_ext(kinds[i], nxt, ext_body) + body
        return ethernet(flow.dst_mac, flow.src_mac, ETH_P_IPV6, ipv6(src, dst, kinds[0], body),
                        vlans=flow.vlans)

    def packets(self, count: int) -> list[bytes]:
        return [self.packet() for _ in range(count)]

    def __iter__(self) -> Iterator[bytes]:
        while True:
            yield self.packet()
