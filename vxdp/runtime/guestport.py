"""One guest of the host process: its vhost-user sessions bridged to a `host.Device`.

`GuestPort` turns the back-end's events into calls on a `host.Device` made fresh for
every front-end session (a guest that reconnects gets a new device, as a restarted QEMU
gets a new vhost-user back-end state):

    vhost-user event           device call
    SET_FEATURES               write_features (VHOST_USER_F_PROTOCOL_FEATURES removed)
                               now when the device is at DRIVER, else at FEATURES_OK;
                               ctrl_owner FRONTEND when CTRL_VQ's dependants come
                               without CTRL_VQ (see below)
    SET_STATUS / GET_STATUS    write_status, one §3.1.1 step at a time / read_status
    GET_CONFIG / SET_CONFIG    read_config / write_config (refused: §5.1.4.2)
    SET_MEM_TABLE              set_memory (the mapped memfd regions)
    ring started and enabled   set_queue(num, areas, base) + enable_queue
    SET_VRING_ENABLE           set_curr_queue_pairs, when the front-end keeps the ctrl queue
    GET_VRING_BASE             stop_queue: the ring stops; answered with the first chain
                               not completed (what it had taken is taken again from there)
    SET_DEVICE_STATE_FD        SAVE: host.migration.save into the pipe (every ring
                               stopped); LOAD: the state read from the pipe (device unused)
    CHECK_DEVICE_STATE         SAVE: written out; LOAD: load, restore, re-verify the
                               program (worker thread), then the device is swapped in
    kick eventfd               notify(queue), again after a checkpoint on MoreAvailable
    Disconnected               the device is dropped, its counters kept

Migration (vxdp.runtime.migration drives it from the guest): a source port counts the
frames that find its device live with the receive ring stopped (`drops.suspended`, and
per suspension in the saved state); a destination that restored a device switches by
its MAC and asks the guest to announce itself once every ring runs again.

The operator's actions (the control socket's `guest.link` and `guest.announce`):
`set_link(up)` is the carrier, as QEMU's `set_link` on a netdev: it belongs to the port,
not to a session, so it holds whether or not a front-end is connected, every new
session's device starts with it (`profile.link_up`), and a device reset keeps it; the
current device's status changes and a driver that negotiated VIRTIO_NET_F_STATUS hears
of it by a config change.  While the link is down frames to the guest are dropped before
the host program, and frames it transmits are taken off its ring and dropped (counted as
`drops.link_down`), as QEMU drops a netdev's traffic with its link down.  `announce()`
asks the live guest to announce itself (VIRTIO_NET_S_ANNOUNCE, virtio 1.3 §5.1.6.5.4):
refused with ENOTCONN without a live device and EOPNOTSUPP when the driver did not
negotiate VIRTIO_NET_F_GUEST_ANNOUNCE.

Whatever the device returns is carried out here: `Interrupt(sent)` signals the ring's
call eventfd, `ConfigInterrupt` becomes a CONFIG_CHANGE_MSG on the back-end request
channel when the front-end set one up (else it is only logged), `FrameTransmitted` goes to the host runtime (the wire, or another guest
whose MAC it is addressed to), per-queue packet and byte counters follow
`FrameDelivered` and `FrameTransmitted`.  A device refusal (`VirtioError`) gets the
front-end a REPLY_ACK nack and the session goes on; a protocol break, or a fault of ours
while serving this guest, ends this guest's session only.

The control queue.  Our guest runtime negotiates VIRTIO_NET_F_CTRL_VQ and its commands
(the XDP offload among them) reach the device's controlq.  QEMU, and DPDK virtio_user with
queues > 1, keep the control queue in the front-end: their SET_FEATURES carries MQ,
CTRL_RX, CTRL_VLAN, CTRL_MAC_ADDR without CTRL_VQ.  virtio 1.3 §5.1.3.1 forbids that to a
driver, so the device is told (`CtrlOwner.FRONTEND`) that the front-end provides CTRL_VQ:
the device has no controlq and its curr_queue_pairs follows the pairs whose two rings the
front-end enabled (SET_VRING_ENABLE), as QEMU's and DPDK's vhost back-ends take them.
GET_QUEUE_NUM answers max_virtqueue_pairs (queue pairs, as QEMU net and DPDK read it).

Frames for the guest enter through the host XDP program (ingress ifindex 2 + n for guest
n), on the C datapath (`cpath.CPath`: receiveq1/transmitq1 of a live split-ring device,
one C call per burst, program included) or on the device model with the program on the
runtime's `XdpHook`.  With several pairs in use a burst is spread over them by flow (a
hash of the IPv4 addresses and ports); on the C datapath only pair 1 is in C, the frames
of the other pairs go through the `XdpHook` and the device model, and their transmit
queues are drained by the model.
"""

from __future__ import annotations

import errno as E
import gc
import logging
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import trio

from host import (
    ConfigInterrupt,
    CtrlHandled,
    CtrlOwner,
    Device,
    DeviceEvent,
    DeviceNeedsReset,
    DeviceProfile,
    FrameDelivered,
    FrameDropped,
    FrameTransmitted,
    Interrupt,
    MoreAvailable,
    OffloadChanged,
    OffloadVerify,
    VerifyJob,
    XdpBounced,
    XdpRedirected,
    migration,
)
from host.config import ConfigSpace
from host.datapath import BurstOut
from host.device import RX_BACKLOG
from virtio_spec.ctrl import VirtioNetCtrlClass, VirtioNetCtrlMac
from virtio_spec.errors import LocalProtocolError, VirtioError
from virtio_spec.features import VirtioNetFeature, dependents, describe
from virtio_spec.split import SplitDeviceQueue
from virtio_spec.status import DeviceStatus
from virtio_spec.structs import VirtioNetStatus
from vxdp.errors import (
    GuestPortError,
    MigrationError,
    VhostUserError,
    VhostUserLocalError,
    VxdpError,
)
from vxdp.vhost_user import BackendConfig, BackendSession, VhostUserProtocolFeature
from vxdp.vhost_user import events as ev
from vxdp.vhost_user.messages import (
    VHOST_TRANSFER_STATE_DIRECTION_LOAD,
    VHOST_TRANSFER_STATE_DIRECTION_SAVE,
    VHOST_TRANSFER_STATE_PHASE_STOPPED,
    VHOST_USER_F_PROTOCOL_FEATURES,
)
from vxdp.vhost_user.transport import Handler, serve_backend, serve_connection

