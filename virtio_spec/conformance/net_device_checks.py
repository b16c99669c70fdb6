"""Device-side checks of the network device (virtio 1.3 §5.1).

Config fields (§5.1.4.1), the transmit header (§5.1.6.2.2), receive buffers and the
header the device writes (§5.1.6.3.2, §5.1.6.4.1), control commands (§5.1.6.5).  The
XDP offload's own rules are in `offload_checks`.  Checks that need the wire are not
applicable when the adapter cannot reach it.

PYTEST_DONT_REWRITE: a check's message is the same under pytest (the plugin) as under
`vxdp conformance`.
"""

from __future__ import annotations

import struct

from ..ctrl import (
    VIRTIO_NET_OK,
    VirtioNetCtrlClass,
    VirtioNetCtrlMac,
    VirtioNetCtrlRx,
)
from ..features import VirtioFeature, VirtioNetFeature, mask_of
from ..structs import VIRTIO_NET_CONFIG_OFFSETS, VIRTIO_NET_HDR_GSO_ECN
from .adapter import DeviceFactory, NotApplicable
from .probes import wire
from .registry import device_clause
from .session import DEFAULT_WANT, DriverSession, SetupError, ethernet_frame, net_hdr

_F, _N = VirtioFeature, VirtioNetFeature
_CL = VirtioNetCtrlClass
_GUEST_GSO = mask_of([_N.VIRTIO_NET_F_GUEST_TSO4, _N.VIRTIO_NET_F_GUEST_TSO6,
                      _N.VIRTIO_NET_F_GUEST_UFO, _N.VIRTIO_NET_F_GUEST_USO4,
                      _N.VIRTIO_NET_F_GUEST_USO6])


def _config_session(make: DeviceFactory) -> DriverSession:
    """A session that has read nothing and negotiated nothing (config before FEATURES_OK
    is readable, §2.5.2)."""
    return DriverSession(make())


def _u(s: DriverSession, name: str, size: int) -> int:
    return s.config(name, size)


# ----------------------------------------------------------------------------------------
# §5.1.4.1 configuration fields


@device_clause("5.1.4.1", "max_virtqueue_pairs in 1..0x8000",
               "A device offering MQ must set max_virtqueue_pairs between 1 and 0x8000.",
               requires=[_N.VIRTIO_NET_F_MQ])
def check_5_1_4_1_max_pairs(make: DeviceFactory) -> None:
    """The device MUST set max_virtqueue_pairs to between 1 and 0x8000 inclusive, if it
    offers VIRTIO_NET_F_MQ (virtio 1.3 §5.1.4.1)."""
    pairs = _u(_config_session(make), "max_virtqueue_pairs", 2)
    assert 1 <= pairs <= 0x8000, f"max_virtqueue_pairs is {pairs}"


@device_clause("5.1.4.1", "mtu in 68..65535",
               "A device offering MTU must set mtu between 68 and 65535.", n=2,
               requires=[_N.VIRTIO_NET_F_MTU])
def check_5_1_4_1_mtu_range(make: DeviceFactory) -> None:
    """The device MUST set mtu to between 68 and 65535 inclusive, if it offers
    VIRTIO_NET_F_MTU (virtio 1.3 §5.1.4.1)."""
    mtu = _u(_config_session(make), "mtu", 2)
    assert 68 <= mtu <= 65535, f"mtu is {mtu}"


@device_clause("5.1.4.1", "mtu never modified",
               "The device must not modify mtu once it has been set.", n=3,
               requires=[_N.VIRTIO_NET_F_MTU])
def check_5_1_4_1_mtu_stable(make: DeviceFactory) -> None:
    """The device MUST NOT modify mtu once it has been set (virtio 1.3 §5.1.4.1): the
    same before negotiation, once live, after traffic and after a reset."""
    s = _config_session(make)
    seen = [("before negotiation", _u(s, "mtu", 2))]
    s.bring_up()
    seen.append(("live", _u(s, "mtu", 2)))
    port = wire(s)
    if port is not None:
        s.post_rx(2, 1526 + s.hdr_size)
        port.receive([ethernet_frame(5)])
        s.transmit(ethernet_frame(6))
        seen.append(("after traffic", _u(s, "mtu", 2)))
    s.reset()
    seen.append(("after reset", _u(s, "mtu", 2)))
    assert len({v for _, v in seen}) == 1, f"mtu moved: {seen}"


@device_clause("5.1.4.1", "rss_max_key_size at least 40",
               "A device offering RSS or HASH_REPORT must set rss_max_key_size to at least "
               "40.", n=4, requires_any=[_N.VIRTIO_NET_F_RSS, _N.VIRTIO_NET_F_HASH_REPORT])
