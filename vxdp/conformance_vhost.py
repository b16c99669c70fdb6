"""A vhost-user back-end socket as a conformance target: the device checks of
`virtio_spec.conformance` against `vxdp host`, DPDK's net_vhost port, or anyone's.

`VhostUserDevice` is a `DeviceUnderTest` that plays the VMM between the library's driver
(`DriverSession`) and a back-end it reaches only through the socket, the way QEMU does
for a vhost-user-net device:

    transport call          vhost-user
    read_device_features    GET_FEATURES, less the vhost-level bits (PROTOCOL_FEATURES,
                            LOG_ALL) a VMM never shows a guest
    write_driver_features   SET_FEATURES (+ PROTOCOL_FEATURES when offered)
    read/write_status       GET_STATUS / SET_STATUS (protocol feature STATUS); writing 0
                            first stops every started ring (GET_VRING_BASE), as
                            vhost_dev_stop does
    read/write_config       GET_CONFIG / SET_CONFIG (protocol feature CONFIG)
    attach_memory           a memfd region sent with SET_MEM_TABLE
    setup + enable_queue    SET_VRING_NUM, _BASE, _ADDR, _KICK, _CALL, _ENABLE
    kick                    a write to the ring's kick eventfd, then a wait until the
                            back-end has settled (see below)
    take_notifications      the rings' call eventfds, read without blocking
    take_transmitted        frames in a pcap the back-end writes (`capture=`), if given

What cannot be observed through the socket is reported not applicable, never passed:
status without the STATUS protocol feature, config space without CONFIG, the wire
without a capture file, frames into the device (`receive`: a socket carries none),
feature bits the device never offered (SET_FEATURES with them is a protocol error a VMM
never commits: it filters them), features that need CTRL_VQ written without it (over
vhost-user that says the VMM keeps the control queue, as QEMU always does and DPDK
virtio_user does with queues > 1, and a back-end rightly takes them: §5.1.3.1's refusal
is the VMM's to make), and configuration change notifications, which travel on the
back-end request channel (BACKEND_REQ) this adapter does not open (`UNOBSERVABLE`).

Settling.  The back-end runs in another process and answers a kick in its own time;
the checks look at the rings right after `kick()`.  The adapter therefore waits after a
kick: one message round trip, then until the ring's device-written area (split: the used
ring; packed: the descriptor ring and the device event area) and the call eventfds have
been quiet for `quiet` seconds (at most `settle` seconds).  A back-end slower than that
makes a check see nothing used, which fails "used" clauses, never passes one.

`hide=` takes feature bits out of the offer, as a VMM does with what it serves itself:
QEMU keeps the control queue of a vhost-user-net device (`CTRL_QUEUE_FEATURES`), so a
plain back-end (DPDK's vhost library offers CTRL_VQ but never serves the queue) is seen
the way a guest behind QEMU would see it, and the ring clauses run on transmitq1.

`VhostUserDeviceFactory(path)` connects a fresh session per device and closes the
previous one first: a back-end serves one front-end at a time.  `run_socket()` runs the
device clauses and applies `UNOBSERVABLE`.
"""

from __future__ import annotations

import array
import mmap
import os
import socket
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virtio_spec.conformance import Clause, Report, Result, select
from virtio_spec.conformance import run as run_checks
from virtio_spec.conformance.adapter import TransportRefused, Unsupported
from virtio_spec.features import VirtioNetFeature as _N
from virtio_spec.features import dependents, describe, mask_of
from virtio_spec.memory import GuestMemory
from vxdp.errors import VhostUserError, VhostUserLocalError, VhostUserRemoteError
from vxdp.vhost_user import Frontend, FrontendMemory, Outgoing, Reply
from vxdp.vhost_user.frontend import check_ack
from vxdp.vhost_user.messages import (
    VHOST_F_LOG_ALL,
    VHOST_MEMORY_BASELINE_NREGIONS,
    VHOST_USER_F_PROTOCOL_FEATURES,
    ConfigPayload,
    VhostUserProtocolFeature,
)

