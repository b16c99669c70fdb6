"""vxdp.packets: layouts, lengths and checksums, checked against references computed
another way (big-integer arithmetic modulo 0xFFFF) and, when present, against tshark."""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vxdp import packets as P
from vxdp.errors import UsageError


def ones_sum_is_zero(data: bytes) -> bool:
    """A block with a correct Internet checksum sums to 0xFFFF in ones' complement.

    Reference without word loops: the ones' complement sum of 16-bit words is congruent to
    the whole block read as one big-endian integer modulo 2**16 - 1 (65536 = 1 mod 65535),
    and 0xFFFF, negative zero, is 0 modulo 65535.
    """
    if len(data) % 2:
        data += b"\0"
    return int.from_bytes(data, "big") % 0xFFFF == 0


def pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    if len(s) == 4:
        return s + d + bytes([0, proto]) + length.to_bytes(2, "big")
    return s + d + length.to_bytes(4, "big") + bytes([0, 0, 0, proto])


def split_ipv4(frame: bytes, l2: int = 14) -> tuple[bytes, bytes]:
    ihl = (frame[l2] & 0x0F) * 4
    total = int.from_bytes(frame[l2 + 2:l2 + 4], "big")
    return frame[l2:l2 + ihl], frame[l2 + ihl:l2 + total]


def test_rfc1071_example():
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2; the checksum is its complement
    assert P.checksum(bytes.fromhex("0001f203f4f5f6f7")) == (~0xDDF2) & 0xFFFF


def test_checksum_of_odd_length_pads_with_zero():
    assert P.checksum(b"\x12\x34\x56") == P.checksum(b"\x12\x34\x56\x00")


def test_udp4_frame_layout_and_checksums():
    frame = P.udp_packet("10.0.0.1", "10.0.0.2", 1234, 53, b"hello")
    assert frame[:6] == P.mac(P.DEFAULT_DST_MAC) and frame[6:12] == P.mac(P.DEFAULT_SRC_MAC)
    assert frame[12:14] == b"\x08\x00"
    assert len(frame) == P.ETH_ZLEN  # 14 + 20 + 8 + 5 = 47, padded to 60
    ip, l4 = split_ipv4(frame)
    assert ones_sum_is_zero(ip)
    assert struct.unpack("!HHH", l4[:6]) == (1234, 53, 13)
    assert l4[8:] == b"hello"
    assert ones_sum_is_zero(pseudo("10.0.0.1", "10.0.0.2", 17, len(l4)) + l4)


def test_tcp6_with_qinq_vlans():
    frame = P.tcp_packet("2001:db8::1", "2001:db8::2", 40000, 443, b"x" * 33, flags="SA",
                         seq=7, ack=9, vlans=(100, 200))
    assert frame[12:14] == b"\x88\xa8" and int.from_bytes(frame[14:16], "big") == 100
    assert frame[16:18] == b"\x81\x00" and int.from_bytes(frame[18:20], "big") == 200
    assert frame[20:22] == b"\x86\xdd"
    ip6 = frame[22:62]
    plen, nh = struct.unpack("!HB", ip6[4:7])
    seg = frame[62:62 + plen]
    assert nh == 6 and plen == 20 + 33
    assert seg[13] == 0x12  # SYN|ACK
    assert struct.unpack("!II", seg[4:12]) == (7, 9)
    assert ones_sum_is_zero(pseudo("2001:db8::1", "2001:db8::2", 6, plen) + seg)


def test_icmp_echo_v4_and_v6():
    v4 = P.icmp_packet("192.0.2.1", "192.0.2.2", 0x4242, 3, b"ping")
    ip, msg = split_ipv4(v4)
    assert ones_sum_is_zero(ip) and msg[0] == 8 and ones_sum_is_zero(msg)
    v6 = P.icmp_packet("2001:db8::a", "2001:db8::b", 1, 2, b"ping", reply=True)
    msg6 = v6[54:]
    assert v6[20] == 58 and msg6[0] == 129
    assert ones_sum_is_zero(pseudo("2001:db8::a", "2001:db8::b", 58, len(msg6)) + msg6)


