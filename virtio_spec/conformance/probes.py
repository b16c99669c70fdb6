"""Probes the device checks share: a harmless control request, chains of chosen shapes,
snapshots of what the driver wrote, traffic on every queue.

A probe prefers the control queue (every device with VIRTIO_NET_F_CTRL_VQ answers a
request with an ack, whatever the command) and uses the wire when the adapter reaches it;
with neither, the check that needs it is not applicable.

PYTEST_DONT_REWRITE: a check's message is the same under pytest (the plugin) as under
`vxdp conformance`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..ctrl import VirtioNetCtrlClass, VirtioNetCtrlMac, VirtioNetCtrlRx
from ..features import VirtioFeature, VirtioNetFeature
from ..memory import GuestMemory
from ..structs import VIRTIO_NET_CONFIG_OFFSETS, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_WRITE
from ..testing import MockPackedQueue, MockSplitQueue, Used
from .adapter import DeviceFactory, DeviceUnderTest, NotApplicable, Unsupported
from .session import DEFAULT_WANT, DriverSession, ethernet_frame, net_hdr

_F, _N = VirtioFeature, VirtioNetFeature
_CL = VirtioNetCtrlClass
#: A class no spec version defines: the device answers VIRTIO_NET_ERR.
UNKNOWN_CLASS = 0xEE
SENTINEL = 0xEE


def wire(s: DriverSession) -> DeviceUnderTest | None:
    """The device's wire, or None when the adapter cannot reach it."""
    dev = s.dev
    if not hasattr(dev, "receive") or not hasattr(dev, "take_transmitted"):
        return None
    try:
        dev.take_transmitted()
    except Unsupported:
        return None
    return dev  # type: ignore[return-value]


def ctrl_probe(s: DriverSession) -> tuple[int, int, bytes]:
    """(class, command, data) of a request this device accepts: PROMISC off with
    CTRL_RX, MAC_ADDR_SET of the current mac with CTRL_MAC_ADDR, else an unknown class."""
    if s.has(_N.VIRTIO_NET_F_CTRL_RX):
        return _CL.VIRTIO_NET_CTRL_RX, VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_PROMISC, b"\x00"
    if s.has(_N.VIRTIO_NET_F_CTRL_MAC_ADDR):
        mac = s.dev.read_config(VIRTIO_NET_CONFIG_OFFSETS["mac"], 6)
        return _CL.VIRTIO_NET_CTRL_MAC, VirtioNetCtrlMac.VIRTIO_NET_CTRL_MAC_ADDR_SET, mac
    return UNKNOWN_CLASS, 0, b""


def tx_or_ctrl_chain(s: DriverSession, *, publish: bool = True,
                     kick: bool = False) -> tuple[int, int]:
    """Add one request (control if there is a control queue, else a frame on
    transmitq1); returns (queue, head)."""
    if s.has(_N.VIRTIO_NET_F_CTRL_VQ):
        cls, cmd, data = ctrl_probe(s)
        index = s.ctrlq
        head = s.add(index, [bytes([cls, cmd]) + data], [1], publish=publish)
    else:
        index = s.txq()
        head = s.add(index, [net_hdr() + ethernet_frame(1)], (), publish=publish)
    if kick:
        s.kick(index)
    return index, head


def chains_for_every_queue(s: DriverSession) -> list[tuple[int, int]]:
    """A published, not yet kicked request on the control queue and on transmitq1."""
    out = []
    if s.has(_N.VIRTIO_NET_F_CTRL_VQ):
        cls, cmd, data = ctrl_probe(s)
        out.append((s.ctrlq, s.add(s.ctrlq, [bytes([cls, cmd]), data or b"\x00"], [1])))
    out.append((s.txq(), s.add(s.txq(), [net_hdr(), ethernet_frame(2)], ())))
    return out


def segments(s: DriverSession, index: int, head: int, *,
             writable: bool = False) -> list[tuple[int, int]]:
    """(gpa, len) of the readable (or writable) buffers of a chain not yet used."""
    q = s.queues[index]
    if isinstance(q, MockSplitQueue):
        chain = s.observe(index, head)
        picked = chain.writable if writable else chain.readable
        return [(d.addr, d.len) for d in picked]
    assert isinstance(q, MockPackedQueue)
    out = []
    for slot in q.slots_of(head):
        addr, length, _, flags = q.peek_desc(slot)
        if flags & VIRTQ_DESC_F_INDIRECT:
            raise Unsupported("packed indirect snapshot")
        if bool(flags & VIRTQ_DESC_F_WRITE) == writable:
            out.append((addr, length))
    return out


def read_segments(mem: GuestMemory, segs: Sequence[tuple[int, int]]) -> bytes:
    return b"".join(mem.read(a, n) for a, n in segs)


def readable_snapshot(s: DriverSession, index: int, head: int) -> bytes:
    return read_segments(s.memory(), segments(s, index, head))


def _add_shaped(s: DriverSession, index: int, readable: list[bytes], writable: list[int],
                shape: str) -> int:
    """Add a request cut and linked as `shape` says; published."""
    if shape == "whole":
        return s.add(index, [b"".join(readable)], writable)
    if shape == "pieces":
        return s.add(index, readable, writable)
    if shape == "bytes":
        data = b"".join(readable)
        return s.add(index, [data[i:i + 7] for i in range(0, len(data), 7)], writable)
    if shape == "indirect":
        return s.add(index, readable, writable, indirect=True)
    q = s.queues[index]
    if not isinstance(q, MockSplitQueue):
        raise NotApplicable(f"chain shape {shape} is built on split rings")
    if shape == "indirect_write":
        head = s.add(index, readable, writable, indirect=True, publish=False)
        q.poke_desc(head, flags=int(VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE))
    elif shape == "direct_then_indirect":
        head = s.add(index, readable, writable, publish=False)
        s.indirect_from(index, head, first_direct=1)
    else:
        raise ValueError(f"unknown chain shape {shape}")
    q.publish()
    return head


