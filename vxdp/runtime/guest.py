"""The guest process: a `guest.Driver` over memfd guest memory, its transport requests
carried as vhost-user messages, driver-mode XDP, and reconnection to a restarted host.

Theory of operation
-------------------
The driver is sans-I/O: it emits one transport request at a time.  `GuestRuntime.pump()`
carries each as vhost-user (QEMU's mapping), and answers the driver:

    driver request          vhost-user
    ReadDeviceFeatures      GET_FEATURES (VHOST_USER_F_PROTOCOL_FEATURES hidden)
    WriteDriverFeatures     SET_FEATURES (with VHOST_USER_F_PROTOCOL_FEATURES)
    ReadStatus/WriteStatus  GET_STATUS / SET_STATUS (status 0 stops every ring first)
    ReadConfig              GET_CONFIG
    ReadQueueMax            answered here: QUEUE_MAX for the 2 * pairs + 1 rings GET_QUEUE_NUM
                            allows (it counts queue pairs, as QEMU net and DPDK read it)
    SetupQueue              remembered
    EnableQueue             SET_VRING_NUM, _BASE, _ADDR, _KICK, _CALL, _ENABLE
    Kick                    a write to the ring's kick eventfd (no message)

Each call eventfd is watched; a signal becomes `Driver.interrupt(queue)`.  When the host
offers BACKEND_REQ the runtime hands it a back-end request channel (SET_BACKEND_REQ_FD,
as QEMU does) and serves it: a CONFIG_CHANGE_MSG becomes `Driver.config_interrupt()` (the
driver re-reads status and config space with GET_STATUS / GET_CONFIG, and answers
VIRTIO_NET_S_ANNOUNCE with VIRTIO_NET_CTRL_ANNOUNCE_ACK on the control queue, virtio 1.3
§5.1.6.5.4), acked once that is carried out; one that arrives before the driver is live
is taken when it is.  Frames the
driver receives run through the driver-mode XDP hook (`--xdp`) in bursts: PASS goes to
the guest's stack port, TX goes back out through the device, REDIRECT has no second
device here and is dropped (counted), DROP and ABORTED are dropped.  The stack port
(`port`, a `vxdp.runtime.wire` port) is also where frames to transmit come from.

`datapath="c"` (the default): the driver lends pair 1 at DRIVER_OK and a
`guest.datapath.GuestPort` runs it in C (refill, rx, XDP, PASS, XDP_TX, tx); the Python
side moves bursts.  Its rx task polls as virtio_net's NAPI does: interrupts off while
bursts come back full, on (and the ring checked once more) before it sleeps on the rx
call eventfd (virtio 1.3 §2.7.7).  Tx kicks are the device's call (§2.7.10); tx
interrupts are asked for only while frames wait for a full ring.  Packed rings stay on
the Python driver.  The C port keeps the rings across a host restart (they are guest
memory, and the resume below starts the new device where the old one stopped) and
hands them back to the driver (`GuestPort.hand_back`) before a reset.

The offload (`offload=PROGRAM`, `mode`) goes over the control queue, or with
`agent=PATH` over the guest agent's channel to the host agent at PATH
(`vxdp.runtime.offload`, `vxdp.runtime.agent`).

The host gone: the reader sees the socket close.  The runtime reports "device gone",
keeps the driver as it is (features, rings and buffers in guest memory, the XDP program,
the counters) and dials again every `retry` seconds.  On a new connection it replays
what the device needs, as QEMU's vhost-user reconnect does: the opening, SET_FEATURES,
the status bits, every ring with SET_VRING_BASE = the used index in guest memory (split
rings: the device resumes from what it last completed), and DRIVER_OK; then it kicks
every ring.  Frames the guest queued meanwhile are sent then.  A packed ring, or a host
that no longer offers the negotiated features, gets a full re-initialization instead.

Live migration (`migrate(to)`, vxdp.runtime.migration): the guest opens a second
connection, to the destination, moves the device's state there (SET_DEVICE_STATE_FD)
and resumes its rings on it; the connection to the source is then left (`Link.migrated`:
no "device gone") and the destination's is served (`_handover`).  `epoch` counts the
devices commands could be lost with: a move that resumes the rings keeps it.

A plain vhost-user-net back-end (DPDK's vhost library, net_vhost) offers neither the
CONFIG nor always the STATUS protocol feature: config space and the status byte are the
VMM's.  The runtime then plays QEMU's part: without CONFIG it serves config space itself
(`frontend_config()`: MAC and STATUS offered by the front-end, link up, one queue pair)
and hides the features whose config fields or control queue a plain back-end does not
serve (`VMM_FEATURES`: the control queue family, MQ, MTU, the XDP offload), as QEMU
handles the control queue itself; without STATUS it keeps the status byte here.
GET_CONFIG is never sent without CONFIG: DPDK 22.11 drops the connection on it.
"""

from __future__ import annotations

import errno as E
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from itertools import islice
from typing import Any

import trio

