"""A virtio-net device model (virtio 1.3 §5.1), sans-I/O.

Theory of operation
-------------------
`Device` is driven from two sides and never performs I/O:

* the *transport* side is what a PCI function or a vhost-user backend carries: feature
  and status reads and writes, config reads, queue programming (`set_queue`,
  `enable_queue`), driver notifications (`notify`).  Today `vxdp.pair` calls these
  in-process; later a vhost-user backend turns its messages into the same calls.
* the *wire* side is the host's network: `receive(frames)` puts frames into the guest's
  receive queues; transmitted frames come out as `FrameTransmitted` events.

Every call returns the list of `host.events` it caused, in order (chains popped, used
elements, interrupts sent or suppressed and why, frames, drops).  The edge injects the
interrupts and forwards the frames.  A transmit notification handles at most one lap of
the ring; when the driver refilled meanwhile (it runs in another process), the events
end with `MoreAvailable` and the edge calls `notify` again after other work ran.

Status and features go through `virtio_spec.status.DeviceStatusMachine` (the table lives
there).  The rings are `virtio_spec.split` / `virtio_spec.packed` device queues over the
shared `GuestMemory`.  The control queue is `host.ctrl.ControlQueue`, a dispatch table
keyed by (class, command).  With VIRTIO_NET_F_XDP_OFFLOAD in the profile the offload's
class (VIRTIO_NET_CTRL_EBPF) is answered by `host.offload.DeviceOffload`: a SET_OFFLOAD
ends in `OffloadVerify` (the edge runs the verification, then `finish_ctrl`), and a
change of the offloaded program in `OffloadChanged` (the edge attaches it on the
receive path).  A reset destroys every offloaded object (`OffloadChanged(None)`).

Queue layout (virtio 1.3 §5.1.2): index 2k is receiveq(k+1), 2k+1 transmitq(k+1), 2N the
controlq, N = max_virtqueue_pairs when VIRTIO_NET_F_MQ is negotiated, else 1.

Who answers the control queue (`CtrlOwner`, chosen with every `write_features`):
* DEVICE, the default and what a driver talking to the device directly gets: the
  §5.1.3.1 dependencies hold as written (MQ, CTRL_RX, CTRL_VLAN, CTRL_MAC_ADDR,
  GUEST_ANNOUNCE... need CTRL_VQ), the control queue is index 2N, and curr_queue_pairs
  changes only by VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET (§5.1.6.5.6).
* FRONTEND, for a vhost-user back-end behind a front-end that keeps the control queue
  itself (QEMU does for every vhost-user net back-end, DPDK virtio_user with queues > 1):
  the driver's CTRL_VQ lives in the front-end, so it counts as provided when FEATURES_OK
  checks those dependencies (not when XDP_OFFLOAD is accepted: offload commands must reach
  this device); there is no controlq here (N pairs, 2N queues); the receive filter stays
  at its reset state (promiscuous, no VLAN table), since the front-end's RX, MAC and VLAN
  commands never reach us; and the edge sets curr_queue_pairs from the rings the
  front-end enabled (`set_curr_queue_pairs`, vhost-user SET_VRING_ENABLE), as QEMU's and
  DPDK's vhost back-ends work.

Hostile drivers: transport calls with bad values raise `RemoteProtocolError` (the
transport answers the peer with it) and change nothing.  A ring that breaks the rules
while the device works it, or a control chain without header or ack, sets
DEVICE_NEEDS_RESET (QEMU's `virtio_error` path, virtio 1.3 §2.1.2) and the device keeps
answering the transport until the driver resets it.  Header or size mistakes in single
frames drop that frame with a `FrameDropped` naming the clause; the queue keeps serving.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from virtio_spec.chain import Chain
from virtio_spec.ctrl import VIRTIO_NET_CTRL_HDR_SIZE
from virtio_spec.errors import LocalProtocolError, RemoteProtocolError, RingError
from virtio_spec.features import VirtioFeature, VirtioNetFeature, describe
from virtio_spec.memory import GuestMemory
from virtio_spec.offload import VIRTIO_NET_CTRL_EBPF, VirtioNetCtrlEbpf
from virtio_spec.packed import PackedDeviceQueue
from virtio_spec.split import SplitDeviceQueue
from virtio_spec.status import DeviceStatusMachine, StatusEffect, status_names
from virtio_spec.structs import VirtioNetStatus, check_queue_size
from vxdp.bpf.profiles import COMPLEXITY_LIMIT
from vxdp.bpf.program import XdpAction

from .config import ConfigSpace, DeviceProfile, get_profile
from .ctrl import ControlQueue, CtrlOutcome, CtrlReply, CtrlRequest, NetState
from .events import (
    ChainPopped,
    ChainUsed,
    ConfigInterrupt,
    DeviceEvent,
    DeviceNeedsReset,
    FeaturesWritten,
    FrameDropped,
    Interrupt,
    KickIgnored,
    MoreAvailable,
    OffloadChanged,
    OffloadVerify,
    QueueReady,
    StatusChanged,
    XdpBounced,
    XdpRedirected,
)
from .netqueues import RX_BACKLOG, RxPath, TxPath, explain_interrupt, more_available
from .offload import DeviceOffload, OffloadedProgram, OffloadRun, VerifyJob

_F = VirtioFeature
_N = VirtioNetFeature
DeviceQueue = SplitDeviceQueue | PackedDeviceQueue


class CtrlOwner(Enum):
    """Who answers the driver's control virtqueue (see the module docstring)."""

    DEVICE = "device"
    FRONTEND = "frontend"


