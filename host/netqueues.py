"""The device's datapath over the ring engines: transmit, receive, interrupt decisions.

This is the seam a later issue replaces with the C datapath: `TxPath.process` turns the
transmit queue's chains into frames for the wire, `RxPath.receive` puts wire frames into
the guest's receive buffers.  Both only use the ring engines' device API (`pop`,
`push_many`, `should_interrupt`) and `Chain` read/write, so a faster engine with the same
API slots in.

Transmit (virtio 1.3 §5.1.6.2): each chain is a virtio_net_hdr followed by the frame,
all device-readable.  The header is checked against what was negotiated (§5.1.6.2.1); a
frame whose header breaks a MUST is dropped and its chain returned with len 0, the queue
keeps serving.  One MUST is only counted (`tx_num_buffers`): num_buffers, which means
nothing on transmit and which DPDK's virtio PMD leaves unset.

Receive (virtio 1.3 §5.1.6.3, §5.1.6.4): frames pass the receive filter and the MTU
check, then go into the guest's buffers behind a header whose num_buffers says how many
buffers the frame spans: exactly 1 without VIRTIO_NET_F_MRG_RXBUF (§5.1.6.4.1 "the device
MUST set num_buffers to 1"), as many as needed with it.  All buffers of one frame are
published with one used-index update.  With no buffers the frame waits in a bounded
backlog until the driver kicks the receive queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from virtio_spec.chain import Chain
from virtio_spec.features import VirtioNetFeature
from virtio_spec.packed import PackedDeviceQueue
from virtio_spec.split import SplitDeviceQueue
from virtio_spec.structs import (
    VIRTIO_NET_HDR_GSO_ECN,
    RingEventFlags,
    VirtioNetHdrFlag,
    VirtioNetHdrGso,
    avail_ring_size,
    net_hdr_size,
    net_hdr_struct,
)

from .events import (
    ChainPopped,
    ChainUsed,
    DeviceEvent,
    FrameDeferred,
    FrameDelivered,
    FrameDropped,
    FrameTransmitted,
)
from .rxfilter import ETH_HLEN, ETH_P_8021Q

if TYPE_CHECKING:
    from .device import Device, QueueSlot

_N = VirtioNetFeature
#: Frames a receive queue holds while the guest has no buffers posted (QEMU leaves them
#: queued in the net layer; a tap would stop being read).
RX_BACKLOG = 256
#: The largest frame the device transmits: 64 KiB and an Ethernet header with a VLAN
#: tag, as the C datapath's VXDP_DP_MAX_FRAME.  A transmit chain whose readable part is
#: longer than the virtio_net_hdr and this is dropped before a byte of it is read (a
#: driver can make a chain of up to 4 GiB out of a few MiB of memory, §2.7.5.2).
MAX_TX_FRAME = 65550
_HDR_F = VirtioNetHdrFlag
_GSO = VirtioNetHdrGso

#: The HOST_* feature each tx gso_type needs (virtio 1.3 §5.1.6.2.1).
_GSO_FEATURE: dict[int, int] = {
    _GSO.VIRTIO_NET_HDR_GSO_TCPV4: _N.VIRTIO_NET_F_HOST_TSO4,
    _GSO.VIRTIO_NET_HDR_GSO_TCPV6: _N.VIRTIO_NET_F_HOST_TSO6,
    _GSO.VIRTIO_NET_HDR_GSO_UDP: _N.VIRTIO_NET_F_HOST_UFO,
    _GSO.VIRTIO_NET_HDR_GSO_UDP_L4: _N.VIRTIO_NET_F_HOST_USO,
}


def hdr_len(device: Device) -> int:
    """The virtio_net_hdr size for the negotiated features (virtio 1.3 §5.1.6.3.1)."""
    return net_hdr_size(device.has(_N.VIRTIO_NET_F_HASH_REPORT))


def _popped(slot: QueueSlot, chain: Chain) -> ChainPopped:
    return ChainPopped(slot.index, chain.head, tuple(s.length for s in chain.readable),
                       tuple(s.length for s in chain.writable), chain.descriptors)


def _max_frame(device: Device, frame: bytes) -> int | None:
    """Largest frame allowed with VIRTIO_NET_F_MTU negotiated (mtu + Ethernet header,
    + 4 for an 802.1Q tag), None without it."""
    if not device.has(_N.VIRTIO_NET_F_MTU):
        return None
    tagged = len(frame) >= ETH_HLEN and int.from_bytes(frame[12:14], "big") == ETH_P_8021Q
    return device.profile.mtu + ETH_HLEN + (4 if tagged else 0)


def more_available(engine: SplitDeviceQueue | PackedDeviceQueue) -> bool:
    """Whether the driver has made chains available that the device has not taken."""
    return engine.pending() > 0 if isinstance(engine, SplitDeviceQueue) \
        else engine.has_available()


class TxPath:
    """Drains one transmit queue."""

    def __init__(self, device: Device, slot: QueueSlot) -> None:
        self.device = device
        self.slot = slot

    def header_problem(self, hdr: Any, frame: bytes) -> tuple[str, str] | None:
        """(reason, clause) when a tx header or frame breaks a rule, else None."""
        dev = self.device
        flags = int(hdr.flags)
        gso = int(hdr.gso_type)
        # num_buffers is not checked: see `process`
        if flags & (_HDR_F.VIRTIO_NET_HDR_F_DATA_VALID | _HDR_F.VIRTIO_NET_HDR_F_RSC_INFO):
            # §5.1.6.2.1: "The driver MUST NOT set the VIRTIO_NET_HDR_F_DATA_VALID and
            # VIRTIO_NET_HDR_F_RSC_INFO bits in flags."
            return f"flags {flags:#x} set DATA_VALID or RSC_INFO", "5.1.6.2.1"
        if flags and not dev.has(_N.VIRTIO_NET_F_CSUM):
            # §5.1.6.2.1: "If VIRTIO_NET_F_CSUM is not negotiated, the driver MUST set
            # flags to zero".
            return f"flags {flags:#x} without VIRTIO_NET_F_CSUM", "5.1.6.2.1"
        base = gso & ~VIRTIO_NET_HDR_GSO_ECN
        if base != _GSO.VIRTIO_NET_HDR_GSO_NONE:
            need = _GSO_FEATURE.get(base)
            if need is None or not dev.has(need):
                # §5.1.6.2.1: gso_type only for negotiated HOST_* features.
                return f"gso_type {gso:#x} not negotiated", "5.1.6.2.1"
        if gso & VIRTIO_NET_HDR_GSO_ECN and not dev.has(_N.VIRTIO_NET_F_HOST_ECN):
            return "GSO_ECN without VIRTIO_NET_F_HOST_ECN", "5.1.6.2.1"
        if not frame:
            return "empty frame after the header", "5.1.6.2"
        limit = _max_frame(dev, frame)
        if limit is not None and base == _GSO.VIRTIO_NET_HDR_GSO_NONE and len(frame) > limit:
            # §5.1.4.2: with VIRTIO_NET_F_MTU the driver MUST NOT transmit packets
            # larger than mtu plus the Ethernet header without GSO.
            return f"frame of {len(frame)} bytes exceeds mtu {dev.profile.mtu}", "5.1.4.2"
        return None

    def process(self, events: list[DeviceEvent]) -> bool:
        """Pop available chains, hand out their frames, return the chains with len 0.

        At most one lap of the ring (the queue size: all a driver can have made
        available at once), so a driver in another process that refills as fast as we
        drain cannot keep the caller here for ever.  True when it stopped there with
        more available (the caller reports `MoreAvailable`)."""
        dev, slot = self.device, self.slot
        engine = slot.engine
        assert engine is not None
        size = hdr_len(dev)
        layout = net_hdr_struct(dev.has(_N.VIRTIO_NET_F_HASH_REPORT))
        popped = 0
        while popped < slot.size and (chain := engine.pop()) is not None:
            popped += 1
            events.append(_popped(slot, chain))
            readable = chain.readable_len
            data = chain.read() if readable <= size + MAX_TX_FRAME else b""
            problem: tuple[str, str] | None
            if readable > size + MAX_TX_FRAME:
                problem = (f"{readable} readable bytes, more than the {size}-byte "
                           f"virtio_net_hdr and the largest frame ({MAX_TX_FRAME} bytes); "
                           f"not read", "")
                frame = b""
            elif len(data) < size:
                problem = (f"{len(data)} readable bytes, less than the {size}-byte "
                           "virtio_net_hdr", "5.1.6.2")
                frame = b""
            else:
                frame = data[size:]
                hdr = layout.parse(data[:size])
                problem = self.header_problem(hdr, frame)
                if int(hdr.num_buffers):
                    # virtio 1.3 §5.1.6.2.1: "The driver MUST set num_buffers to zero",
                    # yet the field means nothing on transmit, and DPDK's virtio PMD
                    # leaves there what the mbuf's headroom held (an earlier receive's
                    # num_buffers): counted and ignored, as vhost-net, QEMU and DPDK's
                    # vhost ignore it (the C datapath does the same).
                    dev.stats["tx_num_buffers"] += 1
            # Transmit buffers are device-readable: nothing is written (§2.7.8: len 0).
            engine.push(chain, 0)
            events.append(ChainUsed(slot.index, chain.head, 0))
            if problem is not None:
                dev.stats["tx_dropped"] += 1
                events.append(FrameDropped(slot.index, "tx", max(readable - size, 0),
                                           *problem))
                continue
            dev.stats["tx_frames"] += 1
            dev.stats["tx_bytes"] += len(frame)
            events.append(FrameTransmitted(slot.index, frame))
        if popped < slot.size:
            return False
        return more_available(engine)


class RxPath:
    """Fills one receive queue; `slot` is None when the driver never programmed it."""

    def __init__(self, device: Device, slot: QueueSlot | None) -> None:
        self.device = device
        self.slot = slot

    def _drop(self, frame: bytes, reason: str, events: list[DeviceEvent],
              clause: str = "") -> None:
        self.device.stats["rx_dropped"] += 1
        queue = self.slot.index if self.slot is not None else 0
        events.append(FrameDropped(queue, "rx", len(frame), reason, clause))

    def receive(self, frame: bytes, events: list[DeviceEvent]) -> None:
        """One frame from the wire."""
        dev, slot = self.device, self.slot
        if not dev.live:
            self._drop(frame, f"device not live (status {dev.status_names})", events, "2.1.2")
            return
        if slot is None or slot.engine is None:
            self._drop(frame, "receive queue not enabled", events)
            return
        verdict = dev.net.rx_filter.check(frame)
        if not verdict.accepted:
            self._drop(frame, f"filtered: {verdict.reason}", events, "5.1.6.5.2.1")
            return
        limit = _max_frame(dev, frame)
        if limit is not None and len(frame) > limit:
            # virtio 1.3 §5.1.4.1: with VIRTIO_NET_F_MTU the device MUST NOT pass
            # received packets larger than mtu plus the Ethernet header.
            self._drop(frame, f"frame of {len(frame)} bytes exceeds mtu {dev.profile.mtu}",
                       events, "5.1.4.1")
            return
        if slot.backlog or not self._place(frame, verdict.reason, events):
            if len(slot.backlog) >= RX_BACKLOG:
                self._drop(frame, f"rx backlog full ({RX_BACKLOG} frames)", events)
                return
            slot.backlog.append(frame)
            events.append(FrameDeferred(slot.index, len(frame), len(slot.backlog)))

    def flush_backlog(self, events: list[DeviceEvent]) -> None:
        """The driver posted buffers: place waiting frames while buffers last."""
        slot = self.slot
        assert slot is not None
        while slot.backlog:
            if not self._place(slot.backlog[0], "from backlog", events):
                return
            slot.backlog.popleft()

    def _take(self, events: list[DeviceEvent]) -> Chain | None:
        slot = self.slot
        assert slot is not None and slot.engine is not None
        chain = slot.engine.pop()
        if chain is not None:
            events.append(_popped(slot, chain))
        return chain

    def _place(self, frame: bytes, verdict: str, events: list[DeviceEvent]) -> bool:
        """Write one frame into guest buffers; False when there are not enough buffers
        (the chains taken so far are held for the next attempt)."""
        dev, slot = self.device, self.slot
        assert slot is not None and slot.engine is not None
        engine = slot.engine
        size = hdr_len(dev)
        need = size + len(frame)
        mergeable = dev.has(_N.VIRTIO_NET_F_MRG_RXBUF)
        chains = slot.held
        while True:
            room = sum(c.writable_len for c in chains)
            if chains and (room >= need or not mergeable):
                break
            chain = self._take(events)
            if chain is None:
                return False
            if chain.writable_len < size:
                # virtio 1.3 §5.1.6.3.1: every receive buffer is at least the header
                # size; a smaller one is returned unused and the frame tries the next.
                engine.push(chain, 0)
                events.append(ChainUsed(slot.index, chain.head, 0))
                events.append(FrameDropped(
                    slot.index, "rx", 0, f"rx buffer {chain.head} has {chain.writable_len} "
                    f"writable bytes, less than the {size}-byte header; returned unused",
                    "5.1.6.3.1"))
                continue
            chains.append(chain)
        slot.held = []
        if room < need:
            # Without MRG_RXBUF one chain must hold header and frame (§5.1.6.3.1).
            engine.push(chains[0], 0)
            events.append(ChainUsed(slot.index, chains[0].head, 0))
            self._drop(frame, f"rx buffer of {room} bytes cannot hold the {need}-byte "
                              f"header and frame", events, "5.1.6.3.1")
            return True
        layout = net_hdr_struct(dev.has(_N.VIRTIO_NET_F_HASH_REPORT))
        hdr = dict(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0,
                   num_buffers=len(chains), hash_value=0, hash_report=0, padding_reserved=0)
        data = memoryview(bytes(layout.build(hdr)) + frame)
        done: list[tuple[Chain | int, int]] = []
        at = 0
        for buf in chains:
            n = min(buf.writable_len, len(data) - at)
            buf.write(data[at:at + n])
            at += n
            done.append((buf, n))
        # virtio 1.3 §5.1.6.4: all buffers of one frame become used together.
        engine.push_many(done)
        for buf, n in zip(chains, (n for _, n in done)):
            events.append(ChainUsed(slot.index, buf.head, n))
        dev.stats["rx_frames"] += 1
        dev.stats["rx_bytes"] += len(frame)
        events.append(FrameDelivered(slot.index, len(frame), len(chains), verdict))
        return True


def explain_interrupt(slot: QueueSlot,
                      engine: SplitDeviceQueue | PackedDeviceQueue) -> tuple[str, int]:
    """Why the next interrupt decision goes the way it will, and the new used mark.

    Reads the driver's suppression fields (split: avail.flags and used_event, §2.7.7;
    packed: the driver event area, §2.8.10) as the engine is about to.
    """
    mem = engine.mem
    old = slot.last_signalled
    if isinstance(engine, SplitDeviceQueue):
        avail = slot.addresses[1]
        new = engine.used_idx
        if engine.event_idx:
            used_event = mem.read_u16(avail + avail_ring_size(slot.size) - 2)
            return (f"EVENT_IDX: used_event={used_event}, used idx {old}->{new} "
                    f"(\u00a72.7.7.2)", new)
        flags = mem.read_u16(avail)
        state = "set" if flags & 1 else "clear"
        return (f"avail.flags={flags:#x} (NO_INTERRUPT {state}), used idx {old}->{new} "
                f"(\u00a72.7.7.2)", new)
    off_wrap = mem.read_u16(slot.addresses[1])
    flags = mem.read_u16(slot.addresses[1] + 2) & 3
    new = engine.next_used | (0x8000 if engine.used_wrap else 0)
    name = RingEventFlags(flags).name if flags in RingEventFlags._value2member_map_ \
        else f"reserved {flags}"
    return (f"driver event flags={name} off_wrap={off_wrap:#x}, used position "
            f"{old:#x}->{new:#x} (\u00a72.8.10)", new)


__all__ = ["MAX_TX_FRAME", "RX_BACKLOG", "RxPath", "TxPath", "explain_interrupt", "hdr_len"]
