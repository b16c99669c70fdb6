"""Packet capture files: classic pcap read and write, pcapng read (Ethernet only).

    packets = read_pcap("in.pcap")             # pcap (either byte order, usec or nsec) or pcapng
    write_pcap("out.pcap", packets)            # classic pcap, little-endian, microseconds

Formats as tcpdump and Wireshark write them (draft-ietf-opsawg-pcap, draft-ietf-opsawg-
pcapng): a pcap file is a 24-byte header whose magic gives the byte order and the
timestamp unit, then records of (ts_sec, ts_frac, incl_len, orig_len, data).  A pcapng file
is blocks; Enhanced and Simple Packet Blocks carry packets, and each packet's interface must
be Ethernet.  Only LINKTYPE_ETHERNET (1) is accepted: XDP sees Ethernet frames.  Truncated
or inconsistent files raise UsageError naming the record (or block) index.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vxdp.errors import UsageError

LINKTYPE_ETHERNET = 1
DEFAULT_SNAPLEN = 262144  # what tcpdump and Wireshark use
MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
PCAPNG_IDB, PCAPNG_SPB, PCAPNG_EPB = 1, 3, 6
IF_TSRESOL = 9  # pcapng interface option: timestamp resolution


@dataclass(frozen=True)
class Packet:
    """One captured frame: its bytes, when it was seen, and how long it was on the wire."""

    data: bytes
    timestamp_ns: int = 0
    orig_len: int | None = None  # None: the whole frame was captured

    @property
    def wire_len(self) -> int:
        return self.orig_len if self.orig_len is not None else len(self.data)


def read_pcap(source: Path | str | bytes) -> list[Packet]:
    """Every packet of a pcap or pcapng file (a path, or the file's bytes)."""
    if isinstance(source, bytes):
        data, name = source, "pcap data"
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None
        name = str(source)
    if len(data) >= 4 and struct.unpack_from("<I", data)[0] == PCAPNG_SHB:
        return _read_pcapng(data, name)
    return _read_classic(data, name)


def _read_classic(data: bytes, name: str) -> list[Packet]:
    if len(data) < 24:
        raise UsageError(f"{name}: not a pcap file (only {len(data)} bytes)")
    for order in ("<", ">"):
        magic = struct.unpack_from(order + "I", data)[0]
        if magic in (MAGIC_USEC, MAGIC_NSEC):
            break
    else:
        raise UsageError(f"{name}: not a pcap or pcapng file (magic {data[:4].hex()})")
    scale = 1 if magic == MAGIC_NSEC else 1000
    major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack_from(order + "HHiIII",
                                                                          data, 4)
    if major != 2:
        raise UsageError(f"{name}: pcap version {major} is not supported (2.x only)")
    linktype = network & 0x0FFFFFFF  # the top bits may carry FCS information
    if linktype != LINKTYPE_ETHERNET:
        raise UsageError(f"{name}: link type {linktype} is not Ethernet "
                         f"(LINKTYPE_ETHERNET = 1); XDP sees Ethernet frames")
    record = struct.Struct(order + "IIII")
    packets: list[Packet] = []
    pos = 24
    while pos < len(data):
        index = len(packets)
        if pos + record.size > len(data):
            raise UsageError(f"{name}: record {index}: truncated header "
                             f"({len(data) - pos} of {record.size} bytes)")
        sec, frac, incl, orig = record.unpack_from(data, pos)
        pos += record.size
        if snaplen and incl > max(snaplen, DEFAULT_SNAPLEN):
            raise UsageError(f"{name}: record {index}: captured length {incl} exceeds "
                             f"the snapshot length {snaplen}")
        if pos + incl > len(data):
            raise UsageError(f"{name}: record {index}: truncated data "
                             f"({len(data) - pos} of {incl} bytes)")
        if frac >= 1_000_000_000 // scale:
            raise UsageError(f"{name}: record {index}: sub-second timestamp {frac} is out "
                             f"of range")
        frame = data[pos: pos + incl]
        pos += incl
        packets.append(Packet(frame, sec * 1_000_000_000 + frac * scale,
                              orig if orig != incl else None))
    return packets


def _read_pcapng(data: bytes, name: str) -> list[Packet]:
    packets: list[Packet] = []
    interfaces: list[tuple[int, int]] = []  # (linktype, ns per timestamp unit numerator)
    order = "<"
    pos = 0
    block = 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise UsageError(f"{name}: block {block}: truncated block header")
        btype = struct.unpack_from("<I", data, pos)[0]
        if btype == PCAPNG_SHB:
            bom = data[pos + 8: pos + 12]
            if bom == struct.pack("<I", PCAPNG_BYTE_ORDER_MAGIC):
                order = "<"
            elif bom == struct.pack(">I", PCAPNG_BYTE_ORDER_MAGIC):
                order = ">"
            else:
                raise UsageError(f"{name}: block {block}: bad byte-order magic {bom.hex()}")
            interfaces = []  # a new section starts over
        btype, length = struct.unpack_from(order + "II", data, pos)
        if length < 12 or length % 4 or pos + length > len(data):
            raise UsageError(f"{name}: block {block}: length {length} is invalid or runs "
                             f"past the end of the file")
        body = data[pos + 8: pos + length - 4]
        if btype == PCAPNG_IDB:
            interfaces.append(_idb(body, order, name, block))
        elif btype in (PCAPNG_EPB, PCAPNG_SPB):
            packets.append(_packet_block(btype, body, order, interfaces, name, len(packets)))
        pos += length
        block += 1
    return packets


def _idb(body: bytes, order: str, name: str, block: int) -> tuple[int, int]:
    if len(body) < 8:
        raise UsageError(f"{name}: block {block}: truncated interface description")
    linktype = struct.unpack_from(order + "H", body)[0]
    resol = 6  # microseconds unless if_tsresol says otherwise
    pos = 8
    while pos + 4 <= len(body):
        code, olen = struct.unpack_from(order + "HH", body, pos)
        if code == 0:
            break
        if code == IF_TSRESOL and olen >= 1:
            resol = body[pos + 4]
        pos += 4 + (olen + 3) // 4 * 4
    if resol & 0x80:
        raise UsageError(f"{name}: block {block}: power-of-two timestamp resolution "
                         f"is not supported")
    return linktype, resol


def _packet_block(btype: int, body: bytes, order: str, interfaces: list[tuple[int, int]],
                  name: str, index: int) -> Packet:
    if btype == PCAPNG_SPB:
        iface, ts, incl, orig, head = 0, 0, None, struct.unpack_from(order + "I", body)[0], 4
    else:
        if len(body) < 20:
            raise UsageError(f"{name}: packet {index}: truncated enhanced packet block")
        iface, hi, lo, incl, orig = struct.unpack_from(order + "5I", body)
        ts, head = (hi << 32) | lo, 20
    if iface >= len(interfaces):
        raise UsageError(f"{name}: packet {index}: interface {iface} was never described")
    linktype, resol = interfaces[iface]
    if linktype != LINKTYPE_ETHERNET:
        raise UsageError(f"{name}: packet {index}: interface {iface} has link type "
                         f"{linktype}, not Ethernet (1)")
    if incl is None:  # simple packet block: captured length is what the block holds
        incl = min(orig, len(body) - head)
    if head + incl > len(body):
        raise UsageError(f"{name}: packet {index}: truncated data ({len(body) - head} of "
                         f"{incl} bytes)")
    ts_ns = ts * 10 ** 9 // 10 ** resol
    return Packet(body[head: head + incl], ts_ns, orig if orig != incl else None)


def pcap_bytes(packets: Iterable[Packet | bytes], *, nsec: bool = False,
               snaplen: int = DEFAULT_SNAPLEN, big_endian: bool = False) -> bytes:
    """A classic pcap file holding the packets (frames longer than snaplen are cut)."""
    order = ">" if big_endian else "<"
    out = bytearray(struct.pack(order + "IHHiIII", MAGIC_NSEC if nsec else MAGIC_USEC, 2, 4,
                                0, 0, snaplen, LINKTYPE_ETHERNET))
    scale = 1 if nsec else 1000
    for p in packets:
        pkt = p if isinstance(p, Packet) else Packet(p)
        frame = pkt.data[:snaplen]
        sec, rest = divmod(pkt.timestamp_ns, 1_000_000_000)
        if not 0 <= sec < 2 ** 32:
            raise UsageError(f"timestamp {pkt.timestamp_ns} ns does not fit a pcap record")
        out += struct.pack(order + "IIII", sec, rest // scale, len(frame), pkt.wire_len)
        out += frame
    return bytes(out)


def write_pcap(path: Path | str, packets: Iterable[Packet | bytes], *, nsec: bool = False,
               snaplen: int = DEFAULT_SNAPLEN, big_endian: bool = False) -> None:
    data = pcap_bytes(packets, nsec=nsec, snaplen=snaplen, big_endian=big_endian)
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


__all__ = ["LINKTYPE_ETHERNET", "Packet", "pcap_bytes", "read_pcap", "write_pcap"]