from .cpath import OFFLOAD_COUNTERS, CPath, add_counts

log = logging.getLogger("vxdp.runtime.guestport")

if TYPE_CHECKING:
    from .agent import AgentHandler
    from .host import HostRuntime

_PF = VhostUserProtocolFeature
_SAVE, _LOAD = VHOST_TRANSFER_STATE_DIRECTION_SAVE, VHOST_TRANSFER_STATE_DIRECTION_LOAD
#: What the host back-end offers: the guest runtime needs STATUS and CONFIG to carry
#: the virtio status and config space, REPLY_ACK to hear refusals at the request,
#: BACKEND_REQ to signal config changes (CONFIG_CHANGE_MSG), DEVICE_STATE to migrate.
PROTOCOL_FEATURES = (1 << _PF.MQ | 1 << _PF.REPLY_ACK | 1 << _PF.CONFIG | 1 << _PF.STATUS
                     | 1 << _PF.RESET_DEVICE | 1 << _PF.BACKEND_REQ | 1 << _PF.DEVICE_STATE)
#: The longest CHECK_DEVICE_STATE waits for the state to finish moving through the pipe.
STATE_TIMEOUT = 60.0
_PROTO_BIT = 1 << VHOST_USER_F_PROTOCOL_FEATURES
WIRE_IFINDEX = 1
FIRST_GUEST_IFINDEX = 2  # guest n is ifindex 2 + n (REDIRECT targets, devmap values)
#: How long a transmit kick's handler polls the ring for more after it ran dry, before
#: it turns the driver's kicks back on and waits for one (vhost-net's busy-poll on tx):
#: a guest that sends from another core is back within microseconds, and a kick costs
#: its driver a system call and this side a wake-up.
TX_SPIN = 0.00002
ROOM_UNKNOWN = 1 << 30  # rx_room() when it cannot tell (packed rings, no device)


def guest_mac(profile: DeviceProfile, n: int) -> bytes:
    """The MAC of guest n: the profile's, its last byte moved on by n."""
    return profile.mac[:5] + bytes([(profile.mac[5] + n) & 0xFF])


_STEPS_TO_FEATURES = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER
_INIT_BITS = (DeviceStatus.ACKNOWLEDGE, DeviceStatus.DRIVER, DeviceStatus.FEATURES_OK,
              DeviceStatus.DRIVER_OK)


_CTRL_VQ = 1 << VirtioNetFeature.VIRTIO_NET_F_CTRL_VQ
_CTRL_MAC = int(VirtioNetCtrlClass.VIRTIO_NET_CTRL_MAC)
_MAC_ADDR_SET = int(VirtioNetCtrlMac.VIRTIO_NET_CTRL_MAC_ADDR_SET)
#: Features that MUST come with CTRL_VQ (virtio 1.3 §5.1.3.1, and the XDP offload).
NEEDS_CTRL_VQ = dependents(VirtioNetFeature.VIRTIO_NET_F_CTRL_VQ)


def ctrl_owner_for(features: int) -> CtrlOwner:
    """FRONTEND when a front-end accepted features that need CTRL_VQ without it: it
    answers the control queue itself, as QEMU does for vhost-user net back-ends and DPDK
    virtio_user does with queues > 1.  DEVICE otherwise (our guest takes CTRL_VQ)."""
    if features & NEEDS_CTRL_VQ and not features & _CTRL_VQ:
        return CtrlOwner.FRONTEND
    return CtrlOwner.DEVICE


def flow_pair(frame: bytes, pairs: int) -> int:
    """The queue pair of a frame's flow: a hash of the IPv4 addresses and ports."""
    return zlib.crc32(frame[26:38]) % pairs if pairs > 1 else 0


def status_steps(current: int, written: int) -> list[int]:
    """The status writes a vhost-user SET_STATUS stands for, one bit at a time.

    A front-end forwards the driver's status as it sees fit: DPDK virtio_user 22.11 sends
    its first SET_STATUS with ACKNOWLEDGE|DRIVER|FEATURES_OK set together, QEMU sends
    FEATURES_OK, then adds ACKNOWLEDGE|DRIVER|DRIVER_OK.  A bit of §3.1.1's sequence implies
    the ones before it, so the device walks every step up to the highest bit set, in
    order (virtio 1.3 §3.1.1).  A reset, FAILED, a cleared bit or an undefined bit goes
    to the device as written, and the device judges it."""
    init = 0
    for bit in _INIT_BITS:
        init |= bit
    if written == 0 or written & ~init or current & ~written & init:
        return [written]
    top = max((i for i, bit in enumerate(_INIT_BITS) if written & bit), default=-1)
    steps: list[int] = []
    value = current
    for bit in _INIT_BITS[:top + 1]:
        if not value & bit:
            value |= int(bit)
            steps.append(value)
    return steps or [written]


def _counter() -> dict[str, int]:
    return {"packets": 0, "bytes": 0}


@dataclass
class _Transfer:
    """A device state moving through the pipe SET_DEVICE_STATE_FD gave."""

    direction: int
    done: trio.Event = field(default_factory=trio.Event)
    data: bytes = b""
    error: str = ""


