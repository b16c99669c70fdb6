"""The vhost-user back-end state machine (sans-I/O): everything that decides whether a
front-end message is allowed now, with these values, lives here.

Theory of operation.  The edge reads `want()` bytes at a time and hands them, with any
fds, to `receive_data()`; when they complete a message, the back-end checks its order and
values and returns one `events.BackendEvent`.  The edge lets the device handle it, then
calls `respond(event, answer)` for the bytes to send back (a reply, a REPLY_ACK, or
nothing).  One message is in flight at a time, as the protocol has it.

The back-end request channel (protocol feature BACKEND_REQ): SET_BACKEND_REQ_FD hands
the back-end a socket on which it is the one asking.  `Backend.config_change()` returns
the bytes of a CONFIG_CHANGE_MSG for it (vhost-user.rst allows that message "when
VHOST_USER_PROTOCOL_F_CONFIG is negotiated"), with NEED_REPLY when REPLY_ACK is
negotiated; the front-end's ack is read back through `Backend.channel`
(`BackendChannel.receive_data`).  A channel that breaks is the edge's to drop
(`drop_channel()`); the session goes on without it.

A message that breaks a rule raises `VhostUserRemoteError` naming the request and the
rule (its `reply` carries a REPLY_ACK nack when the front-end asked for one); the
connection is then over, and the edge closes it.  Device refusals that are not protocol
errors (a status the device will not take) are `respond(event, ok=False)`: a nack when
REPLY_ACK was asked for, else nothing, and the session goes on.

Order rules (QEMU docs/interop/vhost-user.rst; what QEMU and DPDK virtio-user send):

    request                     needs
    GET_FEATURES                -
    GET/SET_PROTOCOL_FEATURES   VHOST_USER_F_PROTOCOL_FEATURES offered
    SET_OWNER                   - (repeatable: QEMU sends one per queue pair)
    GET_QUEUE_NUM               protocol feature MQ (answered in queue pairs for net:
                                see BackendConfig)
    SET_FEATURES                owner; bits offered; unchanged while a ring is started
    SET_MEM_TABLE               owner; started rings still inside the new table
    SET_VRING_NUM/BASE          owner; index < queue count; ring stopped
    SET_VRING_ADDR              owner; SET_FEATURES (ring layout), SET_MEM_TABLE,
                                SET_VRING_NUM; ring stopped
    SET_VRING_KICK              owner; NUM and ADDR set; starts the ring
    SET_VRING_CALL/ERR          owner (DPDK virtio-user sends CALL first of all)
    GET_VRING_BASE              owner; stops the ring (its kick fd is retired)
    SET_VRING_ENABLE            owner; VHOST_USER_F_PROTOCOL_FEATURES negotiated
    GET/SET_CONFIG              protocol feature CONFIG
    GET/SET_STATUS              protocol feature STATUS
    RESET_DEVICE                protocol feature RESET_DEVICE (RESET_OWNER: -)
    SET_BACKEND_REQ_FD          protocol feature BACKEND_REQ; exactly one fd (QEMU sends it
                                before SET_OWNER, from vhost_user_backend_init)

Ring state (spec, "Ring states"): every ring starts stopped and disabled; it starts on
SET_VRING_KICK and stops on GET_VRING_BASE; without VHOST_USER_F_PROTOCOL_FEATURES in
SET_FEATURES every ring is enabled, with it SET_VRING_ENABLE toggles each ring.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from virtio_spec.structs import MAX_QUEUE_SIZE
from vxdp.errors import VhostUserLocalError, VhostUserRemoteError

from . import events as ev
from .memory import check_table, uva_to_gpa
from .messages import (
    REPLY_PAYLOAD,
    VHOST_SET_CONFIG_TYPE_MIGRATION,
    VHOST_USER_F_PROTOCOL_FEATURES,
    VHOST_USER_MAX_CONFIG_SIZE,
    VHOST_USER_VRING_IDX_MASK,
    VHOST_USER_VRING_NOFD_MASK,
    BackendChannelReader,
    ConfigPayload,
    MemoryTable,
    Message,
    MessageReader,
    PayloadKind,
    VhostUserBackendRequest,
    VhostUserProtocolFeature,
    VhostUserRequest,
    VringAddr,
    VringState,
    close_fds,
    encode_backend_request,
    encode_reply,
)

_R = VhostUserRequest
_PF = VhostUserProtocolFeature
VIRTIO_F_RING_PACKED = 34


@dataclass(frozen=True)
class BackendConfig:
    """What the back-end offers: virtio features (GET_FEATURES), protocol features, the
    GET_QUEUE_NUM answer, the vrings it serves, the largest ring and the config size.

    `queue_num` is what GET_QUEUE_NUM answers.  The spec text says "how many queues the
    back-end supports"; for a net device both ends read it as queue pairs: QEMU's
    net/vhost-user.c refuses a netdev whose `queues=` (pairs) exceeds it, DPDK's vhost
    library answers VHOST_MAX_QUEUE_PAIRS.  `vrings` is how many vring indices exist
    (a net back-end: 2 * pairs, + 1 when it serves the control queue)."""

    features: int
    protocol_features: int = 0
    queue_num: int = 2
    max_queue_size: int = MAX_QUEUE_SIZE
    config_size: int = 0
    vrings: int = 2

    def __post_init__(self) -> None:
        if self.protocol_features and not self.features >> VHOST_USER_F_PROTOCOL_FEATURES & 1:
            raise VhostUserLocalError(
                "protocol features need VHOST_USER_F_PROTOCOL_FEATURES (bit 30) offered")
        if not 1 <= self.queue_num <= VHOST_USER_VRING_IDX_MASK + 1:
            raise VhostUserLocalError(f"queue_num {self.queue_num} is not 1..256")
        if not 1 <= self.vrings <= VHOST_USER_VRING_IDX_MASK + 1:
            raise VhostUserLocalError(f"vrings {self.vrings} is not 1..256")
        if not 1 <= self.max_queue_size <= MAX_QUEUE_SIZE:
            raise VhostUserLocalError(f"max_queue_size {self.max_queue_size} is not 1..32768")


@dataclass
class Vring:
    """What the back-end knows of one vring."""

    index: int
    num: int | None = None
    addr: VringAddr | None = None
    areas: tuple[int, int, int] | None = None  # guest-physical desc, avail, used
    base: int = 0
    kick: int | None = None
    call: int | None = None
    err: int | None = None
    enabled: bool = False
    started: bool = False

    @property
    def fds(self) -> list[int]:
        return [fd for fd in (self.kick, self.call, self.err) if fd is not None]


@dataclass(frozen=True, slots=True)
class ChannelAck:
    """The front-end's REPLY_ACK to a back-end request: `value` 0 is success."""

    request: VhostUserBackendRequest
    value: int

    @property
    def ok(self) -> bool:
        return self.value == 0