_PF = VhostUserProtocolFeature
_PROTO_BIT = 1 << VHOST_USER_F_PROTOCOL_FEATURES
_CTRL_VQ = 1 << _N.VIRTIO_NET_F_CTRL_VQ
_NEEDS_CTRL_VQ = dependents(_N.VIRTIO_NET_F_CTRL_VQ)
#: vhost-level bits a VMM keeps to itself (never a virtio device feature).
VHOST_ONLY_BITS = _PROTO_BIT | 1 << VHOST_F_LOG_ALL
#: Protocol features the adapter asks for (of what the back-end offers).
WANTED_PROTOCOL = (1 << _PF.MQ | 1 << _PF.REPLY_ACK | 1 << _PF.CONFIG | 1 << _PF.STATUS
                   | 1 << _PF.RESET_DEVICE)
MEMORY_BASE = 0x4000_0000
#: The largest ring the adapter reports (QEMU's default virtio-net queue size).
QUEUE_MAX = 256
RING_PACKED = 34
_FD_SIZE = array.array("i").itemsize
_ANC = socket.CMSG_SPACE(VHOST_MEMORY_BASELINE_NREGIONS * _FD_SIZE)

#: The control queue and the features that need it: what QEMU keeps for itself.
CTRL_QUEUE_FEATURES = mask_of((
    _N.VIRTIO_NET_F_CTRL_VQ, _N.VIRTIO_NET_F_CTRL_RX, _N.VIRTIO_NET_F_CTRL_VLAN,
    _N.VIRTIO_NET_F_GUEST_ANNOUNCE, _N.VIRTIO_NET_F_MQ, _N.VIRTIO_NET_F_CTRL_MAC_ADDR,
    _N.VIRTIO_NET_F_CTRL_RX_EXTRA, _N.VIRTIO_NET_F_CTRL_GUEST_OFFLOADS,
    _N.VIRTIO_NET_F_XDP_OFFLOAD))

#: Clauses whose outcome cannot be seen through a vhost-user socket, and why.
UNOBSERVABLE: dict[str, str] = {
    "device:2.1.2/3": "a configuration change notification travels on the back-end "
                      "request channel (VHOST_USER_PROTOCOL_F_BACKEND_REQ), which this "
                      "adapter does not open: it cannot be observed",
}


class Disconnected(TransportRefused):
    """The back-end closed the connection (it refused a message outright)."""


@dataclass
class _Ring:
    size: int
    areas: tuple[int, int, int]  # guest-physical desc, driver area, device area
    kick: int | None = None
    call: int | None = None
    started: bool = False