from guest import (
    SUPPORTED_FEATURES,
    ConfigChanged,
    CtrlCompleted,
    DeviceError,
    Driver,
    DriverReady,
    EnableQueue,
    FrameReceived,
    InitFailed,
    InitState,
    Kick,
    ReadConfig,
    ReadDeviceFeatures,
    ReadQueueMax,
    ReadStatus,
    Request,
    SetupQueue,
    TxCompleted,
    WriteDriverFeatures,
    WriteStatus,
)
from guest.datapath import GuestPort, Kicks
from virtio_spec.ctrl import VirtioNetCtrlClass
from virtio_spec.errors import LocalProtocolError, VirtioError
from virtio_spec.features import VirtioNetFeature as _N
from virtio_spec.features import mask_of
from virtio_spec.memory import GuestAllocator
from virtio_spec.status import DeviceStatus
from virtio_spec.structs import VirtioNetStatus, virtio_net_config, virtio_net_config_zero
from vxdp.bpf.program import Program
from vxdp.errors import (
    MigrationError,
    UsageError,
    VhostUserError,
    VhostUserLocalError,
    VhostUserRemoteError,
    VxdpError,
)
from vxdp.vhost_user import EventFd, FrontendMemory, VhostUserBackendRequest
from vxdp.vhost_user import VhostUserProtocolFeature as PF
from vxdp.vhost_user.messages import VHOST_USER_F_PROTOCOL_FEATURES, BackendMessage
from vxdp.vhost_user.transport import (
    check_dial_path,
    open_backend_channel,
    serve_backend_requests,
)

from .agent import AgentCarrier
from .control import ControlServer
from .cpath import ACTION_COUNTERS, add_counts
from .guestctl import GuestControlHandler
from .link import DeviceGone, Link
from .migration import MigrationReport, migrate
from .offload import GuestOffload
from .wire import NullPort, WirePort, WireSpec
from .xdp import XdpHook

log = logging.getLogger("vxdp.runtime.guest")

MEMORY_BASE = 0x4000_0000
#: `--datapath`: pair 1 on the C core (guest.datapath.GuestPort), or all in Python.
DATAPATHS = ("c", "python")
QUEUE_MAX = 256
#: Frames one receive burst takes at most, then refills: the kernel's NAPI_POLL_WEIGHT.
NAPI_WEIGHT = 64
#: The longest the receive loop polls without letting other tasks in (as the host's
#: wire pump: vxdp.runtime.host.TURN).
TURN = 0.0005
_PROTO_BIT = 1 << VHOST_USER_F_PROTOCOL_FEATURES
_WANTED = (1 << PF.MQ | 1 << PF.REPLY_ACK | 1 << PF.CONFIG | 1 << PF.STATUS
           | 1 << PF.RESET_DEVICE | 1 << PF.BACKEND_REQ | 1 << PF.DEVICE_STATE)
_PACKED = 34
#: Control classes whose commands set state (virtio 1.3 §5.1.6.5.1 to .5.6: rx mode,
#: MAC, VLAN, announce ack, queue pairs, guest offloads): run twice, they leave what
#: running once does, so a ring resumed on a new device may take them again.
REPLAYABLE_CTRL_CLASSES = frozenset(int(c) for c in (
    VirtioNetCtrlClass.VIRTIO_NET_CTRL_RX, VirtioNetCtrlClass.VIRTIO_NET_CTRL_MAC,
    VirtioNetCtrlClass.VIRTIO_NET_CTRL_VLAN, VirtioNetCtrlClass.VIRTIO_NET_CTRL_ANNOUNCE,
    VirtioNetCtrlClass.VIRTIO_NET_CTRL_MQ, VirtioNetCtrlClass.VIRTIO_NET_CTRL_GUEST_OFFLOADS))
#: What the front-end offers of its own when the back-end has no CONFIG (QEMU's part).
FRONTEND_FEATURES = mask_of((_N.VIRTIO_NET_F_MAC, _N.VIRTIO_NET_F_STATUS))
#: Hidden without CONFIG: config fields or a control queue a plain back-end does not serve.
VMM_FEATURES = mask_of((
    _N.VIRTIO_NET_F_CTRL_VQ, _N.VIRTIO_NET_F_CTRL_RX, _N.VIRTIO_NET_F_CTRL_VLAN,
    _N.VIRTIO_NET_F_GUEST_ANNOUNCE, _N.VIRTIO_NET_F_MQ, _N.VIRTIO_NET_F_CTRL_MAC_ADDR,
    _N.VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, _N.VIRTIO_NET_F_MTU, _N.VIRTIO_NET_F_XDP_OFFLOAD))
#: The MAC the front-end gives its config space (QEMU's default NIC address).
FRONTEND_MAC = bytes.fromhex("525400123456")


def frontend_config(mac: bytes = FRONTEND_MAC) -> bytes:
    """virtio_net_config as the front-end serves it for a back-end without CONFIG
    (virtio 1.3 §5.1.4): the MAC, link up, one queue pair, MTU 1500."""
    fields = virtio_net_config_zero()
    fields.update(mac=mac, status=int(VirtioNetStatus.VIRTIO_NET_S_LINK_UP),
                  max_virtqueue_pairs=1, mtu=1500)
    return bytes(virtio_net_config.build(fields))