class BackendChannel:
    """The back-end's side of the back-end request channel (the socket `fd` that
    SET_BACKEND_REQ_FD gave): requests out, acks in."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.reader = BackendChannelReader(replies=True, kind_of=self._ack_kind)
        self._awaiting: deque[VhostUserBackendRequest] = deque()

    @property
    def awaiting(self) -> bool:
        """True while an ack is due."""
        return bool(self._awaiting)

    def want(self) -> int:
        return self.reader.want()

    def request(self, request: VhostUserBackendRequest, *, need_reply: bool) -> bytes:
        """The bytes of one back-end request; its ack is awaited when `need_reply`."""
        data = encode_backend_request(request, need_reply=need_reply)
        if need_reply:
            self._awaiting.append(request)
        return data

    def _ack_kind(self, request: VhostUserBackendRequest, flags: int) -> PayloadKind:
        if not self._awaiting:
            raise VhostUserRemoteError(f"unsolicited reply to {request.spec_name} on the "
                                       f"back-end request channel")
        head = self._awaiting[0]
        if request is not head:
            raise VhostUserRemoteError(
                f"reply to {request.spec_name} while one to {head.spec_name} is due")
        return PayloadKind.U64

    def receive_data(self, data: bytes, fds: Sequence[int] = ()) -> ChannelAck | None:
        """Feed ack bytes; return the ack they complete."""
        message = self.reader.feed(data, fds)
        if message is None:
            return None
        request = self._awaiting.popleft()
        assert isinstance(message.payload, int)
        return ChannelAck(request, message.payload)

    def close(self) -> None:
        self.reader.close()
        self._awaiting.clear()


@dataclass
class _Pending:
    event: ev.BackendEvent
    message: Message
    retire_after: list[int] = field(default_factory=list)


def _area_sizes(num: int, packed: bool) -> tuple[tuple[int, int], ...]:
    """(size, alignment) of desc/avail/used (virtio 1.3 §2.7 table, §2.8.10)."""
    if packed:
        return ((16 * num, 16), (4, 4), (4, 4))
    return ((16 * num, 16), (6 + 2 * num, 2), (6 + 8 * num, 4))


class Backend:
    """One front-end session's protocol state; make a new one per connection."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.reader = MessageReader()
        self.owner = False
        self.features: int | None = None
        self.protocol_features = 0
        self.table: MemoryTable | None = None
        self.vrings = [Vring(i) for i in range(config.vrings)]
        self.channel: BackendChannel | None = None
        self._pending: _Pending | None = None
        self._retired: list[int] = []
        self._closed = False
        self._rules: dict[VhostUserRequest, Callable[[Message], ev.BackendEvent]] = {
            _R.GET_FEATURES: self._get_features,
            _R.SET_FEATURES: self._set_features,
            _R.GET_PROTOCOL_FEATURES: self._get_protocol_features,
            _R.SET_PROTOCOL_FEATURES: self._set_protocol_features,
            _R.SET_OWNER: self._set_owner,
            _R.RESET_OWNER: self._reset,
            _R.RESET_DEVICE: self._reset,
            _R.GET_QUEUE_NUM: self._get_queue_num,
            _R.SET_MEM_TABLE: self._set_mem_table,
            _R.SET_VRING_NUM: self._set_vring_num,
            _R.SET_VRING_ADDR: self._set_vring_addr,
            _R.SET_VRING_BASE: self._set_vring_base,
            _R.GET_VRING_BASE: self._get_vring_base,
            _R.SET_VRING_KICK: self._set_vring_file,
            _R.SET_VRING_CALL: self._set_vring_file,
            _R.SET_VRING_ERR: self._set_vring_file,
            _R.SET_VRING_ENABLE: self._set_vring_enable,
            _R.GET_CONFIG: self._config,
            _R.SET_CONFIG: self._config,
            _R.SET_STATUS: self._set_status,
            _R.GET_STATUS: self._get_status,
            _R.SET_BACKEND_REQ_FD: self._set_backend_req_fd,
        }

    # -- the edge's entry points -------------------------------------------------------------

    def want(self) -> int:
        """Bytes to read next."""
        return self.reader.want()

    def receive_data(self, data: bytes, fds: Sequence[int] = ()) -> ev.BackendEvent | None:
        """Feed bytes and fds; return the event of the message they complete, if any."""
        if self._closed:
            close_fds(fds)
            raise VhostUserLocalError("the back-end session is closed")
        if self._pending is not None:
            close_fds(fds)
            raise VhostUserLocalError(
                f"respond to {self._pending.message.request.spec_name} before reading on")
        message = self.reader.feed(data, fds)
        return None if message is None else self.handle(message)

    def handle(self, message: Message) -> ev.BackendEvent:
        """Check one parsed message against the order and value rules; owns its fds."""
        if self._pending is not None:
            close_fds(message.fds)
            raise VhostUserLocalError(
                f"respond to {self._pending.message.request.spec_name} first")
        try:
            rule = self._rules.get(message.request)
            if rule is None:
                raise VhostUserRemoteError(
                    f"unsupported request {message.request.spec_name} ({int(message.request)})")
            event = rule(message)
        except VhostUserRemoteError as exc:
            close_fds(message.fds)
            exc.reply = self._nack_for(message)
            raise
        if self._pending is None:
            self._pending = _Pending(event, message)
        return event

    def respond(self, event: ev.BackendEvent, answer: object = None, *,
                ok: bool = True) -> bytes:
        """The bytes owed to the front-end for `event` (b"" when none are)."""
        pending = self._pending
        if pending is None or pending.event is not event:
            raise VhostUserLocalError(f"{event.describe()} is not the message awaiting a reply")
        request = pending.message.request
        if event.answer == "device":
            reply = self._device_reply(event, request, answer)
        elif event.answer == "backend":
            value = {_R.GET_FEATURES: self.config.features,
                     _R.GET_PROTOCOL_FEATURES: self.config.protocol_features,
                     _R.GET_QUEUE_NUM: self.config.queue_num}[request]
            reply = encode_reply(request, PayloadKind.U64, value)
        elif pending.message.need_reply and self.has(_PF.REPLY_ACK):
            # vhost-user.rst, REPLY_ACK: "zero for success, non-zero otherwise".
            reply = encode_reply(request, PayloadKind.U64, 0 if ok else 1)
        else:
            reply = b""
        self._retired.extend(pending.retire_after)
        self._pending = None
        return reply

    def config_change(self) -> bytes:
        """A CONFIG_CHANGE_MSG for the back-end request channel (NEED_REPLY when REPLY_ACK
        is negotiated: read the ack through `channel`).  LocalError when the front-end
        gave no channel or did not negotiate what the message needs."""
        for feature in (_PF.BACKEND_REQ, _PF.CONFIG):
            if not self.has(feature):
                raise VhostUserLocalError(
                    f"VHOST_USER_BACKEND_CONFIG_CHANGE_MSG without protocol feature "
                    f"VHOST_USER_PROTOCOL_F_{feature.name} ({int(feature)}) negotiated")
        if self.channel is None:
            raise VhostUserLocalError(
                "VHOST_USER_BACKEND_CONFIG_CHANGE_MSG before VHOST_USER_SET_BACKEND_REQ_FD "
                "gave a channel")
        return self.channel.request(VhostUserBackendRequest.CONFIG_CHANGE_MSG,
                                    need_reply=self.has(_PF.REPLY_ACK))

    @property
    def can_signal_config(self) -> bool:
        """True when `config_change()` has a channel and the features it needs."""
        return self.channel is not None and self.has(_PF.BACKEND_REQ) and self.has(_PF.CONFIG)

    def drop_channel(self) -> None:
        """Forget the back-end request channel (it broke); its fd is retired."""
        if self.channel is not None:
            self.channel.close()
            self._retired.append(self.channel.fd)
            self.channel = None

    def refuse_fd(self, event: ev.VringCallSet | ev.VringErrSet) -> None:
        """The edge will not use the call or err fd `event` carried (not an eventfd): the
        vring goes on without one (as with VHOST_USER_VRING_NOFD_MASK), the fd is retired.
        Answer the event with `respond(event, ok=False)` as usual."""
        if event.fd is None:
            return
        vring = self.vrings[event.index]
        attr = "call" if isinstance(event, ev.VringCallSet) else "err"
        if getattr(vring, attr) == event.fd:
            setattr(vring, attr, None)
            self._retired.append(event.fd)

    def take_retired(self) -> list[int]:
        """fds the back-end no longer uses: stop watching them, then close them."""
        out, self._retired = self._retired, []
        return out

    def close(self) -> list[int]:
        """End the session: every fd it still holds is retired and returned."""
        if not self._closed:
            self._closed = True
            self.reader.close()
            for vring in self.vrings:
                self._retired.extend(vring.fds)
                vring.kick = vring.call = vring.err = None
            if self._pending is not None:
                self._retired.extend(self._pending.retire_after)
                self._pending = None
            self.drop_channel()
        return self.take_retired()

    def has(self, feature: VhostUserProtocolFeature) -> bool:
        """True when `feature` was negotiated with SET_PROTOCOL_FEATURES."""
        return bool(self.protocol_features >> feature & 1)

    @property
    def packed(self) -> bool:
        return bool((self.features or 0) >> VIRTIO_F_RING_PACKED & 1)

    # -- replies -------------------------------------------------------------------------

    def _nack_for(self, message: Message) -> bytes:
        if message.need_reply and self.has(_PF.REPLY_ACK) and message.request not in REPLY_PAYLOAD:
            return encode_reply(message.request, PayloadKind.U64, 1)
        return b""

    def _device_reply(self, event: ev.BackendEvent, request: VhostUserRequest,
                      answer: object) -> bytes:
        if isinstance(event, ev.VringBaseQueried):
            if not isinstance(answer, int) or not 0 <= answer <= 0xFFFFFFFF:
                raise VhostUserLocalError(f"vring base must be a u32, got {answer!r}")
            return encode_reply(request, PayloadKind.VRING_STATE, VringState(event.index, answer))
        if isinstance(event, ev.ConfigQueried):
            if not isinstance(answer, bytes | bytearray) or len(answer) != event.size:
                raise VhostUserLocalError(
                    f"config answer must be {event.size} bytes, got {answer!r}")
            return encode_reply(request, PayloadKind.CONFIG,
                                ConfigPayload(event.offset, event.flags, bytes(answer)))
        if not isinstance(answer, int) or not 0 <= answer <= 0xFF:
            raise VhostUserLocalError(f"status must be a byte, got {answer!r}")
        return encode_reply(request, PayloadKind.U64, answer)

    # -- rules -------------------------------------------------------------------------------

    def _need_owner(self, m: Message) -> None:
        if not self.owner:
            raise VhostUserRemoteError(f"{m.request.spec_name} before VHOST_USER_SET_OWNER")

    def _need_protocol(self, m: Message, feature: VhostUserProtocolFeature) -> None:
        if not self.has(feature):
            raise VhostUserRemoteError(
                f"{m.request.spec_name} without protocol feature "
                f"VHOST_USER_PROTOCOL_F_{feature.name} ({int(feature)}) negotiated")

    def _vring(self, m: Message, index: int, *, stopped: bool = False) -> Vring:
        if index >= len(self.vrings):
            raise VhostUserRemoteError(
                f"{m.request.spec_name}: vring index {index} >= queue count {len(self.vrings)}")
        vring = self.vrings[index]
        if stopped and vring.started:
            raise VhostUserRemoteError(
                f"{m.request.spec_name}: vring {index} is started; stop it with "
                f"VHOST_USER_GET_VRING_BASE first")
        return vring

    def _protocol_offered(self, m: Message) -> None:
        if not self.config.features >> VHOST_USER_F_PROTOCOL_FEATURES & 1:
            raise VhostUserRemoteError(
                f"{m.request.spec_name}: VHOST_USER_F_PROTOCOL_FEATURES (bit 30) not offered")

    def _get_features(self, m: Message) -> ev.BackendEvent:
        return ev.FeaturesQueried()

    def _set_features(self, m: Message) -> ev.BackendEvent:
        self._need_owner(m)
        assert isinstance(m.payload, int)
        extra = m.payload & ~self.config.features
        if extra:
            raise VhostUserRemoteError(
                f"VHOST_USER_SET_FEATURES: bits {extra:#x} were not offered")
        started = [v.index for v in self.vrings if v.started]
        if started and m.payload != self.features:
            raise VhostUserRemoteError(
                f"VHOST_USER_SET_FEATURES: features change while vring {started[0]} is started")
        self.features = m.payload
        if not m.payload >> VHOST_USER_F_PROTOCOL_FEATURES & 1:
            for vring in self.vrings:  # "Ring states": no SET_VRING_ENABLE without it
                vring.enabled = True
        return ev.FeaturesSet(m.payload)

    def _get_protocol_features(self, m: Message) -> ev.BackendEvent:
        self._protocol_offered(m)
        return ev.ProtocolFeaturesQueried()

    def _set_protocol_features(self, m: Message) -> ev.BackendEvent:
        self._protocol_offered(m)
        assert isinstance(m.payload, int)
        extra = m.payload & ~self.config.protocol_features
        if extra:
            raise VhostUserRemoteError(
                f"VHOST_USER_SET_PROTOCOL_FEATURES: bits {extra:#x} were not offered")
        self.protocol_features = m.payload
        return ev.ProtocolFeaturesSet(m.payload)

    def _set_owner(self, m: Message) -> ev.BackendEvent:
        self.owner = True
        return ev.OwnerSet()

    def _reset(self, m: Message) -> ev.BackendEvent:
        if m.request is _R.RESET_DEVICE:
            self._need_protocol(m, _PF.RESET_DEVICE)
        self.features = None
        for vring in self.vrings:
            self._retired.extend(vring.fds)
        self.vrings = [Vring(i) for i in range(self.config.vrings)]
        return ev.DeviceReset(m.request)

    def _get_queue_num(self, m: Message) -> ev.BackendEvent:
        self._need_protocol(m, _PF.MQ)
        return ev.QueueNumQueried()

    def _set_mem_table(self, m: Message) -> ev.BackendEvent:
        self._need_owner(m)
        assert isinstance(m.payload, MemoryTable)
        check_table(m.payload)
        for vring in self.vrings:
            if vring.addr is not None and vring.num is not None:
                try:
                    areas = self._translate(m, vring.addr, vring.num, m.payload)
                except VhostUserRemoteError:
                    if vring.started:
                        raise
                    vring.addr = vring.areas = None
                else:
                    vring.areas = areas
        self.table = m.payload
        event = ev.MemTableSet(m.payload, m.fds)
        self._pending = _Pending(event, m, list(m.fds))
        return event

    def _set_vring_num(self, m: Message) -> ev.BackendEvent:
        self._need_owner(m)
        assert isinstance(m.payload, VringState)
        vring = self._vring(m, m.payload.index, stopped=True)
        num = m.payload.num
        # virtio 1.3 §2.7: "Queue Size value is always a power of 2. The maximum Queue
        # Size value is 32768."
        if num == 0 or num & (num - 1) or num > self.config.max_queue_size:
            raise VhostUserRemoteError(
                f"VHOST_USER_SET_VRING_NUM: vring {vring.index} size {num} is not a power of "
                f"two in 1..{self.config.max_queue_size} (virtio 1.3 \u00a72.7)")
        vring.num = num
        vring.addr = vring.areas = None  # areas were sized for the old num
        return ev.VringNumSet(vring.index, num)

    def _translate(self, m: Message, addr: VringAddr, num: int,
                   table: MemoryTable) -> tuple[int, int, int]:
        out = []
        for name, uva, (size, align) in zip(
                ("descriptor", "available", "used"),
                (addr.desc_user_addr, addr.avail_user_addr, addr.used_user_addr),
                _area_sizes(num, self.packed)):
            try:
                gpa = uva_to_gpa(table.regions, uva, size)
            except VhostUserRemoteError:
                raise VhostUserRemoteError(
                    f"{m.request.spec_name}: vring {addr.index} {name} area {uva:#x}+{size:#x} "
                    f"is outside every memory region") from None
            if gpa % align:
                raise VhostUserRemoteError(
                    f"{m.request.spec_name}: vring {addr.index} {name} area at {gpa:#x} is not "
                    f"{align}-byte aligned (virtio 1.3 \u00a72.7)")
            out.append(gpa)
        return out[0], out[1], out[2]

    def _set_vring_addr(self, m: Message) -> ev.BackendEvent:
        self._need_owner(m)
        assert isinstance(m.payload, VringAddr)
        vring = self._vring(m, m.payload.index, stopped=True)
        if self.features is None:
            raise VhostUserRemoteError(
                "VHOST_USER_SET_VRING_ADDR before VHOST_USER_SET_FEATURES (the ring layout "
                "depends on VIRTIO_F_RING_PACKED)")
        if self.table is None:
            raise VhostUserRemoteError(
                "VHOST_USER_SET_VRING_ADDR before VHOST_USER_SET_MEM_TABLE")
        if vring.num is None:
            raise VhostUserRemoteError(
                f"VHOST_USER_SET_VRING_ADDR: vring {vring.index} before VHOST_USER_SET_VRING_NUM")
        if m.payload.flags:  # VHOST_VRING_F_LOG or reserved bits
            raise VhostUserRemoteError(
                f"VHOST_USER_SET_VRING_ADDR: vring {vring.index} flags {m.payload.flags:#x}; "
                f"logging (VHOST_F_LOG_ALL) is never offered")
        areas = self._translate(m, m.payload, vring.num, self.table)
        vring.addr, vring.areas = m.payload, areas
        return ev.VringAddrSet(vring.index, *areas, packed=self.packed)

    def _set_vring_base(self, m: Message) -> ev.BackendEvent:
        self._need_owner(m)
        assert isinstance(m.payload, VringState)
        vring = self._vring(m, m.payload.index, stopped=True)
        if not self.packed and m.payload.num > 0xFFFF:
            raise VhostUserRemoteError(
                f"VHOST_USER_SET_VRING_BASE: vring {vring.index} base {m.payload.num} is not "
                f"a 16-bit ring index")
        vring.base = m.payload.num
        return ev.VringBaseSet(vring.index, vring.base)

    def _get_vring_base(self, m: Message) -> ev.BackendEvent:
        self._need_owner(m)
        assert isinstance(m.payload, VringState)
        vring = self._vring(m, m.payload.index)
        vring.started = False
        event = ev.VringBaseQueried(vring.index)
        self._pending = _Pending(event, m, [vring.kick] if vring.kick is not None else [])
        vring.kick = None
        return event

    def _set_vring_file(self, m: Message) -> ev.BackendEvent:
        self._need_owner(m)
        assert isinstance(m.payload, int)
        what = m.request.spec_name
        extra = m.payload & ~(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD_MASK)
        if extra:
            raise VhostUserRemoteError(f"{what}: reserved bits {extra:#x} set in the u64")
        vring = self._vring(m, m.payload & VHOST_USER_VRING_IDX_MASK)
        fd = m.fds[0] if m.fds else None
        if m.request is _R.SET_VRING_KICK:
            if vring.num is None or vring.areas is None:
                missing = "VHOST_USER_SET_VRING_NUM" if vring.num is None else \
                    "VHOST_USER_SET_VRING_ADDR"
                raise VhostUserRemoteError(
                    f"{what}: vring {vring.index} started before {missing}")
            old, vring.kick, vring.started = vring.kick, fd, True
            event: ev.BackendEvent = ev.VringKickSet(vring.index, fd)
        elif m.request is _R.SET_VRING_CALL:
            old, vring.call = vring.call, fd
            event = ev.VringCallSet(vring.index, fd)
        else:
            old, vring.err = vring.err, fd
            event = ev.VringErrSet(vring.index, fd)
        self._pending = _Pending(event, m, [old] if old is not None else [])
        return event

    def _set_vring_enable(self, m: Message) -> ev.BackendEvent:
        self._need_owner(m)
        assert isinstance(m.payload, VringState)
        vring = self._vring(m, m.payload.index)
        if not (self.features or 0) >> VHOST_USER_F_PROTOCOL_FEATURES & 1:
            raise VhostUserRemoteError(
                "VHOST_USER_SET_VRING_ENABLE without VHOST_USER_F_PROTOCOL_FEATURES negotiated "
                "in VHOST_USER_SET_FEATURES")
        if m.payload.num not in (0, 1):
            raise VhostUserRemoteError(
                f"VHOST_USER_SET_VRING_ENABLE: vring {vring.index} num {m.payload.num} is not 0 "
                f"or 1")
        vring.enabled = bool(m.payload.num)
        return ev.VringEnableSet(vring.index, vring.enabled)

    def _config(self, m: Message) -> ev.BackendEvent:
        self._need_protocol(m, _PF.CONFIG)
        assert isinstance(m.payload, ConfigPayload)
        what = m.request.spec_name
        c = m.payload
        size = len(c.data)
        if not 1 <= size <= VHOST_USER_MAX_CONFIG_SIZE or c.offset + size > self.config.config_size:
            raise VhostUserRemoteError(
                f"{what}: window {c.offset}+{size} is not inside the {self.config.config_size}"
                f"-byte config space")
        if c.flags > VHOST_SET_CONFIG_TYPE_MIGRATION:
            raise VhostUserRemoteError(f"{what}: flags {c.flags} is neither FRONTEND nor MIGRATION")
        if m.request is _R.GET_CONFIG:
            return ev.ConfigQueried(c.offset, size, c.flags)
        return ev.ConfigSet(c.offset, c.data, c.flags)

    def _set_status(self, m: Message) -> ev.BackendEvent:
        self._need_protocol(m, _PF.STATUS)
        assert isinstance(m.payload, int)
        if m.payload > 0xFF:
            raise VhostUserRemoteError(
                f"VHOST_USER_SET_STATUS: {m.payload:#x} is not an 8-bit device status")
        return ev.StatusSet(m.payload)

    def _get_status(self, m: Message) -> ev.BackendEvent:
        self._need_protocol(m, _PF.STATUS)
        return ev.StatusQueried()

    def _set_backend_req_fd(self, m: Message) -> ev.BackendEvent:
        # vhost-user.rst: "This request should be sent only when
        # VHOST_USER_F_PROTOCOL_FEATURES has been negotiated, and protocol feature bit
        # VHOST_USER_PROTOCOL_F_BACKEND_REQ bit is present".  No owner needed: QEMU sends
        # it from vhost_user_backend_init, before SET_OWNER.
        self._need_protocol(m, _PF.BACKEND_REQ)
        old = self.channel
        if old is not None:
            old.close()
        self.channel = BackendChannel(m.fds[0])
        event = ev.BackendChannelSet(m.fds[0])
        self._pending = _Pending(event, m, [old.fd] if old is not None else [])
        return event


__all__ = ["VIRTIO_F_RING_PACKED", "Backend", "BackendChannel", "BackendConfig", "ChannelAck",
           "Vring"]
