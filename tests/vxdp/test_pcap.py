"""vxdp.pcap: classic pcap both ways, pcapng in, checked against Wireshark's tools."""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from vxdp.errors import UsageError
from vxdp.pcap import Packet, pcap_bytes, read_pcap, write_pcap

ETH_IP = bytes.fromhex("ffffffffffff" "020000000001" "0800") + bytes(range(46))
PACKETS = [
    Packet(ETH_IP, 1_700_000_000_123_456_000),
    Packet(ETH_IP[:20] + b"\xaa" * 80, 1_700_000_001_000_001_000),
    Packet(ETH_IP[:14], 1_700_000_002_999_999_000, orig_len=1514),  # cut by snaplen upstream
]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package tshark)")
    return path


@pytest.mark.parametrize("nsec", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_round_trip_every_variant(tmp_path, nsec, big_endian):
    path = tmp_path / "x.pcap"
    write_pcap(path, PACKETS, nsec=nsec, big_endian=big_endian)
    assert read_pcap(path) == PACKETS
    assert read_pcap(path.read_bytes()) == PACKETS


def test_nanoseconds_survive_only_in_nsec_files():
    p = [Packet(ETH_IP, 5_000_000_123)]
    assert read_pcap(pcap_bytes(p, nsec=True))[0].timestamp_ns == 5_000_000_123
    assert read_pcap(pcap_bytes(p))[0].timestamp_ns == 5_000_000_000


def test_plain_bytes_and_snaplen_cut():
    got = read_pcap(pcap_bytes([ETH_IP, ETH_IP[:30]], snaplen=40))
    assert [p.data for p in got] == [ETH_IP[:40], ETH_IP[:30]]
    assert got[0].orig_len == len(ETH_IP) and got[1].orig_len is None
    assert got[0].wire_len == len(ETH_IP) and got[1].wire_len == 30


def _header(linktype: int = 1, magic: int = 0xA1B2C3D4, major: int = 2) -> bytes:
    return struct.pack("<IHHiIII", magic, major, 4, 0, 0, 65535, linktype)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "not a pcap file"),
    (b"\x00" * 24, "not a pcap or pcapng file"),
    (_header(linktype=113), "link type 113 is not Ethernet"),
    (_header(major=3), "pcap version 3"),
    (pcap_bytes(PACKETS)[:-5], "record 2: truncated data"),
    (pcap_bytes(PACKETS)[: 24 + 16 + len(ETH_IP) + 7], "record 1: truncated header"),
    (_header() + struct.pack("<IIII", 0, 0, 300000, 300000), "record 0: captured length 300000"
                                                           " exceeds the snapshot length"),
    (_header() + struct.pack("<IIII", 0, 1_000_000, 0, 0), "record 0: sub-second timestamp"),
])
def test_bad_files_name_the_problem_and_record(data, message):
    with pytest.raises(UsageError, match=message):
        read_pcap(data)


def test_missing_file(tmp_path):
    with pytest.raises(UsageError, match="cannot read"):
        read_pcap(tmp_path / "none.pcap")


def test_tshark_reads_our_files(tmp_path):
    tshark = tool("tshark")
    for nsec in (False, True):
        path = tmp_path / f"ours-{nsec}.pcap"
        write_pcap(path, PACKETS, nsec=nsec)
        out = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.len",
                              "-e", "frame.cap_len", "-e", "frame.time_epoch", "-e", "eth.dst"],
                             capture_output=True, text=True, check=True, timeout=60)
        rows = [line.split("\t") for line in out.stdout.strip().splitlines()]
        assert [(r[0], r[1]) for r in rows] == [("60", "60"), ("100", "100"), ("1514", "14")]
        assert rows[0][2].startswith("1700000000.123456")
        assert rows[0][3] == "ff:ff:ff:ff:ff:ff"


def test_pcapng_from_editcap_reads_the_same(tmp_path):
    editcap = tool("editcap")
    classic = tmp_path / "in.pcap"
    write_pcap(classic, PACKETS, nsec=True)
    ng = tmp_path / "out.pcapng"
    subprocess.run([editcap, "-F", "pcapng", str(classic), str(ng)], check=True,
                   capture_output=True, timeout=60)
    got = read_pcap(ng)
    assert [p.data for p in got] == [p.data for p in PACKETS]
    assert [p.wire_len for p in got] == [p.wire_len for p in PACKETS]
    assert [p.timestamp_ns for p in got] == [p.timestamp_ns for p in PACKETS]


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def test_pcapng_by_hand_simple_blocks_and_errors():
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = _block(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HHB3x", 9, 1, 9)
                 + struct.pack("<HH", 0, 0))  # if_tsresol = 9: nanoseconds
    epb = _block(6, struct.pack("<5I", 0, 0, 1_500, len(ETH_IP), len(ETH_IP)) + ETH_IP)
    spb = _block(3, struct.pack("<I", 20) + ETH_IP[:20])
    got = read_pcap(shb + idb + epb + spb)
    assert got == [Packet(ETH_IP, 1_500), Packet(ETH_IP[:20])]
    idb_other = _block(1, struct.pack("<HHI", 101, 0, 0))
    with pytest.raises(UsageError, match="packet 0: interface 0 has link type 101"):
        read_pcap(shb + idb_other + epb)
    with pytest.raises(UsageError, match="packet 0: interface 0 was never described"):
        read_pcap(shb + epb)
    with pytest.raises(UsageError, match="block 2: length"):
        read_pcap(shb + idb + epb[:-8])
