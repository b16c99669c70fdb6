"""No vacuous check: every clause fails against a model broken in exactly its way.

`BrokenDevice` is host.Device behind its adapter with one deliberate bug (named by the
clause key it breaks): it writes a device-readable buffer, takes unoffered features,
zeroes used.len, notifies when suppressed...  `BrokenDriver` is the library's reference
driver with one bug, mostly through a proxy on its transport or pokes at its rings: it
accepts unoffered bits, puts writable before readable, decrements avail idx...
test_every_clause_has_a_mutant keeps the table complete as clauses are added.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from host.ctrl import CtrlReply
from host.device import Device
from host.offload import DeviceOffload, OffloadOutcome
from virtio_spec.conformance import CLAUSES, CONFIG_NOTIFICATION, ReferenceDriver, run_clause
from virtio_spec.conformance.adapter import Transport, TransportRefused
from virtio_spec.conformance.observe import ObservedChain, walk_split
from virtio_spec.conformance.session import DEFAULT_WANT, DriverSession, net_hdr
from virtio_spec.features import VirtioFeature, VirtioNetFeature, mask_of, negotiate
from virtio_spec.memory import GuestMemory
from virtio_spec.structs import VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE
from virtio_spec.testing import MockPackedQueue, MockSplitQueue
from vxdp.bpf.program import rebind_map_refs
from vxdp.bpf.verifier import VerifierReport
from vxdp.conformance_adapters import HostDeviceAdapter

_F, _N = VirtioFeature, VirtioNetFeature
IND, NEXT, WRITE = int(VIRTQ_DESC_F_INDIRECT), int(VIRTQ_DESC_F_NEXT), int(VIRTQ_DESC_F_WRITE)
AVAIL_USED = 1 << 7 | 1 << 15

#: Bits a broken device offers on top of its profile (and hides from the real device).
EXTRA_OFFER = {
    "device:2.2.2": mask_of([_N.VIRTIO_NET_F_HOST_TSO4]),
    "device:6.2/2": mask_of([_F.VIRTIO_F_IN_ORDER]),
    "device:5.1.4.1/4": mask_of([_N.VIRTIO_NET_F_RSS, _N.VIRTIO_NET_F_HASH_REPORT]),
    "device:5.1.4.1/5": mask_of([_N.VIRTIO_NET_F_RSS, _N.VIRTIO_NET_F_HASH_REPORT]),
    "device:5.1.6.2.2": mask_of([_N.VIRTIO_NET_F_CSUM]),
    "device:5.1.6.5.1.1/2": mask_of([_N.VIRTIO_NET_F_CTRL_RX_EXTRA]),
}
#: Config bytes a broken device shows (offset, bytes), some only once DRIVER_OK is set.
CONFIG_OVERLAY = {
    "device:5.1.4.1": (8, b"\0\0"),
    "device:5.1.4.1/2": (10, (60).to_bytes(2, "little")),
    "device:5.1.4.1/4": (17, b"\x0a"),
    "device:5.1.4.1/5": (18, (16).to_bytes(2, "little")),
    "device:5.1.6.5.2.1": (0, bytes.fromhex("525400123456")),
    "device:3.2.1": (44, (2).to_bytes(4, "little")),
    "device:3.2.2": (32, bytes(4)),
}
ACCEPTS_ANYTHING = {"device:2.2.2/2", "device:2.2.2/3", "device:2.2.1"}
STICKY_STATUS = {"device:2.1.2/2", "device:2.4.1"}
SCRIBBLE_READABLE = {"device:2.7.5.1", "device:4.5.2"}


def _wrap(obj: Any, name: str, around: Callable[..., Any]) -> None:
    """Replace obj.name by around(original, *args)."""
    original = getattr(obj, name)
    setattr(obj, name, lambda *a, **kw: around(original, *a, **kw))


def _ack_ok_always(orig: Callable[..., OffloadOutcome], *a: Any) -> OffloadOutcome:
    out = orig(*a)
    return dataclasses.replace(out, ack=0)


def _lookup_miss_is_zeros(orig: Callable[..., OffloadOutcome], command: int, body: Any,
                          room: int) -> OffloadOutcome:
    out = orig(command, body, room)
    if int(body.cmd) == 4 and out.ack:
        return OffloadOutcome(0, bytes(4 + int(body.value_size)), "zeros")
    return out


def _unset_refuses_nothing(orig: Callable[..., OffloadOutcome], body: Any,
                           room: int) -> OffloadOutcome:
    return OffloadOutcome(1, struct.pack("<I", 2), "ENOENT") if orig.__self__.program is None \
        else orig(body, room)


def _accept_every_program(offload: DeviceOffload) -> None:
    def finish(orig: Callable[..., OffloadOutcome], job: Any) -> OffloadOutcome:
        job.report = VerifierReport(job.program.name, True, log="trusted\n")
        return orig(job)
    _wrap(offload, "finish", finish)


def _first_map_for_unknown(offload: DeviceOffload) -> None:
    def lookup(orig: Callable[..., Any], handle: int) -> Any:
        return offload.maps.get(handle) or next(iter(offload.maps.values()))
    _wrap(offload, "_map", lookup)


def _rebind_unknown_to_first(offload: DeviceOffload) -> None:
    def rebind(orig: Callable[..., Any], insns: bytes) -> Any:
        first = next(iter(offload.maps))
        fixed = rebind_map_refs(insns, lambda pc, h: h if h in offload.maps else first)
        return orig(fixed)
    _wrap(offload, "_rebind", rebind)


def _query_digest_of_what_runs(orig: Callable[..., OffloadOutcome], body: Any,
                               room: int) -> OffloadOutcome:
    out = orig(body, room)
    program = orig.__self__.program
    if program is None:
        return out
    return dataclasses.replace(out, result=out.result[:-32]
                               + hashlib.sha256(program.program.insns).digest())


#: Bugs of the offload, patched into the device's DeviceOffload (or the device).
OFFLOAD_BUGS: dict[str, Callable[[Device], None]] = {
    "device:4.5.3": lambda d: _wrap(d.offload, "handle", _ack_ok_always),
    "device:4.5.4": lambda d: _wrap(d.offload, "_create", lambda orig, body, room: (
        dataclasses.replace(orig(body, room), result=struct.pack("<II", 0, 1)))),
    "device:4.5.5": lambda d: setattr(d.offload, "caps", dataclasses.replace(
        d.offload.caps, xdp_map_types=2**32 - 2)),
    "device:4.5.6": lambda d: setattr(d.offload, "caps", dataclasses.replace(
        d.offload.caps, xdp_max_maps=10**6)),
    "device:4.5.7": lambda d: _first_map_for_unknown(d.offload),
    "device:4.5.8": lambda d: _wrap(d.offload, "handle", _lookup_miss_is_zeros),
    "device:4.5.9": lambda d: setattr(d.offload, "_need_room", lambda room, size, what: None),
    "device:4.5.10": lambda d: setattr(d.offload, "caps", dataclasses.replace(
        d.offload.caps, xdp_max_insns=10**7)),
    "device:4.5.11": lambda d: _accept_every_program(d.offload),
    "device:4.5.12": lambda d: setattr(d.offload, "profile", dataclasses.replace(
        d.offload.profile, helpers=frozenset(range(256)))),
    "device:4.5.13": lambda d: _rebind_unknown_to_first(d.offload),
    "device:4.5.14": lambda d: setattr(d.offload, "_in_use", lambda handle: False),
    "device:4.5.15": lambda d: _wrap(d.offload, "_query", _query_digest_of_what_runs),
    "device:4.5.16": lambda d: _wrap(d.offload, "_unset", _unset_refuses_nothing),
    "device:5.1.1": lambda d: setattr(d, "_run_offloaded", lambda frames, q, ev: frames),
    "device:6.1.1": lambda d: setattr(d.offload, "reset", lambda: False),
}


class BrokenDevice(HostDeviceAdapter):
    """host.Device with the bug that breaks clause `bug`."""

    def __init__(self, profile: str, bug: str) -> None:
        super().__init__(Device(profile))
        self.bug = bug
        if bug in OFFLOAD_BUGS:
            OFFLOAD_BUGS[bug](self.device)
        self.real_offer = self.device.device_features
        self.setups: dict[int, tuple[int, int, int, int]] = {}
        self.mem: GuestMemory | None = None
        self.features_writes = 0
        self.used_slots: list[int] = []
        self.readable_addrs: list[int] = []

    # -- ring helpers ----------------------------------------------------------------

    def _u16(self, gpa: int) -> int:
        assert self.mem is not None
        return self.mem.read_u16(gpa)

    def _used_idx(self, index: int) -> int:
        if index not in self.setups or self.packed:
            return 0
        return self._u16(self.setups[index][3] + 2)

    def _new_used(self, index: int, before: int) -> list[tuple[int, int, int]]:
        """(gpa of the used element, id, len) of elements written since `before`."""
        if index not in self.setups or self.packed:
            return []
        size, _, _, used = self.setups[index]
        out = []
        for i in range(before, self._used_idx(index)):
            at = used + 4 + 8 * (i % size)
            ident, length = struct.unpack("<II", self.mem.read(at, 8))  # type: ignore[union-attr]
            out.append((at, ident, length))
        return out

    def _chain(self, index: int, head: int) -> ObservedChain:
        size, desc, _, _ = self.setups[index]
        assert self.mem is not None
        return walk_split(self.mem, desc, size, head, queue=index)

    def _ack(self, index: int, head: int, value: int) -> None:
        chain = self._chain(index, head)
        assert self.mem is not None
        self.mem.write(chain.writable[0].addr, bytes([value]))

    def _fake_use(self, index: int, length: int = 0) -> None:
        size, _, avail, used = self.setups[index]
        assert self.mem is not None
        idx = self._u16(used + 2)
        while idx != self._u16(avail + 2):
            head = self._u16(avail + 4 + 2 * (idx % size))
            self.mem.write(used + 4 + 8 * (idx % size), struct.pack("<II", head, length))
            idx = (idx + 1) & 0xFFFF
        self.mem.write_u16(used + 2, idx)
        self._notes.append(index)

    @property
    def packed(self) -> bool:
        return bool(self.device.negotiated >> _F.VIRTIO_F_RING_PACKED & 1)

    # -- transport with bugs -----------------------------------------------------------

    def attach_memory(self, size: int) -> GuestMemory:
        self.mem = super().attach_memory(size)
        return self.mem

    def setup_queue(self, index: int, size: int, desc: int, driver: int, device: int) -> None:
        super().setup_queue(index, size, desc, driver, device)
        self.setups[index] = (size, desc, driver, device)

    def read_device_features(self) -> int:
        offer = self.real_offer | EXTRA_OFFER.get(self.bug, 0)
        if self.bug == "device:6.2":
            offer &= ~(1 << _F.VIRTIO_F_VERSION_1)
        return offer

    def write_driver_features(self, features: int) -> None:
        self.features_writes += 1
        if self.bug in ACCEPTS_ANYTHING:
            features = negotiate(self.real_offer, features)
        elif self.bug == "device:2.2.2/4" and features == 1 << _F.VIRTIO_F_VERSION_1:
            features |= 1 << 4
        elif self.bug == "device:2.2.2/5" and self.features_writes >= 2:
            features |= 1 << 4
        super().write_driver_features(features & ~EXTRA_OFFER.get(self.bug, 0))

    def read_status(self) -> int:
        status = super().read_status()
        if self.bug in STICKY_STATUS and status == 0:
            return 1
        return status

    def read_config(self, offset: int, length: int) -> bytes:
        if self.bug == "device:2.5.2" and not super().read_status() & 8:
            raise TransportRefused("config is read after FEATURES_OK")
        try:
            raw = bytearray(super().read_config(offset, length))
        except TransportRefused:
            raw = bytearray(length)
        overlay = CONFIG_OVERLAY.get(self.bug)
        if self.bug == "device:5.1.4.1/3" and super().read_status() & 4:
            overlay = (10, (1400).to_bytes(2, "little"))
        if self.bug == "device:3.2.3" and super().read_status() & 4:
            overlay = (28, (1234).to_bytes(4, "little"))  # xdp_max_insns changes
        if overlay is not None:
            at, data = overlay
            for i, b in enumerate(data):
                if offset <= at + i < offset + length:
                    raw[at + i - offset] = b
        return bytes(raw)

    def take_notifications(self) -> list[int]:
        notes = super().take_notifications()
        if self.bug == "device:2.1.2/3":
            notes = [n for n in notes if n != CONFIG_NOTIFICATION]
        if self.bug in ("device:2.7.7.2", "device:2.7.7.2/2"):
            notes = [n for n in notes if n == CONFIG_NOTIFICATION]
        return notes

    def take_transmitted(self) -> list[bytes]:
        frames = super().take_transmitted()
        if self.bug == "device:5.1.6.2.2/2":
            frames = [f[:20] + bytes([f[20] ^ 0xFF]) + f[21:] for f in frames]
        return frames

    def kick(self, index: int) -> None:
        live = bool(super().read_status() & 4)
        if self.packed:
            self._packed_pre_kick(index)
        before = self._used_idx(index)
        if self.bug == "device:2.1.2" and not live and index in self.setups:
            self._fake_use(index)
            return
        if self.bug == "device:2.4.1/2" and index in self.setups and \
                self.device.slot(index) is None:
            self._fake_use(index)
            return
        super().kick(index)
        if self.bug == "device:2.7.7.2/3":
            self._notes.append(index)
        if self.packed:
            self._packed_post_kick(index)
            return
        for at, head, _ in self._new_used(index, before):
            self._after_use(index, at, head)
        if self.bug == "device:6.2/2":
            news = self._new_used(index, before)
            if len(news) >= 2:
                (a, ia, la), (b, ib, lb) = news[0], news[1]
                self.mem.write(a, struct.pack("<II", ib, lb))  # type: ignore[union-attr]
                self.mem.write(b, struct.pack("<II", ia, la))  # type: ignore[union-attr]
        if self.bug == "device:2.7.10.2":
            self.mem.write_u16(self.setups[index][3], 2)  # type: ignore[union-attr]
        if self.bug == "device:2.7.10.2/2":
            self.mem.write_u16(self.setups[index][3], 1)  # type: ignore[union-attr]

    def _after_use(self, index: int, at: int, head: int) -> None:
        chain = self._chain(index, head)
        mem = self.mem
        assert mem is not None
        ctrl = index == 2 * self.device.queue_pairs and self.device.num_queues % 2
        cls = chain.read(mem)[:1]
        if self.bug in SCRIBBLE_READABLE and chain.readable:
            mem.write(chain.readable[0].addr, b"\xff")
        if self.bug == "device:2.7.5.1/2":
            desc = self.setups[index][1] + 16 * head
            mem.write_u32(desc + 8, mem.read_u32(desc + 8) + 1)
        if self.bug == "device:2.7.8.2":
            mem.write_u32(at + 4, 0)
        if not ctrl:
            return
        if self.bug == "device:2.7.4.1" and len(chain.buffers) > 2:
            self._ack(index, head, 1)
        if self.bug == "device:2.7.5.3.2" and chain.descs[0].indirect and \
                chain.descs[0].writable:
            self._ack(index, head, 1)
        if self.bug == "device:2.7.5.3.2/2" and not chain.descs[0].indirect and \
                any(d.indirect for d in chain.descs[1:]):
            self._ack(index, head, 1)
        if self.bug == "device:5.1.6.5.1.1" and cls == b"\x00":
            self._ack(index, head, 1)
        if self.bug == "device:4.5.1" and cls == b"\x40":
            self._ack(index, head, 0)

    def _packed_pre_kick(self, index: int) -> None:
        size, ring, _, _ = self.setups[index]
        mem = self.mem
        assert mem is not None
        if self.bug == "device:2.8.15/3":
            for slot in self.used_slots:
                mem.write_u32(ring + 16 * slot + 8, mem.read_u32(ring + 16 * slot + 8) + 1)
        if self.bug == "device:2.8.15/2":
            if mem.read_u16(ring + 14) == 0 and mem.read_u64(ring) != 0:
                mem.write_u16(ring + 14, AVAIL_USED)
                self._notes.append(index)
        self.readable_addrs = []
        for slot in range(size):
            flags = mem.read_u16(ring + 16 * slot + 14)
            if bool(flags & 1 << 7) != bool(flags & 1 << 15) and not flags & WRITE:
                self.readable_addrs.append(mem.read_u64(ring + 16 * slot))

    def _packed_post_kick(self, index: int) -> None:
        size, ring, _, _ = self.setups[index]
        mem = self.mem
        assert mem is not None
        if self.bug == "device:2.8.15":
            for addr in self.readable_addrs:
                mem.write(addr, b"\xff")
        if self.bug == "device:2.8.15/3":
            self.used_slots = [s for s in range(size)
                               if mem.read_u16(ring + 16 * s + 14) & AVAIL_USED == AVAIL_USED]

    def receive(self, frames: Sequence[bytes]) -> None:
        before = {i: self._used_idx(i) for i in self.setups}
        super().receive(frames)
        mem = self.mem
        if mem is None or 0 not in self.setups:
            return
        for n, (at, head, length) in enumerate(self._new_used(0, before.get(0, 0))):
            hdr = self._chain(0, head).writable[0].addr
            if self.bug == "device:5.1.6.3.2":
                mem.write_u32(at + 4, min(length, 22))
            if self.bug == "device:5.1.6.4.1":
                mem.write_u16(hdr + 10, 2)
            if self.bug == "device:5.1.6.4.1/2" and n == 0:
                mem.write_u16(hdr + 10, 1)
            if self.bug == "device:5.1.6.4.1/3":
                mem.write(hdr, b"\x01")
            if self.bug == "device:5.1.6.4.1/4":
                mem.write(hdr + 1, b"\x01")
        if self.bug == "device:5.1.6.5.6.2" and 2 in self.setups:
            self._fake_use(2, 72)


def _device_profile(key: str) -> str:
    if key.startswith("device:2.8.15"):
        return "packed"
    if key in ("device:4.5.10", "device:4.5.12"):
        return "rfc2019"  # host: every helper the check could call, a 1M-insn limit
    if key.startswith(("device:2.2.1", "device:3.", "device:4.5", "device:5.1.1",
                       "device:6.1.1")) and key != "device:4.5.1":
        return "host"
    return "default"


# ----------------------------------------------------------------------------------------
# drivers


class Proxy:
    """The transport as a broken driver uses it."""

    def __init__(self, inner: Transport, bug: str) -> None:
        self.inner = inner
        self.bug = bug
        self.last_status = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def write_status(self, value: int) -> None:
        if self.bug == "driver:2.1.1" and value & 8:
            value &= ~1
        if self.bug == "driver:2.1.1/2" and value == 0 and self.inner.read_status() & 0x80:
            return  # re-initializes a device it failed, without the reset
        if self.bug == "driver:3.1.1" and value == 1:
            return
        self.last_status = value
        self.inner.write_status(value)
        if self.bug == "driver:3.1.1/2" and value & 8 and not value & 4:
            self.inner.write_driver_features(self.features)

    def read_status(self) -> int:
        if self.bug == "driver:3.1.1/3" and self.last_status & 8:
            return self.last_status
        status = self.inner.read_status()
        if self.bug == "driver:3.1.1/4" and self.last_status & 8:
            status |= 8
        return status

    def read_device_features(self) -> int:
        if self.bug == "driver:2.5.1":
            self.inner.read_config(0, 28)
        self.offer = self.inner.read_device_features()
        return self.offer

    def write_driver_features(self, features: int) -> None:
        if self.bug == "driver:2.2.1":
            features |= 1 << 4
        if self.bug == "driver:2.2.1/2":
            features |= self.offer
        if self.bug == "driver:6.1":
            features &= ~(1 << _F.VIRTIO_F_VERSION_1)
        self.features = features
        self.inner.write_driver_features(features)

    def queue_max_size(self, index: int) -> int:
        size = self.inner.queue_max_size(index)
        return size or (256 if self.bug == "driver:3.1.1/4" else 0)

    def setup_queue(self, index: int, size: int, desc: int, driver: int, device: int) -> None:
        if self.bug == "driver:2.7.1":
            driver += 1
        if self.bug == "driver:2.8.11":
            device += 2
        self.inner.setup_queue(index, size, desc, driver, device)
        if self.bug == "driver:3.1.1/5":
            self.inner.kick(index)

    def enable_queue(self, index: int) -> None:
        self.inner.enable_queue(index)
        if self.bug == "driver:5.1.4.2":
            self.inner.write_config(0, b"\x02" * 6)


_PACKED = 1 << _F.VIRTIO_F_RING_PACKED
_WANTS = {
    "driver:2.8.11": _PACKED,
    "driver:2.8.17": _PACKED, "driver:2.8.17/2": _PACKED,
    "driver:2.8.19": _PACKED, "driver:2.8.19/2": _PACKED,
    "driver:5.1.6.3.1": 1 << _N.VIRTIO_NET_F_MRG_RXBUF,
    "driver:5.1.6.5.6.1": 1 << _N.VIRTIO_NET_F_MQ,
}
_RX_SIZE = {"driver:5.1.6.3.1": 8, "driver:5.1.6.3.1/2": 1000}
_HDR = {"driver:5.1.6.2.1": net_hdr(num_buffers=1), "driver:5.1.6.2.1/2": net_hdr(flags=1),
        "driver:5.1.6.2.1/3": net_hdr(flags=2), "driver:5.1.6.2.1/4": net_hdr(gso_type=1)}


class BrokenDriver(ReferenceDriver):
    """The reference driver with the bug that breaks clause `bug`."""

    def __init__(self, bug: str) -> None:
        base = DEFAULT_WANT | mask_of([_F.VIRTIO_F_INDIRECT_DESC, _F.VIRTIO_F_EVENT_IDX])
        super().__init__(base | _WANTS.get(bug, 0), rx_size=_RX_SIZE.get(bug, 1538))
        self.bug = bug

    def start(self, device: Transport) -> None:
        proxy = Proxy(device, self.bug)
        if self.bug in ("driver:5.1.4.2/2", "driver:5.1.6.3.1/2"):
            s = self.session = DriverSession(proxy)  # type: ignore[arg-type]
            if s.negotiate(self.want):
                s.setup_queues()
                s.driver_ok()
                s.post_rx(self.rx_buffers, self.rx_size)  # mtu ignored
            return
        super().start(proxy)  # type: ignore[arg-type]
        s = self.session
        if s is None or not s.negotiated:
            return
        q = s.queues[0]
        if self.bug == "driver:2.7.7.1":
            s.memory().write_u16(q.avail, 2)  # type: ignore[union-attr]
        if self.bug == "driver:2.7.7.1/2":
            s.memory().write_u16(q.avail, 1)  # type: ignore[union-attr]  # NO_INTERRUPT with EVENT_IDX

    def _transmit_packed(self, s: DriverSession, frames: Sequence[bytes]) -> None:
        tx = s.txq()
        q = s.queues[tx]
        assert isinstance(q, MockPackedQueue)
        for frame in frames:
            ident = s.add(tx, [net_hdr(), frame])
            slots = q.slots_of(ident)
            addr, length, _, flags = q.peek_desc(slots[0])
            if self.bug == "driver:2.8.17":
                q.poke_desc(slots[0], flags=flags | WRITE)
            elif self.bug in ("driver:2.8.17/2", "driver:2.8.19"):
                n = q.size + 6 if self.bug == "driver:2.8.17/2" else 1
                extra = NEXT if self.bug == "driver:2.8.19" else 0
                table = q.raw_table([(addr + i % length, 1, 0, extra) for i in range(n)])
                q.poke_desc(slots[0], addr=table, len=16 * n, flags=(flags & ~NEXT) | IND)
            elif self.bug == "driver:2.8.19/2":
                q.poke_desc(slots[0], flags=flags | IND)
            s.kick(tx)

    def transmit(self, frames: Sequence[bytes]) -> None:
        s = self._live()
        if isinstance(s.queues[s.txq()], MockPackedQueue):
            self._transmit_packed(s, frames)
            return
        tx = s.txq()
        q = s.queues[tx]
        assert isinstance(q, MockSplitQueue)
        for frame in frames:
            hdr = _HDR.get(self.bug, net_hdr())
            if self.bug in ("driver:2.7.10.1", "driver:2.7.10.1/2"):
                s.add(tx, [hdr + frame])
                continue
            head = s.add(tx, [hdr, frame], publish=False)
            ids = q.driver.descriptors_of(head)
            addr, length, flags, _ = q.peek_desc(ids[0])
            if self.bug == "driver:2.7.4.2":
                q.poke_desc(ids[0], flags=flags | WRITE)
            elif self.bug == "driver:2.7.5.2":
                q.poke_desc(ids[-1], flags=NEXT, next=head)
            elif self.bug == "driver:2.7.5.3.1":
                s.indirect_from(tx, head)
            elif self.bug == "driver:2.7.5.3.1/2":
                inner = q.raw_table([(addr, length, 0, 0)])
                outer = q.raw_table([(inner, 16, IND, 0)])
                q.poke_desc(head, addr=outer, len=16, flags=IND)
            elif self.bug == "driver:2.7.5.3.1/3":
                s.indirect_from(tx, head)
                q.poke_desc(head, flags=IND | NEXT, next=ids[1])
            elif self.bug == "driver:2.7.5.3.1/4":
                n = q.size + 6
                table = q.raw_table([(addr + i % length, 1, NEXT if i + 1 < n else 0, i + 1)
                                     for i in range(n)])
                q.poke_desc(head, addr=table, len=16 * n, flags=IND)
            q.publish()
            if self.bug == "driver:2.7.6.1":
                q.poke_avail_idx(q.driver.avail_idx - 2)
            s.kick(tx)

    def set_promisc(self, on: bool) -> None:
        if self.bug != "driver:5.1.6.5.1.2":
            super().set_promisc(on)
            return
        self._live().ctrl(0, 0, bytes([int(on)]))

    def set_queue_pairs(self, pairs: int) -> None:
        if self.bug != "driver:5.1.6.5.6.1":
            super().set_queue_pairs(pairs)
            return
        self._live().ctrl(4, 0, pairs.to_bytes(2, "little"))


def _factory(key: str) -> Callable[[], Any]:
    if key.startswith("device:"):
        profile = _device_profile(key)
        return lambda: BrokenDevice(profile, key)
    return lambda: BrokenDriver(key)


@pytest.mark.parametrize("key", list(CLAUSES))
def test_check_fails_on_its_mutant(key: str) -> None:
    result = run_clause(CLAUSES[key], _factory(key), "mutant")
    assert result.verdict == "fail", f"{key}: {result.verdict}: {result.detail}"
    assert CLAUSES[key].ref in result.detail


@pytest.mark.parametrize("key", list(CLAUSES))
def test_the_wrappers_alone_pass(key: str) -> None:
    """Without a bug the same wrappers pass, so each failure above is the bug's doing
    (and a clause added without a mutant fails test_check_fails_on_its_mutant)."""
    clause = CLAUSES[key]
    if clause.side == "device":
        profile = _device_profile(key)
        factory: Callable[[], Any] = lambda: BrokenDevice(profile, "none")  # noqa: E731
    else:
        want = _WANTS.get(key, 0)

        def factory() -> Any:
            drv = BrokenDriver("none")
            drv.want |= want
            return drv
    result = run_clause(clause, factory, "unbroken")
    assert result.verdict in ("pass", "n/a"), f"{key}: {result.verdict}: {result.detail}"


def test_results_check_fails_on_a_device_that_answers_err_to_everything() -> None:
    """A device that acks VIRTIO_NET_ERR to every offload command, with or without an
    errno, writes no result a driver can use: docs/offload-spec.md §4.5.2 fails."""
    for result in (b"", struct.pack("<I", 95)):
        def make(result: bytes = result) -> BrokenDevice:
            dev = BrokenDevice("host", "none")
            dev.device.ctrl.register(0x40, 1, lambda req: CtrlReply(1, "no", result))
            dev.device.ctrl.register(0x40, 2, lambda req: CtrlReply(1, "no", result))
            return dev
        verdict = run_clause(CLAUSES["device:4.5.2"], make, "err-to-everything")
        assert verdict.verdict == "fail", verdict
        assert "docs/offload-spec.md \u00a74.5.2" in verdict.detail