class QueueRole(Enum):
    """What a virtqueue index is for (virtio 1.3 §5.1.2)."""

    RX = "receiveq"
    TX = "transmitq"
    CTRL = "controlq"


@dataclass
class QueueSlot:
    """One queue as the transport programmed it, and its ring engine once enabled."""

    index: int
    role: QueueRole
    pair: int
    size: int = 0
    addresses: tuple[int, int, int] = (0, 0, 0)
    engine: DeviceQueue | None = None
    backlog: deque[bytes] = field(default_factory=deque)
    held: list[Chain] = field(default_factory=list)  # rx chains popped, not yet filled
    last_signalled: int = 0  # used idx (split) or slots (packed) at the last decision
    base: int | None = None  # where the ring resumes (vhost-user SET_VRING_BASE), None: 0

    @property
    def name(self) -> str:
        if self.role is QueueRole.CTRL:
            return "controlq"
        return f"{self.role.value}{self.pair + 1}"


class Device:
    """One virtio-net device.  See the module docstring for the two sides."""

    def __init__(self, profile: DeviceProfile | str = "default",
                 memory: GuestMemory | None = None, *, xdp_engine: str = "interp",
                 ifindex: int = 0) -> None:
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.memory = memory
        self.ifindex = ifindex  # what the offloaded program sees as ingress_ifindex
        self._status = DeviceStatusMachine(self.profile.features)
        self.config = ConfigSpace(self.profile)
        self.net = NetState.initial(self.profile, self.config)
        self.ctrl = ControlQueue(self.net)
        self.offload: DeviceOffload | None = None
        if self.profile.xdp is not None:
            self.offload = DeviceOffload(self.profile.xdp, engine=xdp_engine)
            for command in VirtioNetCtrlEbpf:
                self.ctrl.register(VIRTIO_NET_CTRL_EBPF, command, self._offload_command)
            # Its commands are larger than the standard ones (8 bytes an insn): a program
            # of up to the kernel's insn limit reaches the handler (E2BIG past
            # xdp_max_insns); a longer chain is refused unread (host.ctrl, max_request).
            self.ctrl.max_request = max(self.ctrl.max_request,
                                        VIRTIO_NET_CTRL_HDR_SIZE + 8 + 8 * COMPLEXITY_LIMIT)
        # a control command waiting for its job: (queue, chain, its pending outcome)
        self._ctrl_held: tuple[int, Chain, CtrlOutcome] | None = None
        self._ctrl_owner = CtrlOwner.DEVICE
        self._queues: dict[int, QueueSlot] = {}
        self.stats: dict[str, int] = dict.fromkeys(
            ("tx_frames", "tx_bytes", "tx_dropped", "tx_num_buffers", "rx_frames", "rx_bytes",
             "rx_dropped", "interrupts", "interrupts_suppressed", "ctrl_commands", "offload_aborted",
             "offload_drop", "offload_pass", "offload_tx", "offload_redirect"), 0)
        self._offload_run: OffloadRun | None = None
        #: queue index -> (size, base) a migrated device expects its rings at (set by
        #: `host.migration.restore`): `set_queue` refuses anything else
        self.resume_at: dict[int, tuple[int, int]] = {}

    # ------------------------------------------------------------------ transport side

    @property
    def device_features(self) -> int:
        """The offered feature bits (what the driver reads in §3.1.1 step 4)."""
        return self.profile.features

    @property
    def negotiated(self) -> int:
        """The negotiated features (0 before FEATURES_OK was taken)."""
        return self._status.negotiated or 0

    def has(self, bit: int) -> bool:
        """True when feature `bit` is negotiated."""
        return self._status.has_feature(bit)

    def set_memory(self, memory: GuestMemory) -> None:
        """The guest memory the rings live in (vhost-user SET_MEM_TABLE)."""
        if any(s.engine is not None for s in self._queues.values()):
            raise LocalProtocolError("memory replaced while queues are running")
        self.memory = memory

    def read_status(self) -> int:
        """The device status field as the driver reads it (virtio 1.3 §2.1)."""
        return int(self._status.status)

    @property
    def ctrl_owner(self) -> CtrlOwner:
        """Who answers the control queue (DEVICE until features say otherwise)."""
        return self._ctrl_owner

    def write_features(self, accepted: int, *,
                       ctrl_owner: CtrlOwner = CtrlOwner.DEVICE) -> list[DeviceEvent]:
        """The driver writes the features it accepts (virtio 1.3 §3.1.1 step 4).

        `ctrl_owner=FRONTEND` says a vhost-user front-end keeps the control queue (see the
        module docstring); it is for features without VIRTIO_NET_F_CTRL_VQ."""
        if ctrl_owner is CtrlOwner.FRONTEND and accepted >> _N.VIRTIO_NET_F_CTRL_VQ & 1:
            raise LocalProtocolError("ctrl_owner FRONTEND with VIRTIO_NET_F_CTRL_VQ accepted: "
                                     "the driver would have two control queues")
        provided = 0
        if ctrl_owner is CtrlOwner.FRONTEND and self.profile.offers(_N.VIRTIO_NET_F_CTRL_VQ) \
                and not accepted >> _N.VIRTIO_NET_F_XDP_OFFLOAD & 1:
            provided = 1 << _N.VIRTIO_NET_F_CTRL_VQ
        outcome = self._status.write_features(accepted, provided=provided)
        if outcome.accepted:
            self._ctrl_owner = ctrl_owner
        return [FeaturesWritten(accepted, tuple(describe(accepted)), outcome.accepted,
                                outcome.reason)]

    def write_status(self, value: int) -> list[DeviceEvent]:
        """The driver writes the status field; 0 resets the device (virtio 1.3 §2.4)."""
        outcome = self._status.write_status(value)
        events: list[DeviceEvent] = [StatusChanged(
            value, int(outcome.status), status_names(outcome.status), outcome.accepted,
            outcome.reason, outcome.clause)]
        if outcome.effect is StatusEffect.RESET:
            events.extend(self._reset())
        elif outcome.effect is StatusEffect.FEATURES_LOCKED:
            self.net.apply_features(self.negotiated,
                                    filters=self._ctrl_owner is CtrlOwner.DEVICE)
        return events

    def set_curr_queue_pairs(self, pairs: int) -> None:
        """The queue pairs in use, as a front-end that keeps the control queue enabled
        them (vhost-user SET_VRING_ENABLE); only with `CtrlOwner.FRONTEND` after
        FEATURES_OK.  With the device's own control queue the driver sets them by
        VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET (virtio 1.3 §5.1.6.5.6)."""
        if self._ctrl_owner is not CtrlOwner.FRONTEND or self._status.negotiated is None:
            raise LocalProtocolError(
                f"curr_queue_pairs set by the transport with the control queue owned by "
                f"the {self._ctrl_owner.value} and status {self.status_names}: only a "
                f"front-end that keeps the control queue sets it, after FEATURES_OK")
        if not 1 <= pairs <= self.queue_pairs:
            raise LocalProtocolError(
                f"curr_queue_pairs {pairs} outside 1..{self.queue_pairs}")
        self.net.curr_queue_pairs = pairs

    def read_config(self, offset: int, length: int) -> bytes:
        """Bytes of virtio_net_config (RemoteProtocolError outside it)."""
        return self.config.read(offset, length)

    def write_config(self, offset: int, data: bytes) -> None:
        """Refused: virtio 1.3 §5.1.4.2 (the driver MUST NOT write config)."""
        self.config.write(offset, data)

    @property
    def queue_pairs(self) -> int:
        """N of §5.1.2: max_virtqueue_pairs with MQ negotiated, else 1."""
        return self.profile.max_queue_pairs if self.has(_N.VIRTIO_NET_F_MQ) else 1

    @property
    def num_queues(self) -> int:
        """How many virtqueues exist for the negotiated features."""
        return 2 * self.queue_pairs + (1 if self.has(_N.VIRTIO_NET_F_CTRL_VQ) else 0)

    def queue_role(self, index: int) -> tuple[QueueRole, int]:
        """(role, pair) of a queue index; RemoteProtocolError for one that does not exist."""
        if self._status.negotiated is None:
            # virtio 1.3 §3.1.1: virtqueues are discovered after FEATURES_OK (step 7);
            # their number depends on the negotiated MQ and CTRL_VQ.
            raise RemoteProtocolError(
                f"queue {index} used before FEATURES_OK: the queue layout is not known", "3.1.1")
        if not 0 <= index < self.num_queues:
            raise RemoteProtocolError(
                f"queue {index} does not exist: {self.queue_pairs} pair(s)"
                f"{' and a controlq' if self.has(_N.VIRTIO_NET_F_CTRL_VQ) else ''}", "5.1.2")
        if index == 2 * self.queue_pairs:
            return QueueRole.CTRL, 0
        return (QueueRole.RX if index % 2 == 0 else QueueRole.TX), index // 2

    def queue_max_size(self, index: int) -> int:
        """The largest size the driver may program for queue `index`."""
        self.queue_role(index)
        return self.profile.max_queue_size

    def set_queue(self, index: int, size: int, desc: int, driver: int,
                  device: int, *, base: int | None = None) -> list[DeviceEvent]:
        """Program a queue: its size and the three area addresses (split: descriptor
        table, available ring, used ring; packed: ring, driver and device event areas).

        `base` resumes a ring where a previous device left it (a vhost-user back-end
        restarted under a running driver): split, the next available index (used idx
        starts there too); packed, the offset with the wrap counter in bit 15."""
        role, pair = self.queue_role(index)
        old = self._queues.get(index)
        if old is not None and old.engine is not None:
            raise RemoteProtocolError(f"queue {index} is enabled; reset before reprogramming it")
        packed = self.has(_F.VIRTIO_F_RING_PACKED)
        check_queue_size(size, packed=packed)
        if size > self.profile.max_queue_size:
            # virtio 1.3 §4.1.4.3.2: the driver MUST NOT write a queue_size larger
            # than the device offered.
            raise RemoteProtocolError(
                f"queue {index} size {size} is larger than the device's maximum "
                f"{self.profile.max_queue_size}", "4.1.4.3.2")
        if base is not None and not 0 <= base <= 0xFFFF:
            raise RemoteProtocolError(f"queue {index} base {base} is not a 16-bit ring index")
        if base is not None and packed and (base & 0x7FFF) >= size:
            raise RemoteProtocolError(f"queue {index} base offset {base & 0x7FFF} is outside "
                                      f"the {size}-entry packed ring", "2.8.1")
        want = self.resume_at.get(index)
        if want is not None and want != (size, base or 0):
            # docs/offload-spec.md [10.1.4]: "A restored device MUST resume each ring at
            # its saved base"; any other base and driver and device disagree on what
            # was used
            raise RemoteProtocolError(
                f"queue {index} of a migrated device: size {size} base {base or 0}, the "
                f"saved state has size {want[0]} base {want[1]}")
        self._queues[index] = QueueSlot(index, role, pair, size, (desc, driver, device),
                                        base=base)
        self.resume_at.pop(index, None)
        return []

    def enable_queue(self, index: int) -> list[DeviceEvent]:
        """Start a programmed queue: build its ring engine over guest memory."""
        self.queue_role(index)
        slot = self._queues.get(index)
        if slot is None:
            raise RemoteProtocolError(f"queue {index} enabled before it was programmed")
        if slot.engine is not None:
            return []
        if self.memory is None:
            raise LocalProtocolError("device has no guest memory (set_memory first)")
        packed = self.has(_F.VIRTIO_F_RING_PACKED)
        event_idx = self.has(_F.VIRTIO_F_EVENT_IDX)
        indirect = self.has(_F.VIRTIO_F_INDIRECT_DESC)
        # The engines check alignment and that every area lies in guest memory
        # (virtio 1.3 §2.7.1, §2.8.11); a RingError reaches the transport's caller.
        base = slot.base
        if packed:
            start = 0x8000 if base is None else base
            slot.engine = PackedDeviceQueue(self.memory, slot.size, *slot.addresses,
                                            event_idx=event_idx, indirect=indirect,
                                            start_off=start & 0x7FFF,
                                            start_wrap=bool(start & 0x8000), name=f"q{index}")
        else:
            start = base or 0
            slot.engine = SplitDeviceQueue(self.memory, slot.size, *slot.addresses,
                                           event_idx=event_idx, indirect=indirect,
                                           last_avail_idx=start, name=f"q{index}")
        # The interrupt explanations count from where the ring starts (packed: offset 0,
        # wrap counter 1, virtio 1.3 §2.8.1).
        slot.last_signalled = start
        return [QueueReady(index, slot.name, slot.size, "packed" if packed else "split",
                           slot.addresses)]

    def stop_queue(self, index: int) -> tuple[int, int] | None:
        """Stop a running queue where it stands (vhost-user GET_VRING_BASE): the ring
        engine goes (restarting needs `set_queue` and `enable_queue` again) and what it
        had in hand is given up: receive chains taken but not filled, a control command
        waiting for its verification (cancelled: a restarted or migrated device answers
        it from the ring), frames waiting in the receive backlog (dropped).  Returns
        (base, frames dropped): base is where the ring resumes, for a split ring the
        used index, the first chain not completed (chains complete in the order they were
        taken; a receive buffer too small for the header, returned at once, is the one
        exception, and the chains held before it are then given up); for a packed ring
        the next available offset with the wrap counter in bit 15.  None when the queue
        is not running."""
        slot = self._queues.get(index)
        if slot is None or slot.engine is None:
            return None
        engine = slot.engine
        if isinstance(engine, PackedDeviceQueue):
            base = engine.next_avail | (0x8000 if engine.avail_wrap else 0)
        else:
            base = engine.used_idx
        dropped = len(slot.backlog)
        self.stats["rx_dropped"] += dropped
        slot.backlog.clear()
        slot.held = []
        slot.engine = None
        slot.base = base
        held = self._ctrl_held
        if held is not None and held[0] == index:
            self._ctrl_held = None
            job = held[2].pending
            job.cancelled = True
            if self.offload is not None and self.offload.pending is job:
                self.offload.pending = None
        return base, dropped

    def notify(self, index: int) -> list[DeviceEvent]:
        """A driver notification (kick) for queue `index`.  A transmit or control queue
        gives up to its size in chains, then `MoreAvailable` if the driver has refilled."""
        slot = self._queues.get(index)
        if slot is None or slot.engine is None:
            return [KickIgnored(index, "queue not enabled")]
        if not self._status.queues_live:
            # virtio 1.3 §2.1.2: "The device MUST NOT consume buffers or send any used
            # buffer notifications to the driver before DRIVER_OK."
            return [KickIgnored(index, f"status {status_names(self._status.status)}: no "
                                       f"buffers are consumed without DRIVER_OK (\u00a72.1.2)")]
        if slot.engine.broken is not None:
            return [KickIgnored(index, f"queue broken until reset: {slot.engine.broken}")]
        events: list[DeviceEvent] = []
        try:
            if slot.role is QueueRole.TX:
                if TxPath(self, slot).process(events):
                    events.append(MoreAvailable(index, slot.size))
            elif slot.role is QueueRole.RX:
                RxPath(self, slot).flush_backlog(events)
            elif self._process_ctrl(slot, events):
                events.append(MoreAvailable(index, slot.size))
        except RingError as err:
            events.extend(self.fail(index, str(err), err.clause))
        self.interrupt(slot, events)
        return events

    # ------------------------------------------------------------------ wire side

    def receive(self, frames: Iterable[bytes], pair: int = 0) -> list[DeviceEvent]:
        """Frames from the host network for receiveq(pair + 1)."""
        if not 0 <= pair < self.net.curr_queue_pairs:
            raise LocalProtocolError(
                f"receive on pair {pair}: the driver enabled {self.net.curr_queue_pairs}")
        slot = self._queues.get(2 * pair)
        events: list[DeviceEvent] = []
        path = RxPath(self, slot)
        if self.offloaded is not None and self.live:
            frames = self._run_offloaded([bytes(f) for f in frames], 2 * pair, events)
        try:
            for frame in frames:
                path.receive(bytes(frame), events)
        except RingError as err:
            events.extend(self.fail(2 * pair, str(err), err.clause))
        if slot is not None:
            self.interrupt(slot, events)
        return events

    def announce(self) -> list[DeviceEvent]:
        """Ask the guest to announce itself (after a migration, virtio 1.3 §5.1.6.5.4)."""
        if not self.has(_N.VIRTIO_NET_F_GUEST_ANNOUNCE):
            return []
        self.config.status |= int(VirtioNetStatus.VIRTIO_NET_S_ANNOUNCE)
        return [ConfigInterrupt("status.ANNOUNCE set: the guest should announce itself")]

    def set_link(self, up: bool) -> list[DeviceEvent]:
        """Carrier change; the guest hears of it when STATUS is negotiated.  The carrier
        outlives a device reset (QEMU's link state belongs to the netdev, not to the
        driver's session)."""
        self.config.link_up = up
        bit = int(VirtioNetStatus.VIRTIO_NET_S_LINK_UP)
        before = self.config.status
        self.config.status = before | bit if up else before & ~bit
        if self.config.status == before or not self.has(_N.VIRTIO_NET_F_STATUS):
            return []
        return [ConfigInterrupt(f"link {'up' if up else 'down'}")]

    # ------------------------------------------------------------------ internals

    def slot(self, index: int) -> QueueSlot | None:
        """The programmed queue `index`, if any (for tests and traces)."""
        return self._queues.get(index)

    @property
    def live(self) -> bool:
        """DRIVER_OK set and neither FAILED nor DEVICE_NEEDS_RESET (§2.1.2)."""
        return self._status.queues_live

    @property
    def status_names(self) -> str:
        return status_names(self._status.status)

    def fail(self, queue: int, reason: str, clause: str) -> list[DeviceEvent]:
        """Set DEVICE_NEEDS_RESET; notify the config change if DRIVER_OK (§2.1.2)."""
        outcome = self._status.needs_reset()
        reason = reason.removesuffix(f" (virtio 1.3 \u00a7{clause})")
        events: list[DeviceEvent] = [DeviceNeedsReset(queue, reason, clause)]
        if outcome.effect is StatusEffect.NOTIFY_CONFIG:
            # virtio 1.3 §2.1.2: "if DRIVER_OK is set, after it sets DEVICE_NEEDS_RESET,
            # the device MUST send a device configuration change notification".
            events.append(ConfigInterrupt("DEVICE_NEEDS_RESET set"))
        return events

    def interrupt(self, slot: QueueSlot, events: list[DeviceEvent]) -> None:
        """Decide the used-buffer notification for what was pushed since the last one."""
        engine = slot.engine
        if engine is None:
            return
        why, new_mark = explain_interrupt(slot, engine)
        if new_mark == slot.last_signalled:
            engine.should_interrupt()  # keeps the engine's own mark in step
            return
        sent = engine.should_interrupt()
        slot.last_signalled = new_mark
        self.stats["interrupts" if sent else "interrupts_suppressed"] += 1
        events.append(Interrupt(slot.index, sent, why))

    def _process_ctrl(self, slot: QueueSlot, events: list[DeviceEvent]) -> bool:
        """Answer up to a ring's worth of commands (as the transmit path takes up to a
        ring's worth of chains): a driver that refills as fast as commands complete must
        not hold the device.  True when more are waiting.  Commands complete in order:
        while one waits for its job (`OffloadVerify`) the rest wait behind it."""
        engine = slot.engine
        assert engine is not None
        for _ in range(slot.size):
            if self._ctrl_held is not None:
                return False
            chain = engine.pop()
            if chain is None:
                return False
            events.append(ChainPopped(slot.index, chain.head,
                                      tuple(s.length for s in chain.readable),
                                      tuple(s.length for s in chain.writable),
                                      chain.descriptors))
            outcome = self.ctrl.handle(chain, self.negotiated)
            if outcome.malformed is not None:
                # QEMU virtio_net_handle_ctrl: a chain without header or ack is a
                # device error; the chain stays unused until the driver resets us.
                events.extend(self.fail(slot.index, str(outcome.malformed),
                                        outcome.malformed.clause))
                return False
            if outcome.pending is not None:
                self._ctrl_held = (slot.index, chain, outcome)
                events.append(OffloadVerify(slot.index, chain.head,
                                            outcome.pending.program.insn_count,
                                            outcome.pending))
                return False
            self._ctrl_done(slot, chain, outcome, events)
        return more_available(engine)

    def _ctrl_done(self, slot: QueueSlot, chain: Chain, outcome: CtrlOutcome,
                   events: list[DeviceEvent]) -> None:
        engine = slot.engine
        assert engine is not None
        self.stats["ctrl_commands"] += 1
        engine.push(chain, outcome.written)
        events.append(outcome.event(slot.index, chain.head))
        events.append(ChainUsed(slot.index, chain.head, outcome.written))
        if outcome.changed and self.offload is not None:
            events.append(OffloadChanged(outcome.detail, self.offload.program))

    def _offload_command(self, req: CtrlRequest) -> CtrlReply:
        assert self.offload is not None
        out = self.offload.handle(req.command, req.body, req.result_room)
        return CtrlReply(out.ack, out.detail, out.result, out.job, out.changed)

    def finish_ctrl(self, job: VerifyJob) -> list[DeviceEvent]:
        """The job an `OffloadVerify` asked for has run: answer its command, then go on
        with the commands behind it.  A job the device no longer waits for (a reset came
        meanwhile) is dropped: nothing it verified is loaded."""
        held = self._ctrl_held
        if held is None or held[2].pending is not job or job.cancelled \
                or self.offload is None:
            return []
        index, chain, waiting = held
        self._ctrl_held = None
        slot = self._queues.get(index)
        out = self.offload.finish(job)
        events: list[DeviceEvent] = []
        if slot is None or slot.engine is None:
            return events
        try:
            outcome = self.ctrl.complete(chain, waiting.cls, waiting.command,
                                         CtrlReply(out.ack, out.detail, out.result,
                                                   changed=out.changed))
            self._ctrl_done(slot, chain, outcome, events)
            if self._process_ctrl(slot, events):
                events.append(MoreAvailable(index, slot.size))
        except RingError as err:
            events.extend(self.fail(index, str(err), err.clause))
        self.interrupt(slot, events)
        return events

    def _run_offloaded(self, frames: list[bytes], queue: int,
                       events: list[DeviceEvent]) -> list[bytes]:
        """The offloaded program on the way into receiveq: PASS goes on (returned), DROP
        and ABORTED end here, TX and REDIRECT become events for the edge."""
        program = self.offloaded
        assert program is not None
        if self._offload_run is None or self._offload_run.offloaded is not program:
            self._offload_run = OffloadRun(program, self.ifindex)
        passed: list[bytes] = []
        for frame, (action, data, target) in zip(frames, self._offload_run.run(frames,
                                                                                queue // 2)):
            name = "aborted" if action is None else action.name.lower()
            self.stats[f"offload_{name}"] += 1
            if action is XdpAction.PASS:
                passed.append(data)
            elif action is XdpAction.TX:
                events.append(XdpBounced(queue, data))
            elif action is XdpAction.REDIRECT:
                events.append(XdpRedirected(queue, target or 0, data))
            else:
                self.stats["rx_dropped"] += 1
                events.append(FrameDropped(queue, "rx", len(frame),
                                           f"offloaded program: XDP_{name.upper()}"))
        return passed

    @property
    def offloaded(self) -> OffloadedProgram | None:
        """The program the guest offloaded, if any (what the receive path runs)."""
        return self.offload.program if self.offload is not None else None

    def _reset(self) -> list[DeviceEvent]:
        """virtio 1.3 §2.4: queues, filters, ctrl state and config back to reset; every
        offloaded object destroyed (the kernel's device-bound offload rule)."""
        self._queues.clear()
        self.resume_at.clear()
        self._ctrl_held = None
        self._offload_run = None
        self._ctrl_owner = CtrlOwner.DEVICE
        self.config.reset()
        self.net.reset(self.config)
        if self.offload is not None and self.offload.reset():
            return [OffloadChanged("device reset: offloaded program and maps destroyed")]
        return []


__all__ = ["RX_BACKLOG", "CtrlOwner", "Device", "QueueRole", "QueueSlot"]