def check_5_1_4_1_rss_key(make: DeviceFactory) -> None:
    """The device MUST set rss_max_key_size to at least 40, if it offers
    VIRTIO_NET_F_RSS or VIRTIO_NET_F_HASH_REPORT (virtio 1.3 §5.1.4.1)."""
    size = _u(_config_session(make), "rss_max_key_size", 1)
    assert size >= 40, f"rss_max_key_size is {size}"


@device_clause("5.1.4.1", "rss_max_indirection_table_length at least 128",
               "A device offering RSS must set rss_max_indirection_table_length to at least "
               "128.", n=5, requires=[_N.VIRTIO_NET_F_RSS])
def check_5_1_4_1_rss_table(make: DeviceFactory) -> None:
    """The device MUST set rss_max_indirection_table_length to at least 128, if it
    offers VIRTIO_NET_F_RSS (virtio 1.3 §5.1.4.1)."""
    length = _u(_config_session(make), "rss_max_indirection_table_length", 2)
    assert length >= 128, f"rss_max_indirection_table_length is {length}"


# ----------------------------------------------------------------------------------------
# §5.1.6.2.2 transmit, §5.1.6.3.2 / §5.1.6.4.1 receive


def _wired(make: DeviceFactory, want: int = DEFAULT_WANT) -> tuple[DriverSession, object]:
    s = DriverSession(make()).bring_up(want)
    port = wire(s)
    if port is None:
        raise NotApplicable("needs access to the wire")
    return s, port


def _tx_unchanged(make: DeviceFactory, hdr: bytes, what: str, want: int = DEFAULT_WANT) -> None:
    s = DriverSession(make()).bring_up(want)
    port = wire(s)
    if port is None:
        raise NotApplicable("needs access to the wire")
    frame = ethernet_frame(7, 100)
    s.transmit(frame, hdr)
    sent = port.take_transmitted()
    assert sent == [frame], f"header with {what}: the wire saw {[f.hex() for f in sent]}"


@device_clause("5.1.6.2.2", "unknown header flags ignored",
               "The device must ignore flag bits it does not recognize in a transmit header.",
               requires=[_N.VIRTIO_NET_F_CSUM])
def check_5_1_6_2_2_unknown_flags(make: DeviceFactory) -> None:
    """The device MUST ignore flag bits that it does not recognize (virtio 1.3
    §5.1.6.2.2): with VIRTIO_NET_F_CSUM negotiated (without it the driver must send
    flags 0, §5.1.6.2.1), a header setting undefined flag bits goes out unchanged."""
    _tx_unchanged(make, net_hdr(flags=0xF0), "undefined flags 0xf0",
                  DEFAULT_WANT | 1 << _N.VIRTIO_NET_F_CSUM)


@device_clause("5.1.6.2.2", "csum fields unused without NEEDS_CSUM",
               "Without VIRTIO_NET_HDR_F_NEEDS_CSUM the device must not use csum_start and "
               "csum_offset.", n=2)
def check_5_1_6_2_2_no_csum(make: DeviceFactory) -> None:
    """If the VIRTIO_NET_HDR_F_NEEDS_CSUM bit in flags is not set, the device MUST NOT
    use the csum_start and csum_offset (virtio 1.3 §5.1.6.2.2): the frame is sent as is."""
    _tx_unchanged(make, net_hdr(csum_start=14, csum_offset=2), "csum_start 14 csum_offset 2")


def _receive(s: DriverSession, port: object, frames: list[bytes], count: int,
             size: int) -> list[tuple[int, bytes]]:
    s.post_rx(count, size)
    port.receive(frames)  # type: ignore[attr-defined]
    return [(u.len, u.data) for u in s.reap(s.rxq())]


@device_clause("5.1.6.3.2", "one buffer per packet without MRG_RXBUF",
               "Without MRG_RXBUF the device must use a single descriptor chain per packet.")
def check_5_1_6_3_2_single_chain(make: DeviceFactory) -> None:
    """The device MUST use only a single descriptor [chain] if VIRTIO_NET_F_MRG_RXBUF was
    not negotiated (virtio 1.3 §5.1.6.3.2): three frames, three used buffers, each holding
    its whole frame."""
    s, port = _wired(make, DEFAULT_WANT & ~(1 << _N.VIRTIO_NET_F_MRG_RXBUF))
    frames = [ethernet_frame(10 + i, 60 + 400 * i) for i in range(3)]
    got = _receive(s, port, frames, 6, 1526 + s.hdr_size)
    assert len(got) == 3, f"3 frames took {len(got)} used buffers"
    for (length, data), frame in zip(got, frames, strict=True):
        assert data[s.hdr_size:length] == frame, "a frame is not whole in its buffer"