def test_ipv4_options_and_fragment_fields():
    pkt = P.ipv4("10.0.0.1", "10.0.0.2", 17, b"abc", options=b"\x01\x01\x01",
                 dont_fragment=False, more_fragments=True, frag_offset=5, ttl=3, ident=77)
    assert pkt[0] == 0x46 and len(pkt) == 24 + 3
    assert struct.unpack("!HHHB", pkt[2:9]) == (27, 77, 0x2005, 3)
    assert ones_sum_is_zero(pkt[:24])


def test_ipv6_extension_headers_are_8_byte_multiples():
    for body in (b"", b"x", b"abcdef", b"0123456789abc"):
        ext = P.ipv6_ext(P.IPPROTO_DSTOPTS, 17, body)
        assert len(ext) % 8 == 0 and ext[0] == 17 and (ext[1] + 1) * 8 == len(ext)
    frag = P.ipv6_ext(P.IPPROTO_FRAGMENT, 6, b"\x00\x08\x00\x00\x00\x01")
    assert len(frag) == 8 and frag[0] == 6


def test_udp4_zero_checksum_allowed_but_not_for_ipv6():
    assert P.udp("10.0.0.1", "10.0.0.2", 1, 2, b"", with_checksum=False)[6:8] == b"\0\0"
    assert P.udp("::1", "::2", 1, 2, b"", with_checksum=False)[6:8] != b"\0\0"


def test_bad_input_raises_usage_error():
    with pytest.raises(UsageError):
        P.mac("02:00")
    with pytest.raises(UsageError):
        P.ip_bytes("10.0.0.300")
    with pytest.raises(UsageError):
        P.ethernet(b"\0" * 6, b"\0" * 6, 0x800, b"", vlans=(5000,))
    with pytest.raises(UsageError):
        P.tcp("10.0.0.1", "10.0.0.2", 1, 2, flags="SZ")
    with pytest.raises(UsageError):
        P.udp("10.0.0.1", "::2", 1, 2)
    with pytest.raises(UsageError):
        P.TrafficGenerator(1, mix={"sctp4": 1.0})


@settings(max_examples=150, deadline=None)
@given(sport=st.integers(0, 65535), dport=st.integers(0, 65535),
       payload=st.binary(max_size=300), v6=st.booleans(), tcp=st.booleans())
def test_l4_checksums_match_the_reference(sport, dport, payload, v6, tcp):
    src, dst = ("2001:db8::1", "2001:db8::99") if v6 else ("10.9.8.7", "10.1.2.3")
    build = P.tcp_packet if tcp else P.udp_packet
    frame = build(src, dst, sport, dport, payload)
    if v6:
        plen = int.from_bytes(frame[18:20], "big")
        seg = frame[54:54 + plen]
    else:
        ip, seg = split_ipv4(frame)
        assert ones_sum_is_zero(ip)
    assert ones_sum_is_zero(pseudo(src, dst, 6 if tcp else 17, len(seg)) + seg)
    assert seg.endswith(payload)


def test_generator_is_deterministic_per_seed():
    a = P.TrafficGenerator(42, anomalies=0.3).packets(300)
    b = P.TrafficGenerator(42, anomalies=0.3).packets(300)
    c = P.TrafficGenerator(43, anomalies=0.3).packets(300)
    assert a == b
    assert a != c


def test_generator_respects_mix_sizes_and_flows():
    gen = P.TrafficGenerator(7, flows=5, mix={"udp4": 1.0}, sizes=P.IMIX, vlan_share=0.0)
    assert len(gen.flows) == 5 and all(f.proto == "udp" and not f.ipv6 for f in gen.flows)
    seen = set()
    for frame in gen.packets(200):
        assert len(frame) in set(P.IMIX)
        ip, l4 = split_ipv4(frame)
        assert ones_sum_is_zero(ip) and ip[9] == 17
        seen.add((ip[12:20], l4[:4]))
    assert len(seen) <= 5


def test_generator_anomalies_stay_feedable():
    """Odd packets are still at least an Ethernet header (BPF_PROG_TEST_RUN's minimum)."""
    frames = P.TrafficGenerator(3, anomalies=1.0).packets(400)
    assert min(len(f) for f in frames) >= P.ETH_HLEN
    assert max(len(f) for f in frames) <= P.ETH_FRAME_MAX
    assert len(set(frames)) > 350