class GuestRuntime:
    """One guest: driver, memory, XDP hook, stack port, connection to the host."""

    def __init__(self, path: str | os.PathLike[str] | None, *, xdp: XdpHook | None = None,
                 port: WirePort | None = None, memory_size: int = 8 << 20,
                 queue_size: int = 256, features: int = SUPPORTED_FEATURES,
                 retry: float = 0.1, burst: int = 32, datapath: str = "c",
                 report: Callable[[str, str], None] | None = None,
                 offload: Program | None = None, mode: str = "driver",
                 control: str | os.PathLike[str] | None = None,
                 agent: str | os.PathLike[str] | None = None) -> None:
        if datapath not in DATAPATHS:
            raise UsageError(f"datapath {datapath!r}: choose one of {', '.join(DATAPATHS)}")
        if path is not None:  # before anything is made: a path no host can ever serve
            try:
                check_dial_path(path, "--socket")
            except VhostUserLocalError as exc:
                raise UsageError(str(exc)) from None
        self.path = os.fspath(path) if path is not None else None
        self.memory = FrontendMemory.create([(MEMORY_BASE, memory_size)])
        mem = self.memory.guest
        self.datapath = datapath
        self.driver = Driver(mem, GuestAllocator(mem), features=features,
                             queue_size=min(queue_size, QUEUE_MAX),
                             lend_pairs=(0,) if datapath == "c" else ())
        self.xdp = xdp if xdp is not None else XdpHook()
        self.port = port if port is not None else NullPort(WireSpec("null"))
        self.retry = retry
        self.burst = burst
        self.report_to = report
        self.link: Link | None = None
        self.queue_pairs = 0  # GET_QUEUE_NUM's answer (1 without the MQ protocol feature)
        self.kicks: dict[int, EventFd] = {}
        self.calls: dict[int, EventFd] = {}
        self.setups: dict[int, SetupQueue] = {}
        self.started: set[int] = set()
        self.status_written = 0
        self.features_written: int | None = None
        self.backend_status = True  # the host took STATUS: the status byte is its
        self.backend_config = True  # the host took CONFIG: config space is its
        self.backend_offered = 0  # the host's GET_FEATURES, last read
        self.ready = trio.Event()
        self.reports: list[tuple[str, str]] = []
        self.connects = 0
        self.gone_count = 0
        self.rx: dict[str, dict[str, int]] = {}
        self.tx: dict[str, dict[str, int]] = {}
        self._stack = {"packets": 0, "bytes": 0}  # what the Python path handed up
        self.dropped = {"xdp": 0, "redirect": 0, "too_big": 0}
        self.device_errors = 0
        self.config_changes = 0  # CONFIG_CHANGE_MSGs the host sent
        self._config_deferred = False  # one came before the driver was live
        self.cport: GuestPort | None = None  # pair 1 on the C datapath, once taken
        self.c_totals: dict[str, int] = {}  # counters of C ports handed back
        self.c_refusal = ""
        self._c_wake = trio.Event()
        self._pending_tx: deque[bytes] = deque()
        self._tx_space = trio.Event()
        self._pump_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        #: counts the devices this guest's commands could be lost with: a device gone or
        #: re-initialized moves it on, a migration that resumes the rings does not
        self.epoch = 0
        self._handover: Link | None = None  # the destination of a migration, to serve next
        self._device_ready: trio.Event | None = None  # set at the next DriverReady
        self.migrating = False
        self.migrations: list[dict[str, Any]] = []
        # the offload's commands: over the control queue, or the guest agent's channel
        self.offload = GuestOffload(self, offload, mode, AgentCarrier(self, agent)
                                    if agent is not None else None)
        self.control = ControlServer(GuestControlHandler(self), control) \
            if control is not None else None

    # -- reporting and placing XDP -------------------------------------------------------

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run `fn` beside the guest's other tasks (the offload's placements)."""
        if self._nursery is not None:
            self._nursery.start_soon(fn)

    def set_driver_program(self, program: Program | None) -> None:
        """Run `program` in the driver (driver-mode XDP; None: none), on whichever
        datapath runs pair 1 now."""
        if program is None:
            self.xdp.detach()
        else:
            self.xdp.attach(program)
        if self.cport is not None:
            self.cport.attach(program, self.xdp.maps, self.xdp.core_engine)

    def report(self, kind: str, text: str) -> None:
        self.reports.append((kind, text))
        log.info("%s: %s", kind, text)
        if self.report_to is not None:
            self.report_to(kind, text)

    # -- running ---------------------------------------------------------------------

    async def run(self, *, dial: Callable[[], Awaitable[trio.socket.SocketType]] | None = None,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect (and reconnect) and move traffic until cancelled.  `dial` returns a
        connected socket (default: dial `path`, retrying every `retry` seconds)."""
        if dial is None:
            if self.path is None:
                raise UsageError("no socket path to dial")

            async def dial() -> trio.socket.SocketType:
                assert self.path is not None  # a migration moves it to the destination
                return await self._dial(self.path)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._stack_pump)
            nursery.start_soon(self._tx_tick)
            if self.control is not None:  # vxdp prog / vxdp map --guest PATH
                await nursery.start(self.control.serve)
            task_status.started()
            while True:
                handover, self._handover = self._handover, None
                if handover is not None:  # migrated: the destination is up already
                    await self.serve_link(handover)
                else:
                    await self.serve(await dial())

    async def _dial(self, path: str) -> trio.socket.SocketType:
        announced = False
        while True:
            sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
            try:
                await sock.connect(path)
                return sock
            except OSError as exc:
                sock.close()
                if not announced:
                    self.report("waiting", f"no host on {path} ({exc.strerror}); retrying "
                                           f"every {self.retry:g} s")
                    announced = True
            await trio.sleep(self.retry)

    async def serve(self, sock: trio.socket.SocketType) -> None:
        """Run one connection until the host goes (returns) or we are cancelled."""
        await self.serve_link(Link(sock))

    async def serve_link(self, link: Link) -> None:
        """Run one connection (brought up here, or by a migration that moved the device
        to it) until the host goes or a migration leaves it."""
        self.link = link
        self.connects += 1
        try:
            async with trio.open_nursery() as nursery:
                if not link.reading:
                    link.reading = True
                    nursery.start_soon(link.reader)
                    nursery.start_soon(self._bring_up, link, nursery)
                await link.closed.wait()
                nursery.cancel_scope.cancel()
        finally:
            link.close()
            if not link.migrated:
                if self.link is link:
                    self.link = None
                self.epoch += 1
                self.offload.wake()  # a command waiting for this device is not answered
        if link.migrated:  # the device lives on at the destination
            return
        self.gone_count += 1
        self.started.clear()
        queues = len(self.driver.queues)
        self.report("device_gone", f"device gone: {link.gone}; keeping driver state "
                                   f"({self.driver.state}, {queues} queue(s), features "
                                   f"{self.driver.negotiated:#x})")

    async def _bring_up(self, link: Link, nursery: trio.Nursery) -> None:
        try:
            await self._opening(link, nursery)
            if self.connects > 1 and self._resumable():
                why = await self._resume(link)
                if not why:
                    self.report("reconnected", f"reconnected to {self.path}: rings resumed "
                                               f"where the device left them")
                    self.offload.device_replaced("the host restarted")
                    return
                self.report("reconnected", f"reconnected to {self.path}: {why}; "
                                           f"re-initializing the device")
            elif self.connects > 1:
                self.report("reconnected", f"reconnected to {self.path}: the driver was not "
                                           f"live; re-initializing the device")
            self.started.clear()
            self._c_hand_back("device reset")
            self.driver.initialize()
            await self.pump()
        except DeviceGone:
            return
        except (VhostUserError, LocalProtocolError) as exc:
            self.report("error", f"vhost-user setup failed: {exc}")
            link.gone = link.gone or str(exc)
            link.sock.close()
            link.closed.set()

    async def _opening(self, link: Link, nursery: trio.Nursery) -> int:
        """QEMU's opening of a connection; the protocol features negotiated.  The first
        connection's decide who keeps status and config space (`backend_status`,
        `backend_config`); a migration's destination must match them."""
        core = link.core
        offered = await link.value(core.get_features())
        if not offered & _PROTO_BIT:
            raise VhostUserRemoteError("host does not offer VHOST_USER_F_PROTOCOL_FEATURES; "
                                       "the guest needs STATUS and CONFIG")
        proto = await link.value(core.get_protocol_features()) & _WANTED
        await link.send(core.set_protocol_features(proto))
        if link is not self.link:  # a migration's destination: opened, nothing decided
            return await self._open_rest(link, nursery, proto)
        self.backend_status = bool(proto >> PF.STATUS & 1)
        self.backend_config = bool(proto >> PF.CONFIG & 1)
        if self.connects == 1 and not (self.backend_status and self.backend_config):
            kept = [name for name, has in (("status", self.backend_status),
                                           ("config space", self.backend_config)) if not has]
            self.report("frontend_state", f"host lacks the protocol feature(s) for "
                                          f"{' and '.join(kept)}: the front-end keeps them, "
                                          f"as a VMM does for a plain vhost-user-net back-end")
        mq = proto >> PF.MQ & 1
        self.queue_pairs = int(await link.value(core.get_queue_num())) if mq else 1
        return await self._open_rest(link, nursery, proto)

    async def _open_rest(self, link: Link, nursery: trio.Nursery, proto: int) -> int:
        core = link.core
        if link is not self.link and proto >> PF.MQ & 1:
            await link.value(core.get_queue_num())
        if proto >> PF.BACKEND_REQ & 1:
            channel = await open_backend_channel(link.send, core)
            nursery.start_soon(serve_backend_requests, channel, core.backend_requests(),
                               self._backend_request)
        await link.send(core.set_owner())
        await link.send(core.set_mem_table(self.memory.table(), self.memory.fds()))
        return proto

    # -- the driver's requests ---------------------------------------------------------

    async def pump(self) -> None:
        """Carry the driver's requests until it has none, then handle its events."""
        async with self._pump_lock:
            while True:
                self._events()
                request = self.driver.next_request()
                if request is None:
                    return
                try:
                    value = await self._carry(request)
                except (VhostUserError, LocalProtocolError) as exc:
                    self.driver.fail_request(exc)
                    continue
                except BaseException:
                    # cancelled mid-request (the host went away): the driver hears the
                    # request failed, so that it can be asked again on a new connection
                    self.driver.fail_request(DeviceGone(f"{request.describe()} interrupted"))
                    raise
                self.driver.reply(value)

    async def _carry(self, r: Request) -> Any:
        if isinstance(r, Kick):
            efd = self.kicks.get(r.queue)
            if efd is None:
                raise LocalProtocolError(f"kick for queue {r.queue}, which has no kick fd")
            efd.signal()
            return None
        if isinstance(r, ReadQueueMax):
            # pairs' rx and tx rings, then the control queue
            return QUEUE_MAX if r.index < 2 * self.queue_pairs + 1 else 0
        if isinstance(r, SetupQueue):
            self.setups[r.index] = r
            return None
        link = self.link
        if link is None:
            raise DeviceGone(f"{r.describe()}: no host connected")
        core = link.core
        if isinstance(r, ReadDeviceFeatures):
            return await self._offered(link)
        if isinstance(r, WriteDriverFeatures):
            self.features_written = r.features
            await link.send(core.set_features(self._backend_part(r.features) | _PROTO_BIT))
            return None
        if isinstance(r, ReadStatus):
            return await self._read_status(link)
        if isinstance(r, WriteStatus):
            if r.value == 0:
                for index in sorted(self.started):
                    await link.value(core.get_vring_base(index))
                self.started.clear()
            self.status_written = r.value
            await self._write_status(link, r.value)
            return None
        if isinstance(r, ReadConfig):
            if not self.backend_config:
                return frontend_config()[r.offset:r.offset + r.length].ljust(r.length, b"\0")
            return bytes((await link.value(core.get_config(r.offset, r.length))).data)
        if isinstance(r, EnableQueue):
            setup = self.setups[r.index]
            base = 0x8000 if setup.layout != "split" else 0
            await self._start_ring(link, setup, base)
            return None
        raise LocalProtocolError(f"no vhost-user mapping for {r.describe()}")

    async def _offered(self, link: Link) -> int:
        """The device features as the driver sees them (the front-end's part added)."""
        offered = int(await link.value(link.core.get_features())) & ~_PROTO_BIT
        self.backend_offered = offered
        if not self.backend_config:
            offered = (offered & ~VMM_FEATURES) | FRONTEND_FEATURES
        return offered

    def _backend_part(self, features: int) -> int:
        """What SET_FEATURES carries: the front-end's own bits stay with it (a back-end
        refuses bits it never offered: DPDK "received invalid negotiated features")."""
        if self.backend_config:
            return features
        return features & ~(FRONTEND_FEATURES & ~self.backend_offered)

    async def _read_status(self, link: Link) -> int:
        if self.backend_status:
            return int(await link.value(link.core.get_status()))
        return self.status_written

    async def _write_status(self, link: Link, value: int) -> None:
        if self.backend_status:
            await link.send(link.core.set_status(value))

    async def _start_ring(self, link: Link, setup: SetupQueue, base: int) -> None:
        index = setup.index
        if index not in self.kicks:
            self.kicks[index] = EventFd()
            self.calls[index] = EventFd()
            assert self._nursery is not None
            self._nursery.start_soon(self._watch_call, index, self.calls[index])
        areas = (setup.desc, setup.driver, setup.device)
        desc, avail, used = (self.memory.uva(a) for a in areas)
        for out in link.core.vring_setup(index, setup.size, desc, avail, used, base=base,
                                         kick=self.kicks[index].fd,
                                         call=self.calls[index].fd):
            await link.send(out)
        self.started.add(index)

    # -- reconnecting ------------------------------------------------------------------

    def _resumable(self) -> bool:
        d = self.driver
        return (d.state is InitState.LIVE and self.features_written is not None
                and not self.features_written >> _PACKED & 1)

    async def _resume(self, link: Link) -> str:
        """Replay the device's state; "" when the rings resumed, else why they cannot."""
        core = link.core
        assert self.features_written is not None
        # A resumed ring is taken again from the used index the old device published, so
        # a command it had not answered runs on the new device.  The spec's classes set
        # state and run twice harmlessly; an offload command does not (a second MAP
        # CREATE leaves a map nobody holds): reset the device instead.
        unsafe = [c.name for c in self.driver.ctrl_in_flight()
                  if c.cls not in REPLAYABLE_CTRL_CLASSES]
        if unsafe:
            return (f"{', '.join(unsafe)} was in flight and would run again on the new "
                    f"device")
        offered = await self._offered(link)
        if offered & self.features_written != self.features_written:
            return (f"the host no longer offers the negotiated features "
                    f"{self.features_written & ~offered:#x}")
        s = DeviceStatus
        steps = [int(s.ACKNOWLEDGE), int(s.ACKNOWLEDGE | s.DRIVER)]
        for status in steps:
            await self._write_status(link, status)
        await link.send(core.set_features(self._backend_part(self.features_written)
                                          | _PROTO_BIT))
        await self._write_status(link, steps[-1] | s.FEATURES_OK)
        if not await self._read_status(link) & s.FEATURES_OK:
            return "the restarted host refused FEATURES_OK"
        for index in sorted(self.driver.queues):
            setup = self.setups[index]
            # The used index the old device published: everything before it is done,
            # everything after it the new device takes again (virtio 1.3 §2.7.8).
            base = self.memory.guest.read_u16(setup.device + 2)
            await self._start_ring(link, setup, base)
        await self._write_status(link, self.status_written)
        for index in sorted(self.kicks):
            self.kicks[index].signal()
            self.driver.interrupt(index)
        self._c_wake.set()  # the C datapath reaps what the old device left, if it runs
        await self.pump()
        return ""

    # -- migrating -------------------------------------------------------------------

    async def migrate(self, to: str | os.PathLike[str] | trio.socket.SocketType, *,
                      policy: str = "refuse",
                      agent: str | os.PathLike[str] | None = None) -> MigrationReport:
        """Move this guest's vhost-user back-end to the host serving `to` (a socket path,
        or a connected socket) while the guest runs on: `vxdp.runtime.migration`.
        `policy`: "refuse" when the destination cannot take the device as it is, or
        "fallback" (re-initialize there, the program in driver mode).  `agent`: the
        destination's host agent for this guest, which an offload over the agent path
        needs (its channel is re-bound there).  The report says what happened;
        MigrationError when the move broke off on the way."""
        if self.migrating:
            raise MigrationError("a migration of this guest is under way", E.EBUSY)
        self.migrating = True
        try:
            report = await migrate(self, to, policy=policy, agent=agent)
        finally:
            self.migrating = False
        self.migrations.append(report.to_json())
        return report

    def _drain(self) -> None:
        """Take every frame the device placed in the receive rings (before a reset)."""
        port = self.cport
        if port is not None:
            while True:
                frames, _ = port.rx_burst(NAPI_WEIGHT)  # the device is stopped: no kicks
                if frames:
                    self.port.send(frames)
                if not port.reaped:
                    break
        for index, q in sorted(self.driver.queues.items()):
            if q.name.startswith("receiveq") and index not in self.driver.lent:
                self.driver.interrupt(index)
        self._events()

    # -- interrupts and frames -------------------------------------------------------

    async def _backend_request(self, message: BackendMessage) -> bool:
        """A request on the back-end request channel; True once it is handled."""
        if message.request is not VhostUserBackendRequest.CONFIG_CHANGE_MSG:
            return False  # BackendRequests lets no other through
        self.config_changes += 1
        if self.driver.state is not InitState.LIVE:
            self._config_deferred = True  # taken at DriverReady
            return True
        self.driver.config_interrupt()
        try:
            await self.pump()
        except (VhostUserError, LocalProtocolError) as exc:
            self.report("error", f"config change not handled: {exc}")
            return False
        return True

    async def _watch_call(self, index: int, efd: EventFd) -> None:
        while True:
            await efd.wait()
            if self.cport is not None and index == 0:
                self._c_wake.set()
            elif self.cport is not None and index == 1:
                self._tx_space.set()
            else:
                self.driver.interrupt(index)
                await self.pump()

    def _events(self) -> None:
        burst: list[FrameReceived] = []
        for e in self.driver.events():
            if isinstance(e, FrameReceived):
                burst.append(e)
                q = self.rx.setdefault(self._qname(e.queue), {"packets": 0, "bytes": 0})
                q["packets"] += 1
                q["bytes"] += len(e.frame)
            elif isinstance(e, TxCompleted):
                self._tx_space.set()
            elif isinstance(e, DriverReady):
                if 0 in self.driver.lent:
                    self._c_take()
                self.ready.set()
                if self._device_ready is not None:
                    self._device_ready.set()
                    self._device_ready = None
                self.report("device_ready", e.describe())
                self.offload.device_ready()
                self._tx_space.set()
                if self._config_deferred:
                    self._config_deferred = False
                    self.driver.config_interrupt()  # pump() carries it next
            elif isinstance(e, ConfigChanged):
                self.report("config_changed", e.describe())
            elif isinstance(e, InitFailed):
                self.report("init_failed", e.describe())
            elif isinstance(e, DeviceError):
                self.device_errors += 1
                log.warning("%s", e.describe())
                self.offload.wake()
            elif isinstance(e, CtrlCompleted):
                log.info("%s", e.describe())
                self.offload.wake()
        if burst:
            self._received(burst)
        if self._pending_tx:
            self._flush_tx()

    def _qname(self, index: int) -> str:
        q = self.driver.queues.get(index)
        return q.name if q is not None else f"q{index}"

    def _received(self, burst: list[FrameReceived]) -> None:
        by_queue: dict[int, list[bytes]] = {}
        for e in burst:
            by_queue.setdefault(e.queue, []).append(e.frame)
        for queue, frames in by_queue.items():
            verdict = self.xdp.run(frames, rx_queue_index=queue // 2)
            self.dropped["xdp"] += verdict.dropped
            self.dropped["redirect"] += len(verdict.redirect)
            if verdict.passed:
                self._stack["packets"] += len(verdict.passed)
                self._stack["bytes"] += sum(map(len, verdict.passed))
                self.port.send(verdict.passed)
            if verdict.tx:
                self._pending_tx.extend(verdict.tx)
                self._tx_space.set()

    # -- transmitting ----------------------------------------------------------------

    def _flush_tx(self) -> None:
        """Queue what fits in the transmit ring (the driver kicks as it decides)."""
        if self.driver.state is not InitState.LIVE:
            return
        if self.cport is not None:
            self._c_flush_tx(self.cport)
            return
        while self._pending_tx:
            frames = list(islice(self._pending_tx, self.burst))
            try:
                queued = self.driver.transmit(frames)
            except LocalProtocolError:
                # one frame the device cannot take (above the MTU): drop it, go on
                self._pending_tx.popleft()
                self.dropped["too_big"] += 1
                continue
            for _ in range(queued):
                frame = self._pending_tx.popleft()
                q = self.tx.setdefault(self._qname(1), {"packets": 0, "bytes": 0})
                q["packets"] += 1
                q["bytes"] += len(frame)
            if queued < len(frames):
                return

    async def transmit(self, frames: Sequence[bytes]) -> None:
        """Send frames through the device, waiting while the transmit ring is full."""
        self._pending_tx.extend(frames)
        while self._pending_tx:
            self._tx_space = trio.Event()
            self._flush_tx()
            await self.pump()
            if self._pending_tx:
                # A completion arrives as a tx interrupt; the driver may suppress those
                # (EVENT_IDX), so look at the ring again after a while regardless.
                with trio.move_on_after(0.05):
                    await self._tx_space.wait()

    async def _tx_tick(self) -> None:
        """Frames left over when the ring was full (XDP_TX bursts) go out as it drains."""
        while True:
            await trio.sleep(0.05)
            if self._pending_tx and self.driver.state is InitState.LIVE:
                self._flush_tx()
                await self.pump()

    async def _stack_pump(self) -> None:
        await self.ready.wait()
        while True:
            frames = await self.port.receive(self.burst)
            if frames is None:
                return
            await self.transmit(frames)

    # -- the C datapath --------------------------------------------------------------

    def _c_take(self) -> None:
        """Run pair 1, which the driver lent at DRIVER_OK, on the C datapath; on refusal
        the driver takes it back and goes on in Python."""
        try:
            port = GuestPort.from_driver(self.driver)
            if self.xdp.program is not None:
                port.attach(self.xdp.program, self.xdp.maps, self.xdp.core_engine)
        except (VxdpError, VirtioError) as exc:
            self.c_refusal = str(exc)
            self.report("datapath", f"pair 1 stays on the Python datapath: {exc}")
            self.driver.take_back(0)
            return
        self.cport = port
        self.c_refusal = ""
        self._c_kick(port.start())
        assert self._nursery is not None
        self._nursery.start_soon(self._c_rx_loop, port)
        log.info("pair 1 runs on the C datapath")

    def _c_retire(self) -> GuestPort | None:
        """Stop using the C port, keeping its counters; returns it (None if none ran)."""
        port, self.cport = self.cport, None
        if port is not None:
            add_counts(self.c_totals, port.stats)
        return port

    def _c_hand_back(self, why: str) -> None:
        """Give pair 1 back to the driver (before a reset), keeping the C counters."""
        port = self._c_retire()
        if port is None:
            return
        port.hand_back()
        self._c_wake.set()  # its rx loop sees it is no longer the port and ends
        log.info("pair 1 back on the Python driver: %s", why)

    def _c_kick(self, kicks: Kicks) -> None:
        for index, due in ((0, kicks.rx), (1, kicks.tx)):
            efd = self.kicks.get(index)
            if due and efd is not None:
                efd.signal()

    async def _c_rx_loop(self, port: GuestPort) -> None:
        """virtio_net's NAPI poll: interrupts off while the ring has frames, bursts of
        NAPI_WEIGHT (each refills what it took, so the device can fill behind us) until
        one comes back short, interrupts on, look again (a frame that slipped in between
        is polled, not slept on), then sleep on the call eventfd (virtio 1.3 §2.7.7).
        Other tasks get in at least every TURN seconds."""
        clock = time.perf_counter
        while self.cport is port:
            port.interrupts(0, False)
            turn_ends = clock() + TURN
            while self.cport is port:
                frames, kicks = port.rx_burst(NAPI_WEIGHT)
                self._c_kick(kicks)
                if frames:
                    self.port.send(frames)
                if port.reaped < NAPI_WEIGHT:
                    break
                if clock() >= turn_ends:
                    await trio.lowlevel.checkpoint()
                    turn_ends = clock() + TURN
            if self.cport is not port:
                return
            wake = self._c_wake = trio.Event()
            try:
                if port.interrupts(0, True):
                    continue
            except VxdpError as exc:
                # a hostile device broke the ring: it stays broken until a reset
                self.device_errors += 1
                self.report("error", f"receiveq1 on the C datapath: {exc}")
            await wake.wait()

    def _c_flush_tx(self, port: GuestPort) -> None:
        """Post waiting frames a burst at a time until the ring is full.  Tx completions
        are reaped by every burst: no tx interrupt unless frames are left waiting."""
        port.interrupts(1, False)
        while self._pending_tx:
            frames = list(islice(self._pending_tx, port.burst_size))
            sent, kicks = port.tx_burst(frames)
            self._c_kick(kicks)
            for _ in range(sent):
                self._pending_tx.popleft()
            if sent < len(frames):
                break
        if self._pending_tx:
            # ring full: ask for a tx interrupt, and look again if space came meanwhile
            try:
                if port.interrupts(1, True):
                    self._tx_space.set()
            except VxdpError as exc:
                self.device_errors += 1
                self.report("error", f"transmitq1 on the C datapath: {exc}")

    # -- results ---------------------------------------------------------------------

    def c_stats(self) -> dict[str, int]:
        """The C datapath's counters, over every port it ran this guest's pair 1 with."""
        out = dict(self.c_totals)
        return add_counts(out, self.cport.stats) if self.cport is not None else out

    def actions(self) -> dict[str, int]:
        """Driver-mode XDP action counts, both datapaths together."""
        out = dict(self.xdp.actions)
        c = self.c_stats()
        for name, key in ACTION_COUNTERS.items():
            out[name] += c.get(key, 0)
        return out

    @property
    def stack(self) -> dict[str, int]:
        """Frames (and bytes) handed to the guest's stack port, both datapaths together."""
        c = self.c_stats()
        return {"packets": self._stack["packets"] + c.get("pass_packets", 0),
                "bytes": self._stack["bytes"] + c.get("pass_bytes", 0)}

    def stats(self) -> dict[str, Any]:
        rx = {k: dict(v) for k, v in self.rx.items()}
        tx = {k: dict(v) for k, v in self.tx.items()}
        stack, dropped = self.stack, dict(self.dropped)
        xdp: dict[str, Any] = {**self.xdp.stats(), "attached": self.xdp.attached}
        c = self.c_stats()
        datapath: dict[str, Any] = {"kind": "c" if self.cport is not None else "python",
                                    "requested": self.datapath, "refusal": self.c_refusal,
                                    "c_counters": c}
        if c:
            for queues, name, pk, by in ((rx, "receiveq1", "rx_packets", "rx_bytes"),
                                         (tx, "transmitq1", "tx_packets", "tx_bytes")):
                if c.get(pk):
                    q = queues.setdefault(name, {"packets": 0, "bytes": 0})
                    q["packets"] += c[pk]
                    q["bytes"] += c[by]
            dropped["xdp"] += c.get("xdp_drop", 0) + c.get("xdp_aborted", 0)
            dropped["redirect"] += c.get("drop_redirect", 0)
            dropped["too_big"] += c.get("drop_oversize", 0)
            xdp["actions"] = self.actions()
            xdp["faults"] += c.get("xdp_fault", 0)
        return {
            "offload": self.offload.stats(),
            "socket": self.path, "state": str(self.driver.state),
            "connected": self.link is not None, "connects": self.connects,
            "device_gone": self.gone_count, "mac": self.driver.mac.hex(":"),
            "rx": dict(sorted(rx.items())), "tx": dict(sorted(tx.items())),
            "tx_waiting": len(self._pending_tx), "stack": stack,
            "dropped": dropped, "device_errors": self.device_errors,
            "xdp": xdp, "port": self.port.stats(), "datapath": datapath,
            "migrations": list(self.migrations),
        }

    def close(self) -> None:
        handover, self._handover = self._handover, None
        if handover is not None:  # migrated, and stopped before serving the destination
            handover.close()
        self._c_retire()
        self.offload.close()
        for efd in [*self.kicks.values(), *self.calls.values()]:
            efd.close()
        self.kicks.clear()
        self.calls.clear()
        self.port.close()
        self.xdp.close()
        try:
            self.memory.close()
        except VhostUserLocalError:
            # the driver's rings still view the mapping: release the memfds now, the
            # mappings go with the last view
            for region in self.memory.regions:
                if region.fd >= 0:
                    os.close(region.fd)
                    region.fd = -1


__all__ = ["DATAPATHS", "QUEUE_MAX", "DeviceGone", "GuestRuntime", "Link"]