@device_clause("5.1.6.4.1", "num_buffers 1 without MRG_RXBUF",
               "Without MRG_RXBUF the device must set num_buffers to 1.")
def check_5_1_6_4_1_num_buffers_one(make: DeviceFactory) -> None:
    """If VIRTIO_NET_F_MRG_RXBUF has not been negotiated, the device MUST set num_buffers
    to 1 (virtio 1.3 §5.1.6.4.1)."""
    s, port = _wired(make, DEFAULT_WANT & ~(1 << _N.VIRTIO_NET_F_MRG_RXBUF))
    got = _receive(s, port, [ethernet_frame(20), ethernet_frame(21, 1000)], 4,
                   1526 + s.hdr_size)
    assert got, "no frame delivered"
    nums = [struct.unpack_from("<H", d, 10)[0] for _, d in got]
    assert all(n == 1 for n in nums), f"num_buffers {nums}"


@device_clause("5.1.6.4.1", "num_buffers counts merged buffers",
               "With MRG_RXBUF the device must set num_buffers to the number of buffers the "
               "packet spans and fill all but the last completely.", n=2,
               requires=[_N.VIRTIO_NET_F_MRG_RXBUF])
def check_5_1_6_4_1_mergeable(make: DeviceFactory) -> None:
    """If VIRTIO_NET_F_MRG_RXBUF has been negotiated, the device MUST set num_buffers to
    the number of buffers the packet (header included) is spread over, and MUST use all
    buffers but the last completely up to the full length of each (virtio 1.3
    §5.1.6.4.1)."""
    s, port = _wired(make, DEFAULT_WANT | 1 << _N.VIRTIO_NET_F_MRG_RXBUF)
    size = 256
    frame = ethernet_frame(30, 1000)
    got = _receive(s, port, [frame], 8, size)
    total = s.hdr_size + len(frame)
    want = -(-total // size)
    assert len(got) == want, f"{total} bytes in {size}-byte buffers took {len(got)} " \
        f"buffers, expected {want}"
    num = struct.unpack_from("<H", got[0][1], 10)[0]
    assert num == want, f"num_buffers {num}, the packet spans {want} buffers"
    assert all(length == size for length, _ in got[:-1]), \
        f"buffers before the last not full: {[length for length, _ in got]}"
    data = b"".join(d[:length] for length, d in got)
    assert data[s.hdr_size:] == frame, "merged buffers do not hold the frame"


@device_clause("5.1.6.4.1", "rx flags 0 without GUEST_CSUM",
               "Without GUEST_CSUM the device must set the receive header's flags to 0.", n=3)
def check_5_1_6_4_1_flags_zero(make: DeviceFactory) -> None:
    """If VIRTIO_NET_F_GUEST_CSUM is not negotiated, the device MUST set flags to zero
    (virtio 1.3 §5.1.6.4.1)."""
    s, port = _wired(make, DEFAULT_WANT & ~(1 << _N.VIRTIO_NET_F_GUEST_CSUM) & ~_GUEST_GSO)
    got = _receive(s, port, [ethernet_frame(40)], 2, 1526 + s.hdr_size)
    assert got, "no frame delivered"
    assert got[0][1][0] == 0, f"rx header flags {got[0][1][0]:#x}"


@device_clause("5.1.6.4.1", "gso_type NONE without guest GSO features",
               "Without GUEST_TSO4/TSO6/UFO/USO4/USO6 the device must set gso_type to "
               "VIRTIO_NET_HDR_GSO_NONE.", n=4)
def check_5_1_6_4_1_gso_none(make: DeviceFactory) -> None:
    """If none of the VIRTIO_NET_F_GUEST_TSO4, TSO6, UFO, USO4 or USO6 options have been
    negotiated, the device MUST set gso_type to VIRTIO_NET_HDR_GSO_NONE (virtio 1.3
    §5.1.6.4.1)."""
    s, port = _wired(make, DEFAULT_WANT & ~_GUEST_GSO)
    got = _receive(s, port, [ethernet_frame(41, 1400)], 2, 1526 + s.hdr_size)
    assert got, "no frame delivered"
    gso = got[0][1][1]
    assert gso & ~VIRTIO_NET_HDR_GSO_ECN == 0 and gso == 0, f"rx gso_type {gso:#x}"


@device_clause("5.1.6.5.6.2", "only receiveq1 after reset",
               "After reset, until VQ_PAIRS_SET, the device must queue packets only on "
               "receiveq1.", requires=[_N.VIRTIO_NET_F_MQ])
def check_5_1_6_5_6_2_receiveq1(make: DeviceFactory) -> None:
    """After initialization of reset, the device MUST queue packets only on receiveq1
    (virtio 1.3 §5.1.6.5.6.2)."""
    s, port = _wired(make, DEFAULT_WANT | 1 << _N.VIRTIO_NET_F_MQ)
    if s.pairs < 2:
        raise NotApplicable("max_virtqueue_pairs is 1")
    for pair in range(s.pairs):
        s.post_rx(4, 1526 + s.hdr_size, pair)
    frames = [ethernet_frame(50 + i, dst=bytes([0x33, 0x33, 0, 0, 0, i])) +
              b"" for i in range(4)] + [ethernet_frame(60 + i) for i in range(4)]
    port.receive(frames)  # type: ignore[attr-defined]
    for pair in range(1, s.pairs):
        used = s.reap(s.rxq(pair))
        assert not used, f"receiveq{pair + 1} got {len(used)} packet(s) before VQ_PAIRS_SET"


# ----------------------------------------------------------------------------------------
# §5.1.6.5 control commands


def _ctrl_ok(s: DriverSession, cls: int, cmd: int, data: bytes, what: str) -> None:
    reply = s.ctrl(cls, cmd, data)
    assert reply is not None, f"{what}: request never used"
    assert reply.ack == VIRTIO_NET_OK, f"{what}: ack {reply.ack}"


@device_clause("5.1.6.5.1.1", "PROMISC and ALLMULTI supported",
               "With CTRL_RX negotiated the device must support VIRTIO_NET_CTRL_RX_PROMISC "
               "and VIRTIO_NET_CTRL_RX_ALLMULTI.", requires=[_N.VIRTIO_NET_F_CTRL_RX])
def check_5_1_6_5_1_1_rx_modes(make: DeviceFactory) -> None:
    """If the VIRTIO_NET_F_CTRL_RX feature has been negotiated, the device MUST support
    the VIRTIO_NET_CTRL_RX_PROMISC and VIRTIO_NET_CTRL_RX_ALLMULTI commands (virtio 1.3
    §5.1.6.5.1.1): both answer OK, on and off."""
    s = DriverSession(make()).bring_up()
    for cmd in (VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_PROMISC,
                VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_ALLMULTI):
        for on in (1, 0):
            _ctrl_ok(s, _CL.VIRTIO_NET_CTRL_RX, cmd, bytes([on]), f"{cmd.name} {on}")


@device_clause("5.1.6.5.1.1", "extra RX modes supported",
               "With CTRL_RX_EXTRA negotiated the device must support ALLUNI, NOMULTI, NOUNI "
               "and NOBCAST.", n=2, requires=[_N.VIRTIO_NET_F_CTRL_RX_EXTRA])
def check_5_1_6_5_1_1_rx_extra(make: DeviceFactory) -> None:
    """If the VIRTIO_NET_F_CTRL_RX_EXTRA feature has been negotiated, the device MUST
    support the ALLUNI, NOMULTI, NOUNI and NOBCAST commands (virtio 1.3 §5.1.6.5.1.1)."""
    s = DriverSession(make()).bring_up()
    for cmd in (VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_ALLUNI, VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_NOMULTI,
                VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_NOUNI, VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_NOBCAST):
        for on in (1, 0):
            _ctrl_ok(s, _CL.VIRTIO_NET_CTRL_RX, cmd, bytes([on]), f"{cmd.name} {on}")


@device_clause("5.1.6.5.2.1", "MAC_ADDR_SET updates config mac first",
               "The device must update mac in config space before it consumes "
               "VIRTIO_NET_CTRL_MAC_ADDR_SET.", requires=[_N.VIRTIO_NET_F_CTRL_MAC_ADDR])
def check_5_1_6_5_2_1_mac_addr_set(make: DeviceFactory) -> None:
    """The device MUST update mac in config space before it consumes the
    VIRTIO_NET_CTRL_MAC_ADDR_SET command, if VIRTIO_NET_F_CTRL_MAC_ADDR has been
    negotiated (virtio 1.3 §5.1.6.5.2.1)."""
    s = DriverSession(make()).bring_up()
    if not s.has(_N.VIRTIO_NET_F_CTRL_MAC_ADDR):
        raise SetupError("CTRL_MAC_ADDR offered but not negotiated")
    mac = bytes.fromhex("02c0ffee0042")
    _ctrl_ok(s, _CL.VIRTIO_NET_CTRL_MAC, VirtioNetCtrlMac.VIRTIO_NET_CTRL_MAC_ADDR_SET, mac,
             "MAC_ADDR_SET")
    now = s.dev.read_config(VIRTIO_NET_CONFIG_OFFSETS["mac"], 6)
    assert now == mac, f"config mac {now.hex()} after MAC_ADDR_SET {mac.hex()} was used"


__all__ = [name for name in dir() if name.startswith("check_")]