def same_outcome_for_shapes(make: DeviceFactory, shapes: Sequence[str], extra: int = 0) -> None:
    """Send the same control request and the same frame in every shape; the device must
    answer and transmit the same way each time."""
    s = DriverSession(make()).bring_up(DEFAULT_WANT | extra)
    tried = False
    if s.has(_N.VIRTIO_NET_F_CTRL_VQ):
        tried = True
        cls, cmd, data = ctrl_probe(s)
        outcomes: dict[str, tuple[int, int] | None] = {}
        for shape in shapes:
            head = _add_shaped(s, s.ctrlq, [bytes([cls]), bytes([cmd]), data], [1], shape)
            s.kick(s.ctrlq)
            got = [u for u in s.reap(s.ctrlq) if u.id == head]
            outcomes[shape] = (got[0].len, got[0].data[0] if got[0].data else -1) \
                if got else None
        base = outcomes[shapes[0]]
        assert base is not None, f"control request as one buffer was not used: {outcomes}"
        for shape, outcome in outcomes.items():
            assert outcome == base, f"control request shaped {shape!r} answered (len, ack) " \
                f"{outcome}, shaped {shapes[0]!r} {base}"
    port = wire(s)
    if port is not None:
        tried = True
        frame = ethernet_frame(3)
        for shape in shapes:
            _add_shaped(s, s.txq(), [net_hdr(), frame], [], shape)
            s.kick(s.txq())
            sent = port.take_transmitted()
            assert sent == [frame], f"frame shaped {shape!r}: the wire saw " \
                f"{[f.hex() for f in sent]}, expected {frame.hex()}"
            s.reap(s.txq())
    if not tried:
        raise NotApplicable("needs a control queue or access to the wire")


def used_and_notified(s: DriverSession, *, suppress: bool = False) -> tuple[int, list[Used],
                                                                            list[int]]:
    """One request on the control queue (or transmitq1) with notifications enabled (or
    suppressed); returns (queue, used elements, notifications seen)."""
    index = s.ctrlq if s.has(_N.VIRTIO_NET_F_CTRL_VQ) else s.txq()
    q = s.queues[index]
    s.take_notifications()
    if suppress:
        q.driver.disable_interrupts()
    tx_or_ctrl_chain(s, kick=True)
    notes = s.take_notifications()
    used = s.reap(index)
    if suppress:
        q.driver.enable_interrupts()
    return index, used, notes


def fill(mem: GuestMemory, segs: Sequence[tuple[int, int]], byte: int = SENTINEL) -> None:
    for gpa, n in segs:
        mem.write(gpa, bytes([byte]) * n)


def check_used_len(make: DeviceFactory) -> None:
    """The used.len rules of §2.7.8.2 on a control reply and on a received frame."""
    s = DriverSession(make()).bring_up()
    mem = s.memory()
    tried = False
    if s.has(_N.VIRTIO_NET_F_CTRL_VQ):
        tried = True
        cls, cmd, data = ctrl_probe(s)
        capacity = 16  # the 1-byte ack buffer, then room the reply may not claim
        head = s.add(s.ctrlq, [bytes([cls, cmd]) + data], [1, capacity - 1], publish=False)
        segs = segments(s, s.ctrlq, head, writable=True)
        fill(mem, segs)
        s.queues[s.ctrlq].publish()
        s.kick(s.ctrlq)
        written = read_segments(mem, segs)
        got = [u for u in s.reap(s.ctrlq) if u.id == head]
        assert got, "control request not used"
        length = got[0].len
        assert length <= capacity, f"control reply used.len {length} exceeds the {capacity}" \
            " writable bytes"
        touched = capacity - len(written.rstrip(bytes([SENTINEL])))
        assert written[0] != SENTINEL, "no ack byte written"
        assert length >= 1, f"used.len {length}, yet the device wrote the ack byte " \
            f"({capacity - touched} bytes changed)"
    port = wire(s)
    if port is not None:
        tried = True
        size = 1526 + s.hdr_size
        heads = s.post_rx(2, size)
        for h in heads:
            fill(mem, segments(s, s.rxq(), h, writable=True))
        frame = ethernet_frame(4, 200)
        port.receive([frame])
        s.take_notifications()
        used = s.reap(s.rxq())
        assert used, "received frame not delivered into the posted buffers"
        want = s.hdr_size + len(frame)
        assert used[0].len == want, f"rx used.len {used[0].len}, header + frame is {want}"
        assert used[0].data[s.hdr_size:] == frame, "rx buffer does not hold the frame " \
            "within used.len bytes"
    if not tried:
        raise NotApplicable("needs a control queue or access to the wire")


def used_flags_after_traffic(make: DeviceFactory, want: int) -> dict[int, int]:
    """used.flags of every split queue after a request on each."""
    s = DriverSession(make()).bring_up(want)
    for index, _ in chains_for_every_queue(s):
        s.kick(index)
    s.post_rx(2, 1526 + s.hdr_size)
    out = {}
    for index, q in s.queues.items():
        if not isinstance(q, MockSplitQueue):
            raise NotApplicable("used.flags exists on split rings")
        out[index] = s.memory().read_u16(q.used_ring)
    return out


__all__ = [
    "SENTINEL",
    "UNKNOWN_CLASS",
    "chains_for_every_queue",
    "check_used_len",
    "ctrl_probe",
    "fill",
    "read_segments",
    "readable_snapshot",
    "same_outcome_for_shapes",
    "segments",
    "tx_or_ctrl_chain",
    "used_and_notified",
    "used_flags_after_traffic",
    "wire",
]