def _write_pcap(path: Path, frames: list[bytes]) -> None:
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # LINKTYPE_ETHERNET
        for i, frame in enumerate(frames):
            f.write(struct.pack("<IIII", i, 0, len(frame), len(frame)) + frame)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_validates_every_checksum(tmp_path):
    frames = [P.udp_packet("10.0.0.1", "10.0.0.2", 5000, 6000, b"a" * 40),
              P.tcp_packet("10.0.0.1", "10.0.0.2", 5000, 80, b"GET /", flags="PA"),
              P.udp_packet("2001:db8::1", "2001:db8::2", 5000, 6000, b"b" * 3, vlans=(7,)),
              P.tcp_packet("2001:db8::1", "2001:db8::2", 5000, 443, flags="S", vlans=(1, 2)),
              P.icmp_packet("10.0.0.1", "10.0.0.2", 1, 1, b"ping"),
              P.icmp_packet("2001:db8::1", "2001:db8::2", 1, 1, b"ping")]
    frames += P.TrafficGenerator(11, flows=8).packets(40)
    pcap = tmp_path / "t.pcap"
    _write_pcap(pcap, frames)
    fields = ["ip.checksum.status", "udp.checksum.status", "tcp.checksum.status",
              "icmp.checksum.status", "icmpv6.checksum.status", "_ws.expert"]
    cmd = ["tshark", "-n", "-r", str(pcap), "-o", "ip.check_checksum:TRUE",
           "-o", "udp.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
           "-T", "fields", "-E", "separator=|"] + [a for f in fields for a in ("-e", f)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    lines = out.splitlines()
    assert len(lines) == len(frames)
    for i, line in enumerate(lines):
        statuses = [s for s in line.split("|")[:5] if s]
        # tshark: 0 bad, 1 good, 2 unverified; every frame has an IP and an L4 checksum
        assert statuses and all(s == "1" for s in statuses), f"frame {i}: {line}"


def _l4_after_ipv6_ext(frame: bytes, l2: int) -> tuple[int, bytes, bytes, bytes]:
    """(protocol, segment, src, dst) past any IPv6 extension headers."""
    ip6 = frame[l2:l2 + 40]
    nh, src, dst = ip6[6], ip6[8:24], ip6[24:40]
    pos, end = l2 + 40, l2 + 40 + int.from_bytes(ip6[4:6], "big")
    while nh in (P.IPPROTO_HOPOPTS, P.IPPROTO_ROUTING, P.IPPROTO_DSTOPTS, P.IPPROTO_FRAGMENT):
        size = 8 if nh == P.IPPROTO_FRAGMENT else (frame[pos + 1] + 1) * 8
        nh, pos = frame[pos], pos + size
    return nh, frame[pos:end], src, dst


@pytest.mark.parametrize("seed", range(6))
def test_anomalous_headers_still_carry_valid_checksums(seed):
    """IPv4 options and IPv6 extension headers are odd, not broken: checksums hold."""
    gen = P.TrafficGenerator(seed, flows=6, mix={"udp4": 1.0, "tcp4": 1.0, "udp6": 1.0})
    for i, flow in enumerate(gen.flows):
        for kind in ("ip_options", "ipv6_ext"):
            frame = gen._anomaly(flow, bytes(range(i * 7 % 200)), kind)
            l2 = P.ETH_HLEN + 4 * len(flow.vlans)
            if frame[l2 - 2:l2] == b"\x08\x00":
                ip, seg = split_ipv4(frame, l2)
                assert len(ip) > 20 and ones_sum_is_zero(ip)
                proto, src, dst = ip[9], ip[12:16], ip[16:20]
            else:
                assert kind == "ipv6_ext" or flow.ipv6
                proto, seg, src, dst = _l4_after_ipv6_ext(frame, l2)
            s, d = (str(ipaddress.ip_address(a)) for a in (src, dst))
            assert proto in (6, 17)
            assert ones_sum_is_zero(pseudo(s, d, proto, len(seg)) + seg), (seed, i, kind)