class GuestPort:
    """One guest's socket, its current session and device, and its counters."""

    def __init__(self, runtime: HostRuntime, number: int, path: str,
                 profile: DeviceProfile) -> None:
        self.runtime = runtime
        self.number = number
        self.path = path
        self.profile = replace(profile, mac=guest_mac(profile, number))
        self._switched_mac = self.profile.mac
        self.config = BackendConfig(
            features=self.profile.features | _PROTO_BIT, protocol_features=PROTOCOL_FEATURES,
            queue_num=self.profile.max_queue_pairs,  # GET_QUEUE_NUM: pairs (QEMU, DPDK)
            vrings=2 * self.profile.max_queue_pairs + 1,
            max_queue_size=self.profile.max_queue_size,
            config_size=ConfigSpace(self.profile).size)
        self.ifindex = FIRST_GUEST_IFINDEX + number
        self.device: Device | None = None
        self.session: BackendSession | None = None
        self.cpath = CPath(runtime.switch, self.ifindex) if runtime.switch is not None \
            else None
        self.sessions = 0
        self.last_disconnect = ""
        self.queues: dict[str, dict[str, int]] = {}
        self.drops: dict[str, int] = {"rx": 0, "tx": 0, "no_device": 0, "link_down": 0,
                                      "suspended": 0}
        # the device is live with its receive ring stopped (GET_VRING_BASE, as a
        # migration's source is): frames that come meanwhile count as `suspended`
        self.suspended = False
        self.suspended_drops = 0  # frames dropped since the current suspension began
        self._transfer: _Transfer | None = None
        self._announce = False  # a restored device asks its guest to announce itself
        self.migration: dict[str, Any] = {"saved": 0, "restored": None, "refused": ""}
        self.interrupts = 0
        self.coalesced = 0  # interrupts folded into one the driver had not read (ended sessions)
        self.kicks: dict[str, int] = {}  # per queue: the driver's notifications
        self.device_totals: dict[str, int] = {}
        self.running: set[int] = set()  # queues the device works (started and enabled)
        self.rx_posted = False  # the driver kicked receiveq1 since DRIVER_OK
        self.rx_stalled = False  # no buffers for ROOM_WAIT: the wire does not wait for it
        self.rx_stalls = 0
        self.features_pending: int | None = None  # SET_FEATURES before DRIVER was set
        self.offload_totals: dict[str, int] = {}  # offload counters of devices gone
        self._jobs: trio.Nursery | None = None  # runs the offload's verifications
        self.agent: AgentHandler | None = None  # this guest's host agent, if it has one
        self._hop = 0  # > 0 while frames another guest redirected here are delivered
        table: dict[type[ev.BackendEvent], Handler] = {
            ev.Connected: self._connected, ev.Disconnected: self._disconnected,
            ev.FeaturesSet: self._features, ev.DeviceReset: self._reset,
            ev.MemTableSet: self._mem_table, ev.VringKickSet: self._maybe_start,
            ev.VringEnableSet: self._maybe_start, ev.VringBaseQueried: self._stop,
            ev.ConfigQueried: self._config_read, ev.ConfigSet: self._config_write,
            ev.StatusSet: self._status_write, ev.StatusQueried: self._status_read,
            ev.Kicked: self._kicked, ev.DeviceStateFdSet: self._state_fd,
            ev.DeviceStateChecked: self._state_check,
        }
        self.handlers = {cls: self._guarded(h) for cls, h in table.items()}

    def _guarded(self, handler: Handler) -> Handler:
        """A fault of ours while serving one guest ends that guest's session, never the
        host: anything but a device refusal (VirtioError) or a transport error becomes a
        VhostUserLocalError, which the session logs before it disconnects."""
        async def guarded(session: BackendSession, event: Any) -> object:
            try:
                return await handler(session, event)
            except (VirtioError, VhostUserError) as exc:
                # Without the device's frames: the session logs the refusal, and a kept
                # record must not pin the ring views the session's memory unmaps under.
                raise exc.with_traceback(None) from None
            except Exception as exc:
                log.exception("guest %d: handling %s failed", self.number, event.describe())
                raise VhostUserLocalError(
                    f"guest {self.number}: handling {event.describe()} failed: {exc}") from exc
        return guarded

    # -- serving ---------------------------------------------------------------------

    @property
    def live(self) -> bool:
        return self.device is not None and self.device.live

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Listen on this guest's socket and serve its front-ends one after another."""
        async with trio.open_nursery() as nursery:
            self._jobs = nursery
            await serve_backend(self.path, self.config, self.handlers,
                                task_status=task_status)

    async def serve_socket(self, sock: trio.socket.SocketType) -> str:
        """Serve one front-end on a connected socket (tests: a socketpair)."""
        async with trio.open_nursery() as nursery:
            self._jobs = nursery
            reason = await serve_connection(sock, self.config, self.handlers)
            nursery.cancel_scope.cancel()
        return reason

    def offload_changed(self, why: str) -> None:
        """The offloaded program changed by another path than the control queue (the
        host agent, `vxdp.runtime.agent`): the datapath takes it as it takes the device's
        `OffloadChanged`."""
        if self.device is not None:
            self._handle([OffloadChanged(why, self.device.offloaded)])

    async def _verify(self, device: Device, job: VerifyJob) -> None:
        """An offloaded program's verification (and jit compile), on a worker thread so
        that the host's other guests go on meanwhile; then the device answers the guest
        (a device gone meanwhile drops the job: nothing is loaded)."""
        await trio.to_thread.run_sync(job.run, abandon_on_cancel=True)
        if device is self.device:
            self._handle(device.finish_ctrl(job))

    # -- the operator's actions -----------------------------------------------------

    @property
    def link_up(self) -> bool:
        """The carrier the operator set (up until `set_link(False)`)."""
        return self.profile.link_up

    def set_link(self, up: bool) -> bool:
        """Carrier up or down (see the module docstring): kept for this port's sessions
        to come; the current device, if any, changes its status.  True when the
        front-end was sent a config change for it (CONFIG_CHANGE_MSG)."""
        self.profile = replace(self.profile, link_up=up)
        if self.cpath is not None and self.cpath.port is not None:
            self.cpath.port.set_carrier(up)
        if self.device is None:
            log.info("guest %d: link %s (no front-end: its next device starts so)",
                     self.number, "up" if up else "down")
            return False
        return self._handle(self.device.set_link(up)) > 0

    def announce(self) -> bool:
        """Ask the guest to announce itself (virtio 1.3 §5.1.6.5.4); its driver acks with
        VIRTIO_NET_CTRL_ANNOUNCE_ACK.  True when the front-end was sent a config change
        (without one the guest sees the request when it next reads its config)."""
        device = self.device
        if device is None:
            raise GuestPortError(f"guest {self.number}: no front-end connected "
                                 f"({self.last_disconnect or 'never connected'})", E.ENOTCONN)
        if not device.live:
            raise GuestPortError(f"guest {self.number}: the device is not live (status "
                                 f"{device.status_names})", E.ENOTCONN)
        if not device.has(VirtioNetFeature.VIRTIO_NET_F_GUEST_ANNOUNCE):
            raise GuestPortError(f"guest {self.number}: its driver did not negotiate "
                                 f"VIRTIO_NET_F_GUEST_ANNOUNCE: it cannot be asked to "
                                 f"announce itself (virtio 1.3 §5.1.6.5.4)", E.EOPNOTSUPP)
        return self._handle(device.announce()) > 0

    def link_info(self) -> dict[str, object]:
        """This guest as `vxdp link show` prints it."""
        device = self.device
        net_status = device.config.status if device is not None else 0
        return {
            "guest": self.number, "socket": self.path, "ifindex": self.ifindex,
            "mac": self.mac.hex(":"), "link": "up" if self.link_up else "down",
            "connected": self.session is not None, "live": self.live,
            "status": device.status_names if device is not None else "",
            "features": describe(device.negotiated) if device is not None else [],
            "announce_pending": bool(net_status & VirtioNetStatus.VIRTIO_NET_S_ANNOUNCE),
            "config_changes": (self.session.config_changes_sent
                               if self.session is not None else 0),
        }

    # -- handlers --------------------------------------------------------------------

    def _need_device(self) -> Device:
        if self.device is None:
            raise LocalProtocolError("vhost-user event outside a session")
        return self.device

    async def _connected(self, session: BackendSession, event: ev.Connected) -> None:
        self.session = session
        self.device = Device(self.profile, xdp_engine=self.runtime.engine,
                             ifindex=self.ifindex)
        self._sync_mac()  # a MAC the last session's driver set went with its device
        self.running.clear()
        self.rx_posted = False
        self.rx_stalled = False
        self.features_pending = None
        self.suspended = self._announce = False
        self._transfer = None
        self.sessions += 1
        log.info("guest %d (%s): front-end connected", self.number, self.path)

    async def _disconnected(self, session: BackendSession, event: ev.Disconnected) -> None:
        self.coalesced += session.coalesced
        self._release()
        device, self.device, self.session = self.device, None, None
        self.running.clear()
        self.suspended = False
        self._transfer = None
        self.last_disconnect = event.reason or "closed"
        if device is not None:
            add_counts(self.device_totals, device.stats)
            if device.offload is not None and device.offload.program is not None:
                log.info("guest %d: front-end gone: its offloaded program and %d map(s) "
                         "destroyed", self.number, len(device.offload.maps))
            del device
            # The edge unmaps the session's memory next: cyclic garbage (tracebacks,
            # closures) may still view the rings, so collect before it tries.
            gc.collect()
        log.info("guest %d (%s): front-end left: %s", self.number, self.path,
                 self.last_disconnect)

    async def _features(self, session: BackendSession, event: ev.FeaturesSet) -> None:
        # vhost-user carries features apart from the status: QEMU and DPDK virtio_user
        # send SET_FEATURES before any SET_STATUS.  The device takes them at DRIVER
        # (virtio 1.3 §3.1.1 step 4); before that they wait for the status walk.
        device = self._need_device()
        features = event.features & ~_PROTO_BIT
        if device.read_status() & DeviceStatus.FEATURES_OK and features == device.negotiated:
            # the same features again (a front-end restarting its rings, or resuming a
            # migrated device): nothing to negotiate
            self.features_pending = None
            return
        self.features_pending = features
        if device.read_status() & _STEPS_TO_FEATURES == _STEPS_TO_FEATURES \
                and not device.read_status() & DeviceStatus.FEATURES_OK:
            self._write_features(device, self.features_pending)
            self.features_pending = None

    def _write_features(self, device: Device, features: int) -> None:
        self._handle(device.write_features(features, ctrl_owner=ctrl_owner_for(features)))

    async def _reset(self, session: BackendSession, event: ev.DeviceReset) -> None:
        self._release()
        self.running.clear()
        self.suspended = False
        self.features_pending = None
        self._handle(self._need_device().write_status(0))
        self._sync_mac()

    async def _mem_table(self, session: BackendSession, event: ev.MemTableSet) -> None:
        assert session.memory is not None
        self._need_device().set_memory(session.memory.guest)

    async def _maybe_start(self, session: BackendSession,
                           event: ev.VringKickSet | ev.VringEnableSet) -> None:
        device = self._need_device()
        if isinstance(event, ev.VringEnableSet):
            self._follow_enabled_pairs(session)
        vring = session.backend.vrings[event.index]
        enabled = vring.enabled or not (session.backend.features or 0) & _PROTO_BIT
        if not (vring.started and enabled) or event.index in self.running:
            if isinstance(event, ev.VringEnableSet) and not event.enabled:
                self.running.discard(event.index)
            return
        assert vring.num is not None and vring.areas is not None
        slot = device.slot(event.index)
        if slot is None or slot.engine is None:
            self._handle(device.set_queue(event.index, vring.num, *vring.areas,
                                          base=vring.base))
            self._handle(device.enable_queue(event.index))
        self.running.add(event.index)
        self.suspended = False
        self._take()
        if self._announce and device.live and not device.resume_at:
            # every ring of a migrated device runs again: ask the guest to announce
            # itself, so that the network learns where it is now (QEMU does so after a
            # migration: virtio_net_post_load_device, virtio 1.3 §5.1.6.5.4)
            self._announce = False
            self._handle(device.announce())

    def _follow_enabled_pairs(self, session: BackendSession) -> None:
        """With the control queue in the front-end, the pairs in use are the ones whose
        rings it enabled: pair k counts when rings 2k and 2k+1 are enabled and every
        pair before it does (QEMU and DPDK virtio_user enable pairs 0 .. n-1, and
        disable the rest, for the driver's VQ_PAIRS_SET)."""
        device = self.device
        if device is None or device.ctrl_owner is not CtrlOwner.FRONTEND \
                or not device.read_status() & DeviceStatus.FEATURES_OK:
            return
        vrings = session.backend.vrings
        pairs = 0
        while pairs < device.queue_pairs and 2 * pairs + 1 < len(vrings) \
                and vrings[2 * pairs].enabled and vrings[2 * pairs + 1].enabled:
            pairs += 1
        if max(pairs, 1) != device.net.curr_queue_pairs:
            log.info("guest %d: %d queue pair(s) enabled by the front-end", self.number,
                     pairs)
        device.set_curr_queue_pairs(max(pairs, 1))

    async def _stop(self, session: BackendSession, event: ev.VringBaseQueried) -> int:
        """GET_VRING_BASE: the ring stops where it stands (`Device.stop_queue`: what it
        had taken and not completed is given up, and taken again from the answer)."""
        if event.index in (0, 1):
            self._release()
        self.running.discard(event.index)
        device = self.device
        stopped = device.stop_queue(event.index) if device is not None else None
        if stopped is None:
            return int(session.backend.vrings[event.index].base)
        base, dropped = stopped
        assert device is not None
        if device.live and not self.suspended:
            self.suspended, self.suspended_drops = True, 0
        self._suspended_drop(dropped)
        return base

    def _suspended_drop(self, frames: int) -> None:
        self.drops["suspended"] += frames
        self.suspended_drops += frames

    # -- migration: the device's state through SET_DEVICE_STATE_FD -------------------

    async def _state_fd(self, session: BackendSession, event: ev.DeviceStateFdSet) -> int:
        """Save the device into the pipe (the source), or read a state to load (the
        destination): an errno for the reply, 0 when the transfer started.  vhost-user.rst
        allows it in phase STOPPED only, both devices suspended: every ring stopped."""
        device = self._need_device()
        if event.direction not in (_SAVE, _LOAD) \
                or event.phase != VHOST_TRANSFER_STATE_PHASE_STOPPED:
            log.warning("guest %d: %s: only direction save or load in phase stopped",
                        self.number, event.describe())
            return E.EINVAL
        if not event.suspended:
            log.warning("guest %d: %s refused: a ring is running (phase stopped needs "
                        "every ring stopped)", self.number, event.describe())
            return E.EBUSY
        if event.direction == _LOAD and device.read_status() != 0:
            log.warning("guest %d: state load refused: the front-end already drives this "
                        "device (status %s)", self.number, device.status_names)
            return E.EBUSY
        assert self._jobs is not None
        transfer = _Transfer(event.direction)
        if event.direction == _SAVE:
            try:
                doc = migration.save(device, frames_dropped=self.suspended_drops)
            except MigrationError as exc:
                log.warning("guest %d: state not saved: %s", self.number, str(exc))
                return exc.errno
            self._jobs.start_soon(self._send_state, os.dup(event.fd),
                                  migration.encode(doc), transfer)
        else:
            limit = migration.state_limit(self.profile.xdp)
            self._jobs.start_soon(self._take_state, os.dup(event.fd), limit, transfer)
        self._transfer = transfer
        log.info("guest %d: %s", self.number, event.describe())
        return 0

    @staticmethod
    async def _send_state(fd: int, data: bytes, transfer: _Transfer) -> None:
        try:
            async with trio.lowlevel.FdStream(fd) as stream:
                await stream.send_all(data)
        except (OSError, trio.BrokenResourceError) as exc:
            transfer.error = f"the state was not written out: {exc}"
        finally:
            transfer.data = data
            transfer.done.set()

    @staticmethod
    async def _take_state(fd: int, limit: int, transfer: _Transfer) -> None:
        data = bytearray()
        try:
            async with trio.lowlevel.FdStream(fd) as stream:
                while chunk := await stream.receive_some(1 << 16):
                    data += chunk
                    if len(data) > limit:
                        break  # load() refuses it, naming the limit
        except (OSError, trio.BrokenResourceError) as exc:
            transfer.error = f"the state was not read in: {exc}"
        finally:
            transfer.data = bytes(data)
            transfer.done.set()

    async def _state_check(self, session: BackendSession,
                           event: ev.DeviceStateChecked) -> int:
        """CHECK_DEVICE_STATE: 0 when the state moved (and, loaded, the device it
        describes now serves this front-end), else an errno; the reason is logged and
        kept in `migration["refused"]`."""
        transfer, self._transfer = self._transfer, None
        if transfer is None:
            log.warning("guest %d: VHOST_USER_CHECK_DEVICE_STATE with no transfer",
                        self.number)
            return E.EINVAL
        with trio.move_on_after(STATE_TIMEOUT):
            await transfer.done.wait()
        if not transfer.done.is_set() or transfer.error:
            why = transfer.error or f"no end of file within {STATE_TIMEOUT:g} s"
            log.error("guest %d: device state transfer failed: %s", self.number, why)
            return E.EIO
        if transfer.direction == _SAVE:
            self.migration["saved"] += 1
            log.info("guest %d: device state saved (%d bytes, %d frames dropped while "
                     "suspended)", self.number, len(transfer.data), self.suspended_drops)
            return 0
        try:
            return await self._restore(session, transfer.data)
        except MigrationError as exc:
            # the words only: a log record keeping the exception would keep its frames,
            # and with them the session's memory, alive
            self.migration["refused"] = why = str(exc)
            log.error("guest %d: migrated device refused: %s", self.number, why)
            return exc.errno

    async def _restore(self, session: BackendSession, data: bytes) -> int:
        old = self._need_device()
        saved = migration.load(data, limit=migration.state_limit(self.profile.xdp))
        restoring = migration.restore(saved, self.profile, xdp_engine=self.runtime.engine,
                                      ifindex=self.ifindex)
        job = restoring.job
        if job is not None:  # the verifier on a worker thread: the other guests go on
            await trio.to_thread.run_sync(job.run, abandon_on_cancel=True)
        device = migration.finish(restoring)
        if self.device is not old or old.read_status() != 0:
            log.warning("guest %d: the device changed while its state loaded", self.number)
            return E.EBUSY
        if session.memory is not None:
            device.set_memory(session.memory.guest)
        add_counts(self.device_totals, old.stats)
        self.device = device
        self.features_pending = None  # the restored device negotiated them already
        if saved.mac != self.profile.mac:  # the guest keeps its MAC: frames follow it here
            self.profile = replace(self.profile, mac=saved.mac)
        self._sync_mac()
        self._announce = device.has(VirtioNetFeature.VIRTIO_NET_F_GUEST_ANNOUNCE)
        program = device.offloaded
        self.migration["restored"] = {
            "bytes": len(data), "maps": len(saved.offload.maps) if saved.offload else 0,
            "map_entries": saved.map_entries,
            "program": None if program is None else {
                "tag": program.program.tag, "insns": program.program.insn_count,
                "engine": program.engine, "profile": job.profile.name if job else "",
                "source_engine": saved.offload.program.engine
                if saved.offload and saved.offload.program else ""},
            "queues": {str(q.index): q.base for q in saved.queues}}
        self.migration["refused"] = ""
        log.info("guest %d: migrated device restored: %d map(s), %d entries, program %s",
                 self.number, self.migration["restored"]["maps"], saved.map_entries,
                 "none" if program is None else f"{program.program.tag} re-verified under "
                                                f"{job.profile.name if job else '?'}")
        return 0

    async def _config_read(self, session: BackendSession, event: ev.ConfigQueried) -> bytes:
        return self._need_device().read_config(event.offset, event.size)

    async def _config_write(self, session: BackendSession, event: ev.ConfigSet) -> None:
        self._need_device().write_config(event.offset, event.data)
        self._sync_mac()

    async def _status_write(self, session: BackendSession, event: ev.StatusSet) -> None:
        device = self._need_device()
        if event.status == 0:
            self._release()
            self.running.clear()
            self.features_pending = None
        for value in status_steps(device.read_status(), event.status):
            if value & DeviceStatus.FEATURES_OK and self.features_pending is not None:
                self._write_features(device, self.features_pending)
                self.features_pending = None
            self._handle(device.write_status(value))
            if device.read_status() != value:
                break  # refused (FEATURES_OK with bad features, ...): the frontend reads it
        self._sync_mac()  # a reset restores the configured MAC
        self._follow_enabled_pairs(session)
        self._take()
        self.runtime.note_live()

    async def _status_read(self, session: BackendSession, event: ev.StatusQueried) -> int:
        return self._need_device().read_status()

    async def _kicked(self, session: BackendSession, event: ev.Kicked) -> None:
        name = self._queue_name(event.index)
        self.kicks[name] = self.kicks.get(name, 0) + 1
        if event.index == 0:
            self.runtime.rx_kicked()  # a wire burst may be waiting for these buffers
        if self.device is None or event.index not in self.running:
            return
        if event.index == 0 and not self.rx_posted and self.device.live:
            self.rx_posted = True  # the driver's first receive buffers are there
            self.runtime.note_live()
        while not self._serve_kick(event.index):
            # a lap of the ring done and the driver refilled meanwhile: let the other
            # tasks (its vhost-user messages, other guests, the wire) run, then go on
            await trio.lowlevel.checkpoint()
            if self.device is None or event.index not in self.running:
                return

    def _serve_kick(self, index: int) -> bool:
        """One lap of a kicked queue, by whoever runs it now (the C port for pair 1's
        transmit queue, which finds receive buffers by itself; the device model for the
        rest); True when done, False when the driver made more available meanwhile."""
        assert self.device is not None
        if self.cpath is not None and self.cpath.port is not None and index in (0, 1):
            if index == 0:
                return True
            port = self.cpath.port
            # vhost-net's transmit handler: kicks off while it works the ring (laps for
            # up to TURN, polling it TX_SPIN when it runs dry), on again before it waits
            port.tx_quiet(True)
            if not (self.link_up and self.runtime.c_transmit(self, spin=TX_SPIN)):
                self._burst_out(self.cpath.tx(), from_guest=True)
            self._c_broken("tx")
            if self.cpath.port is not port or port.tx_pending():
                return False
            return not port.tx_quiet(False)
        events = self.device.notify(index)
        self._handle(events)
        return not any(isinstance(e, MoreAvailable) for e in events)

    # -- the C datapath --------------------------------------------------------------

    def _take(self) -> None:
        """Pair 1 into C once the device is live and both of its rings run."""
        if self.cpath is None or self.cpath.active or self.device is None:
            return
        if self.device.live and {0, 1} <= self.running:
            xdp = self.runtime.xdp
            if self.cpath.take(self.device, xdp.program, xdp.maps, xdp.core_engine,
                               link_up=self.link_up):
                self.cpath.attach_offload(self.device.offloaded)

    def _release(self) -> None:
        if self.cpath is not None:
            self.cpath.release()

    def _c_broken(self, queue: str) -> None:
        """A ring the driver broke under the C port ("rx" or "tx" of pair 1): the device
        sets DEVICE_NEEDS_RESET and tells the driver (virtio 1.3 §2.1.2), logged, as the
        model does when its own engine refuses a ring."""
        assert self.cpath is not None
        err = self.cpath.newly_broken(queue)
        if err is not None and self.device is not None:
            self._handle(self.device.fail(0 if queue == "rx" else 1, str(err), err.clause))

    def _burst_out(self, out: BurstOut, *, from_guest: bool) -> None:
        for ifindex, mask in out.interrupts.items():
            target = self.runtime.by_ifindex(ifindex)
            if target is None or target.session is None:
                continue
            for queue, bit in ((0, 1), (1, 2)):
                if mask & bit:
                    target.interrupts += 1
                    target.session.notify(queue)
        if out.wire:
            if from_guest:
                self._transmitted(out.wire)
            else:
                self.runtime.wire.send(out.wire)

    # -- the datapath ----------------------------------------------------------------

    def _queue_name(self, index: int) -> str:
        slot = self.device.slot(index) if self.device is not None else None
        return slot.name if slot is not None else f"q{index}"

    def _queue(self, index: int) -> dict[str, int]:
        return self.queues.setdefault(self._queue_name(index), _counter())

    @property
    def mac(self) -> bytes:
        """The address the host switches this guest's frames by: its device's config mac
        (what VIRTIO_NET_CTRL_MAC_ADDR_SET changes and a reset restores, QEMU-style), the
        configured one between sessions."""
        device = self.device
        return bytes(device.config.mac) if device is not None else self.profile.mac

    def _sync_mac(self) -> None:
        """Switch by `mac` from now on if it changed (as a bridge in front of a tap learns
        the address a driver set)."""
        mac = self.mac
        if mac != self._switched_mac:
            log.info("guest %d: switched by mac %s (was %s)", self.number, mac.hex(":"),
                     self._switched_mac.hex(":"))
            self._switched_mac = mac
            self.runtime.remap_macs()

    def _handle(self, events: Sequence[DeviceEvent]) -> int:
        """Carry out what the device asked for (interrupts, frames) and count; the
        number of config changes signalled to the front-end."""
        out: list[bytes] = []
        signalled = 0
        for e in events:
            if isinstance(e, FrameTransmitted):
                q = self._queue(e.queue)
                q["packets"] += 1
                q["bytes"] += len(e.frame)
                out.append(e.frame)
            elif isinstance(e, FrameDelivered):
                q = self._queue(e.queue)
                q["packets"] += 1
                q["bytes"] += e.length
            elif isinstance(e, FrameDropped):
                self.drops[e.direction] = self.drops.get(e.direction, 0) + 1
            elif isinstance(e, Interrupt):
                if e.sent and self.session is not None:
                    self.interrupts += 1
                    self.session.notify(e.queue)
            elif isinstance(e, ConfigInterrupt):
                if self.session is not None and self.session.signal_config_change():
                    signalled += 1
                    log.info("guest %d: config change signalled: %s", self.number, e.why)
                else:
                    # No back-end request channel (BACKEND_REQ and CONFIG; DPDK virtio_user
                    # negotiates neither): the guest learns of config changes when it next
                    # reads status and config.
                    log.info("guest %d: config change not signalled: %s", self.number, e.why)
            elif isinstance(e, DeviceNeedsReset):
                log.warning("guest %d: %s", self.number, e.describe())
            elif isinstance(e, CtrlHandled) and e.ack != 0:
                # a refused control command: its errno went to the guest, its reason here
                log.info("guest %d: %s", self.number, e.describe())
            elif isinstance(e, CtrlHandled) and e.cls == _CTRL_MAC \
                    and e.command == _MAC_ADDR_SET:
                self._sync_mac()
            elif isinstance(e, OffloadVerify):
                if self._jobs is not None and self.device is not None:
                    self._jobs.start_soon(self._verify, self.device, e.job)
            elif isinstance(e, OffloadChanged):
                log.info("guest %d: %s", self.number, e.describe())
                if self.cpath is not None:
                    self.cpath.attach_offload(e.program)
            elif isinstance(e, XdpBounced):
                self.runtime.wire.send([e.frame])  # back out of the port it came in
            elif isinstance(e, XdpRedirected):
                if self._hop:  # one hop: a redirected frame is not redirected again
                    self.drops["redirect"] = self.drops.get("redirect", 0) + 1
                else:
                    self.runtime.redirect(e.ifindex, e.frame)
        if out:
            self._transmitted(out)
        return signalled

    def _transmitted(self, frames: Sequence[bytes]) -> None:
        """Frames the guest sent: on to the host, or dropped while the link is down
        (the device took them, as QEMU's virtio-net does with its netdev's link down)."""
        if self.link_up:
            self.runtime.from_guest(self, frames)
        else:
            self.drops["link_down"] += len(frames)

    def receive(self, frames: Sequence[bytes]) -> None:
        """Frames from the wire for this guest: the host XDP program, then its receive
        queues (in C, both in one call per burst, once the port is taken); nothing while
        its link is down.  A failure that is this guest's (its rings, its device) costs
        this burst, not the host."""
        if not self.link_up:
            self.drops["link_down"] += len(frames)
            return
        try:
            self._receive(frames)
        except (VirtioError, VxdpError) as exc:
            self.drops["rx"] += len(frames)
            # the text only: a record holding the exception would keep its traceback, and
            # with it the guest memory the frames were bound for, alive (log capture)
            log.error("guest %d: burst of %d frame(s) lost: %s", self.number, len(frames),
                      str(exc))

    def _receive(self, frames: Sequence[bytes]) -> None:
        device = self.device
        if device is None or not device.live:
            self.drops["no_device"] += len(frames)
            return
        if self.cpath is not None and self.cpath.active:
            pairs = device.net.curr_queue_pairs
            model: dict[int, list[bytes]] = {}
            if pairs > 1:  # pair 1 is in C, the others on the model
                in_c: list[bytes] = []
                for frame in frames:
                    pair = flow_pair(frame, pairs)
                    (in_c if pair == 0 else model.setdefault(pair, [])).append(frame)
                frames = in_c
            if frames:
                self._burst_out(self.cpath.rx(frames), from_guest=False)
                self._c_broken("rx")
            for pair, burst in sorted(model.items()):
                self._deliver_pair(pair, self._xdp(burst))
            return
        self._deliver(self._xdp(frames))

    def _xdp(self, frames: Sequence[bytes]) -> Sequence[bytes]:
        """The host XDP program on the model's side: TX and REDIRECT carried out, the
        frames it passed returned."""
        verdict = self.runtime.xdp.run(frames, ingress_ifindex=self.ifindex)
        if verdict.tx:
            self.runtime.wire.send(verdict.tx)
        for ifindex, frame in verdict.redirect:
            self.runtime.redirect(ifindex, frame)
        return verdict.passed

    def deliver(self, frames: Sequence[bytes]) -> None:
        """Frames another guest's program redirected here: into the receive queues past
        the host-attached program, through the offloaded one (spread over the pairs by
        flow); a second redirect is dropped (one hop, no loops)."""
        self._hop += 1
        try:
            self._deliver(frames)
        finally:
            self._hop -= 1

    def _deliver(self, frames: Sequence[bytes]) -> None:
        if not self.link_up:  # as QEMU drops a netdev's frames while its link is down
            self.drops["link_down"] += len(frames)
            return
        device = self.device
        if device is None or not device.live:
            self.drops["no_device"] += len(frames)
            return
        pairs = device.net.curr_queue_pairs
        by_pair: dict[int, list[bytes]] = {}
        for frame in frames:
            by_pair.setdefault(flow_pair(frame, pairs), []).append(frame)
        for pair, burst in sorted(by_pair.items()):
            if pair == 0 and self.cpath is not None and self.cpath.active:
                # the C port has pair 1's rings: in there, through the offloaded program
                self._burst_out(self.cpath.redirect_in(burst), from_guest=False)
                self._c_broken("rx")
            else:
                self._deliver_pair(pair, burst)

    def _deliver_pair(self, pair: int, frames: Sequence[bytes]) -> None:
        """Frames past XDP into receiveq(pair + 1) of the device model."""
        if not frames:
            return
        if 2 * pair not in self.running or self.device is None:
            if self.suspended:
                self._suspended_drop(len(frames))
            else:
                self.drops["no_device"] += len(frames)
            return
        self._handle(self.device.receive(frames, pair))

    def rx_stall(self, waited: float) -> None:
        """No receive buffers for a whole ROOM_WAIT: the wire stops waiting for this guest
        (HostRuntime's fairness rule) until it has some again."""
        self.rx_stalled = True
        self.rx_stalls += 1
        log.warning("guest %d: no receive buffers for %g ms: the wire no longer waits for "
                    "it, its frames drop until it posts some", self.number,
                    1000 * waited)

    def rx_unstall(self) -> None:
        self.rx_stalled = False
        log.info("guest %d: receive buffers again: the wire waits for it again", self.number)

    def rx_arm(self) -> bool:
        """Ask for a kick when the driver posts receive buffers (the C port turns kicks
        off while it has some); True when some are there already.  The Python model
        leaves kicks on: nothing to do."""
        if self.cpath is not None and self.cpath.port is not None:
            return self.cpath.port.rx_arm()
        return False

    def rx_room(self) -> int:
        """Frames receiveq1 can take now without a drop: buffers posted and not taken
        (split rings; one buffer a frame), plus the model's backlog space; only that
        space while the backlog holds frames (new ones queue behind them)."""
        device = self.device
        slot = device.slot(0) if device is not None and device.live else None
        if device is None or device.memory is None or slot is None or not self.rx_posted:
            return 0 if device is not None and device.live else ROOM_UNKNOWN
        if self.cpath is not None and self.cpath.port is not None:
            room = self.cpath.port.rx_room()
            # a broken ring holds no frame back: what it is given counts as dropped
            return ROOM_UNKNOWN if room is None else room
        avail = device.memory.read_u16(slot.addresses[1] + 2)
        engine = slot.engine
        if not isinstance(engine, SplitDeviceQueue):
            return ROOM_UNKNOWN
        if slot.backlog:
            # frames queue behind the backlog until the driver's next kick flushes it,
            # whatever buffers are posted meanwhile
            return RX_BACKLOG - len(slot.backlog)
        return ((avail - int(engine.last_avail_idx)) & 0xFFFF) + RX_BACKLOG

    def close(self) -> None:
        """The host is closing: the C port leaves the switch (its counters are not
        needed any more) and nothing here keeps it."""
        if self.cpath is not None and self.cpath.port is not None:
            self.cpath.port.close()
            self.cpath.port = None

    def stats(self) -> dict[str, object]:
        device_stats = dict(self.device_totals)
        if self.device is not None:
            add_counts(device_stats, self.device.stats)
        queues = {k: dict(v) for k, v in self.queues.items()}
        drops = dict(self.drops)
        datapath: dict[str, object] = {"kind": "python"}
        if self.cpath is not None:
            c = self.cpath.stats()
            datapath = {"kind": "c" if self.cpath.active else "python",
                        "refusal": self.cpath.refusal, "c_counters": c}
            for name, pk, by in (("receiveq1", "guest_packets", "guest_bytes"),
                                 ("transmitq1", "tx_packets", "tx_bytes")):
                if c.get(pk):
                    q = queues.setdefault(name, _counter())
                    q["packets"] += c[pk]
                    q["bytes"] += c[by]
            tx_drops = ("drop_tx_header", "drop_tx_oversize")
            drops["rx"] += sum(v for k, v in c.items()
                               if k.startswith("drop_") and k not in tx_drops)
            drops["tx"] += sum(c.get(k, 0) for k in tx_drops)
        return {
            "socket": self.path, "ifindex": self.ifindex, "mac": self.mac.hex(":"),
            "connected": self.session is not None, "live": self.live,
            "sessions": self.sessions, "last_disconnect": self.last_disconnect,
            "queues": dict(sorted(queues.items())), "drops": drops,
            "interrupts": self.interrupts, "rx_stalls": self.rx_stalls,
            "interrupts_coalesced": self.coalesced + (self.session.coalesced
                                                      if self.session is not None else 0),
            "kicks": dict(sorted(self.kicks.items())),
            "device": device_stats, "datapath": datapath, "offload": self.offload_info(),
            "agent": self.agent.info() if self.agent is not None else None,
            "migration": dict(self.migration),
        }

    def offload_actions(self) -> dict[str, int]:
        """The offloaded program's action counts: the C port's and the device model's."""
        out = {name: 0 for name in OFFLOAD_COUNTERS}
        if self.cpath is not None:
            add_counts(out, self.cpath.actions(OFFLOAD_COUNTERS))
        model = dict(self.device_totals)
        if self.device is not None:
            add_counts(model, self.device.stats)
        for name in out:
            out[name] += model.get(f"offload_{name}", 0)
        return out

    def offload_info(self) -> dict[str, Any]:
        """What this guest offloaded (the device's view) and the actions it took."""
        device = self.device
        offload = device.offload if device is not None else None
        view: dict[str, object] = offload.describe() if offload is not None else {
            "profile": None, "program": None, "maps": []}
        return {**view, "actions": self.offload_actions()}


__all__ = ["FIRST_GUEST_IFINDEX", "NEEDS_CTRL_VQ", "PROTOCOL_FEATURES", "WIRE_IFINDEX",
           "GuestPort", "ctrl_owner_for", "flow_pair", "guest_mac", "status_steps"]