class VhostUserDevice:
    """One vhost-user session as a `DeviceUnderTest` (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, capture: Path | None = None,
                 hide: int = 0, timeout: float = 5.0, settle: float = 0.5,
                 quiet: float = 0.02) -> None:
        self.path = os.fspath(path)
        self.capture = capture
        self.hide = hide
        self.settle = settle
        self.quiet = quiet
        self.core = Frontend()
        self.sock: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.memory: FrontendMemory | None = None
        self.rings: dict[int, _Ring] = {}
        self.features_written: int | None = None
        self.messages: list[str] = []  # every request sent, for traces and tests
        self._notes: list[int] = []
        self._capture_at = self._capture_size()
        try:
            self.sock.connect(self.path)
            self._opening()
        except BaseException:
            self.close()
            raise

    # -- messages --------------------------------------------------------------------

    def _send(self, out: Outgoing) -> Reply | None:
        sock = self.sock
        if sock is None:
            raise Disconnected("the vhost-user session is closed")
        self.messages.append(out.request.spec_name)
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", out.fds).tobytes())] \
            if out.fds else []
        try:
            view = memoryview(out.data)
            while view:
                sent = sock.sendmsg([view], anc)
                view, anc = view[sent:], []
            if not out.expects_reply:
                return None
            while True:
                data, ancdata, _, _ = sock.recvmsg(self.core.want(), _ANC)
                for level, kind, payload in ancdata:  # replies carry none; close any
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        for fd in array.array("i", payload[:len(payload) - len(payload)
                                                           % _FD_SIZE]):
                            os.close(fd)
                if not data:
                    raise Disconnected(f"back-end closed the connection at "
                                       f"{out.request.spec_name}")
                reply = self.core.receive_data(data)
                if reply is not None:
                    check_ack(reply)
                    return reply
        except (BrokenPipeError, ConnectionResetError) as exc:
            self._drop()
            raise Disconnected(f"back-end closed the connection at {out.request.spec_name}"
                               f" ({exc.strerror})") from None
        except TimeoutError:
            self._drop()
            raise Disconnected(f"no reply to {out.request.spec_name}") from None
        except Disconnected:
            self._drop()
            raise
        except VhostUserRemoteError as exc:  # a nack (REPLY_ACK) or a malformed reply
            raise TransportRefused(str(exc)) from None

    def _value(self, out: Outgoing) -> Any:
        reply = self._send(out)
        assert reply is not None
        return reply.value

    def _opening(self) -> None:
        core = self.core
        self.offered = int(self._value(core.get_features()))
        proto = 0
        if self.offered & _PROTO_BIT:
            offered_proto = int(self._value(core.get_protocol_features()))
            proto = offered_proto & WANTED_PROTOCOL
            self._send(core.set_protocol_features(proto))
        self.protocol = proto
        self.queue_pairs = 1
        if proto >> _PF.MQ & 1:
            self.queue_pairs = int(self._value(core.get_queue_num()))
        self._send(core.set_owner())

    def has(self, feature: VhostUserProtocolFeature) -> bool:
        return bool(self.protocol >> feature & 1)

    # -- features, status, config ----------------------------------------------------

    def read_device_features(self) -> int:
        return self.offered & ~VHOST_ONLY_BITS & ~self.hide

    def write_driver_features(self, features: int) -> None:
        extra = features & ~self.read_device_features()
        if extra:
            raise Unsupported(f"bits {extra:#x} were never offered: over vhost-user SET_"
                              f"FEATURES with them is a protocol error, which the front-end "
                              f"(the VMM) never commits")
        without = features & _NEEDS_CTRL_VQ
        if without and not features & _CTRL_VQ:
            raise Unsupported(f"{', '.join(describe(without))} without VIRTIO_NET_F_CTRL_VQ: "
                              f"over vhost-user that says the front-end keeps the control "
                              f"queue (QEMU, DPDK virtio_user), which the back-end takes; "
                              f"the refusal is the VMM's")
        self.features_written = features
        self._send(self.core.set_features(features | (self.offered & _PROTO_BIT)))

    def _need(self, feature: VhostUserProtocolFeature, what: str) -> None:
        if not self.has(feature):
            raise Unsupported(f"the back-end has no VHOST_USER_PROTOCOL_F_{feature.name}: "
                              f"{what} cannot be observed over vhost-user")

    def read_status(self) -> int:
        self._need(_PF.STATUS, "the device status")
        return int(self._value(self.core.get_status()))

    def write_status(self, value: int) -> None:
        self._need(_PF.STATUS, "the device status")
        if value == 0:
            self._stop_rings()
        self._send(self.core.set_status(value))

    def read_config(self, offset: int, length: int) -> bytes:
        self._need(_PF.CONFIG, "config space")
        value = self._value(self.core.get_config(offset, length))
        assert isinstance(value, ConfigPayload)
        return value.data

    def write_config(self, offset: int, data: bytes) -> None:
        self._need(_PF.CONFIG, "config space")
        self._send(self.core.set_config(offset, data))

    # -- memory and queues -----------------------------------------------------------

    def queue_max_size(self, index: int) -> int:
        # vhost-user carries no per-ring maximum; GET_QUEUE_NUM bounds the index: it
        # counts queue pairs (QEMU net, DPDK's vhost and ours), whose rings and a control
        # queue after them are the rings that may exist.
        return QUEUE_MAX if 0 <= index < self._ring_bound else 0

    @property
    def _ring_bound(self) -> int:
        return 2 * self.queue_pairs + 1

    def attach_memory(self, size: int) -> GuestMemory:
        size = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        if self.memory is not None:
            raise VhostUserLocalError("guest memory is attached once per session")
        self.memory = FrontendMemory.create([(MEMORY_BASE, size)])
        self._send(self.core.set_mem_table(self.memory.table(), self.memory.fds()))
        return self.memory.guest

    def setup_queue(self, index: int, size: int, desc: int, driver: int, device: int) -> None:
        if self.memory is None:
            raise TransportRefused("no guest memory attached")
        if not 0 <= index < self._ring_bound or not 1 <= size <= QUEUE_MAX:
            raise TransportRefused(f"queue {index} size {size} is outside what the adapter "
                                   f"offers")
        old = self.rings.get(index)
        if old is not None and old.started:
            self._stop(index)
        self.rings[index] = _Ring(size, (desc, driver, device))

    def enable_queue(self, index: int) -> None:
        ring = self.rings.get(index)
        if ring is None or self.memory is None:
            raise TransportRefused(f"queue {index} enabled before it was set up")
        if ring.started:
            return
        ring.kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        ring.call = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        packed = bool((self.features_written or 0) >> RING_PACKED & 1)
        desc, avail, used = (self.memory.uva(a) for a in ring.areas)
        # packed rings start at offset 0 with both wrap counters 1 (bit 15 of the base)
        for out in self.core.vring_setup(index, ring.size, desc, avail, used,
                                         base=0x8000 if packed else 0, kick=ring.kick,
                                         call=ring.call):
            self._send(out)
        ring.started = True

    def _stop(self, index: int) -> None:
        ring = self.rings[index]
        if ring.started and self.sock is not None:
            ring.started = False
            try:
                self._send(self.core.get_vring_base(index))
            finally:
                self._drain(ring)
                self._close_ring(ring)

    def _stop_rings(self) -> None:
        for index in sorted(self.rings):
            self._stop(index)
        self.rings.clear()

    @staticmethod
    def _close_ring(ring: _Ring) -> None:
        for fd in (ring.kick, ring.call):
            if fd is not None:
                os.close(fd)
        ring.kick = ring.call = None

    # -- notifications ---------------------------------------------------------------

    def kick(self, index: int) -> None:
        ring = self.rings.get(index)
        if ring is None or ring.kick is None:
            return  # a notification for a ring that is not running reaches nobody
        os.eventfd_write(ring.kick, 1)
        self._settle(index)

    def _drain(self, ring: _Ring) -> None:
        if ring.call is None:
            return
        try:
            if os.eventfd_read(ring.call):
                self._notes.append(next(i for i, r in self.rings.items() if r is ring))
        except BlockingIOError:
            pass

    def _drain_all(self) -> None:
        for index in sorted(self.rings):
            self._drain(self.rings[index])

    def _device_area(self, index: int) -> bytes:
        ring = self.rings[index]
        if self.memory is None:
            return b""
        mem = self.memory.guest
        desc, _, device = ring.areas
        if (self.features_written or 0) >> RING_PACKED & 1:
            return mem.read(desc, 16 * ring.size) + mem.read(device, 4)
        return mem.read(device, 6 + 8 * ring.size)

    def _settle(self, index: int) -> None:
        """Wait until the back-end is done with what the kick asked (module docstring)."""
        if self.sock is not None:
            try:
                self._value(self.core.get_features())  # one round trip
            except TransportRefused:
                return
        deadline = time.monotonic() + self.settle
        last, notes = self._device_area(index), len(self._notes)
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.002)
            self._drain_all()
            now_area = self._device_area(index)
            if now_area != last or len(self._notes) != notes:
                last, notes = now_area, len(self._notes)
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= self.quiet:
                return

    def take_notifications(self) -> list[int]:
        self._drain_all()
        out, self._notes = self._notes, []
        return out

    # -- the wire --------------------------------------------------------------------

    def receive(self, frames: Sequence[bytes]) -> None:
        raise Unsupported("frames into the device come from its wire, which a vhost-user "
                          "socket does not reach")

    def _capture_size(self) -> int:
        if self.capture is None:
            return 0
        try:
            return self.capture.stat().st_size
        except FileNotFoundError:
            return 0

    def take_transmitted(self) -> list[bytes]:
        if self.capture is None:
            raise Unsupported("no capture of the back-end's wire was given")
        try:
            data = self.capture.read_bytes()
        except FileNotFoundError:
            return []
        at = max(self._capture_at, 24)  # after the pcap file header
        out = []
        while at + 16 <= len(data):
            incl = struct.unpack_from("<I", data, at + 8)[0]
            if at + 16 + incl > len(data):
                break  # a record still being written
            out.append(bytes(data[at + 16:at + 16 + incl]))
            at += 16 + incl
        self._capture_at = at
        return out

    # -- closing ---------------------------------------------------------------------

    def _drop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        """Leave the back-end (it tears the session down) and free what we hold."""
        self._drop()
        for ring in self.rings.values():
            self._close_ring(ring)
        self.rings.clear()
        self.core.close()
        if self.memory is not None:
            memory, self.memory = self.memory, None
            try:
                memory.close()
            except VhostUserLocalError:
                # a check's mock rings still view the mapping: release the memfds now,
                # the mapping goes with the last view
                for region in memory.regions:
                    if region.fd >= 0:
                        os.close(region.fd)
                        region.fd = -1


class VhostUserDeviceFactory:
    """A fresh session per call, the previous one closed first (one front-end at a
    time is all a vhost-user back-end serves).  `unobservable` tells the pytest plugin
    (virtio_spec.pytest_plugin) which clauses to skip unrun, as `run_socket` does."""

    def __init__(self, path: str | os.PathLike[str], **options: object) -> None:
        self.path = os.fspath(path)
        self.options = options
        self.last: VhostUserDevice | None = None
        self.unobservable = UNOBSERVABLE
        self.__name__ = f"vhost-user {self.path}"

    def __call__(self) -> VhostUserDevice:
        if self.last is not None:
            self.last.close()
        try:
            self.last = VhostUserDevice(self.path, **self.options)  # type: ignore[arg-type]
        except (OSError, VhostUserError) as exc:
            raise ConnectionError(f"cannot open a vhost-user session on {self.path}: "
                                  f"{exc}") from exc
        return self.last

    def close(self) -> None:
        if self.last is not None:
            self.last.close()
            self.last = None


def run_socket(path: str | os.PathLike[str], clauses: Iterable[Clause] | None = None, *,
               name: str | None = None, **options: object) -> Report:
    """The device clauses against the back-end at `path` (clauses in `UNOBSERVABLE` are
    reported n/a with the reason, without running)."""
    chosen = [c for c in (select(side="device") if clauses is None else clauses)
              if c.side == "device"]
    target = name or f"vhost-user({os.fspath(path)})"
    factory = VhostUserDeviceFactory(path, **options)
    results: list[Result] = []
    try:
        for clause in chosen:
            reason = UNOBSERVABLE.get(clause.key)
            if reason is not None:
                results.append(Result(clause, target, "n/a", reason))
                continue
            results.extend(run_checks([clause], device=factory, device_name=target).results)
    finally:
        factory.close()
    return Report(results)


__all__ = ["CTRL_QUEUE_FEATURES", "QUEUE_MAX", "UNOBSERVABLE", "VHOST_ONLY_BITS", "WANTED_PROTOCOL", "Disconnected",
           "VhostUserDevice", "VhostUserDeviceFactory", "run_socket"]
