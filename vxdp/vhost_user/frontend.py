"""The vhost-user front-end (sans-I/O): builds the requests QEMU sends, parses the replies.

Theory of operation.  Each builder (`get_features()`, `set_mem_table(...)`, ...) returns
an `Outgoing`: the bytes, the fds to attach, and whether a reply is due.  The edge sends
it; when a reply is due it reads `want()` bytes at a time into `receive_data()` until a
`Reply` comes out.  Replies are checked as strictly as the back-end checks requests: the
REPLY flag, the request they answer (only an awaited one), the size, no fds, and values
that answer what was asked (the vring index of GET_VRING_BASE, the window of GET_CONFIG).

The front-end remembers what it negotiated: once REPLY_ACK is in SET_PROTOCOL_FEATURES,
every request without a reply of its own asks for an ack (NEED_REPLY), so a back-end
refusal surfaces at the request that caused it; `Reply.value` of an ack is the back-end's
u64 (0 is success).

The back-end request channel (protocol feature BACKEND_REQ): `set_backend_req_fd(fd)`
hands the back-end one end of a socketpair; `BackendRequests` (from
`Frontend.backend_requests()`) is the front-end's side of it: it reads the back-end's
requests, refuses any whose feature was not negotiated (CONFIG_CHANGE_MSG needs CONFIG,
vhost-user.rst "Back-end message types"), and builds the REPLY_ACK for each request that
set NEED_REPLY (0 when handled, 1 otherwise).  A refusal breaks that channel only.

The sequence QEMU's vhost_dev_init / vhost_dev_start send, which `vring_setup()` and the
edge's `FrontendConnection.negotiate()` follow:

    GET_FEATURES, GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM (MQ),
    SET_BACKEND_REQ_FD (BACKEND_REQ), SET_OWNER, SET_FEATURES, SET_MEM_TABLE, then per vring: SET_VRING_NUM,
    SET_VRING_BASE, SET_VRING_ADDR, SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ENABLE;
    GET/SET_CONFIG, SET_STATUS as the driver goes; GET_VRING_BASE to stop a ring.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from vxdp.errors import VhostUserLocalError, VhostUserRemoteError

from .messages import (
    REPLY_PAYLOAD,
    REQUEST_PAYLOAD,
    VHOST_TRANSFER_STATE_PHASE_STOPPED,
    VHOST_USER_DEVICE_STATE_ERROR_MASK,
    VHOST_USER_DEVICE_STATE_NOFD,
    VHOST_USER_F_PROTOCOL_FEATURES,
    VHOST_USER_VRING_NOFD_MASK,
    BackendChannelReader,
    BackendMessage,
    ConfigPayload,
    DeviceStateTransfer,
    MemoryTable,
    MessageReader,
    Payload,
    PayloadKind,
    VhostUserBackendRequest,
    VhostUserProtocolFeature,
    VhostUserRequest,
    VringAddr,
    VringState,
    backend_request_kind,
    encode_backend_ack,
    encode_request,
)

_R = VhostUserRequest
_PF = VhostUserProtocolFeature


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A request ready to send: bytes, fds to pass with them, whether a reply is due."""

    request: VhostUserRequest
    data: bytes
    fds: tuple[int, ...] = ()
    expects_reply: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """A back-end reply: to `request`, with the parsed payload (an int for u64 and acks)."""

    request: VhostUserRequest
    value: Payload
    ack: bool = False


@dataclass(frozen=True, slots=True)
class _Awaited:
    request: VhostUserRequest
    kind: PayloadKind
    ack: bool
    asked: Payload


class Frontend:
    """One connection's front-end protocol state."""

    def __init__(self) -> None:
        self.reader = MessageReader(replies=True, kind_of=self._reply_kind)
        self.offered_features: int | None = None
        self.offered_protocol_features: int | None = None
        self.features: int | None = None
        self.protocol_features = 0
        self.queue_num: int | None = None  # GET_QUEUE_NUM: queue pairs for net (backend.py)
        self._awaiting: deque[_Awaited] = deque()

    # -- state ---------------------------------------------------------------------------

    def has(self, feature: VhostUserProtocolFeature) -> bool:
        return bool(self.protocol_features >> feature & 1)

    @property
    def awaiting(self) -> bool:
        """True while a reply is due."""
        return bool(self._awaiting)

    @property
    def protocol_negotiated(self) -> bool:
        """VHOST_USER_F_PROTOCOL_FEATURES was in SET_FEATURES (rings start disabled)."""
        return bool((self.features or 0) >> VHOST_USER_F_PROTOCOL_FEATURES & 1)

    # -- building ------------------------------------------------------------------------

    def request(self, request: VhostUserRequest, payload: Payload = None,
                fds: Sequence[int] = ()) -> Outgoing:
        """Any request; asks for an ack when REPLY_ACK is negotiated and none is due."""
        if request not in REQUEST_PAYLOAD:
            raise VhostUserLocalError(f"{request.spec_name} is not a request vxdp speaks")
        ack = request not in REPLY_PAYLOAD and self.has(_PF.REPLY_ACK)
        data = encode_request(request, payload, need_reply=ack)
        if request in REPLY_PAYLOAD:
            self._awaiting.append(_Awaited(request, REPLY_PAYLOAD[request], False, payload))
        elif ack:
            self._awaiting.append(_Awaited(request, PayloadKind.U64, True, payload))
        return Outgoing(request, data, tuple(fds), request in REPLY_PAYLOAD or ack)

    def get_features(self) -> Outgoing:
        return self.request(_R.GET_FEATURES)

    def set_features(self, features: int) -> Outgoing:
        self.features = features
        return self.request(_R.SET_FEATURES, features)

    def get_protocol_features(self) -> Outgoing:
        return self.request(_R.GET_PROTOCOL_FEATURES)

    def set_protocol_features(self, features: int) -> Outgoing:
        out = self.request(_R.SET_PROTOCOL_FEATURES, features)
        self.protocol_features = features  # takes effect from the next request
        return out

    def set_owner(self) -> Outgoing:
        return self.request(_R.SET_OWNER)

    def reset_device(self) -> Outgoing:
        """RESET_DEVICE when negotiated, else the older RESET_OWNER (as QEMU does)."""
        out = self.request(_R.RESET_DEVICE if self.has(_PF.RESET_DEVICE) else _R.RESET_OWNER)
        self.features = None
        return out

    def get_queue_num(self) -> Outgoing:
        return self.request(_R.GET_QUEUE_NUM)

    def set_mem_table(self, table: MemoryTable, fds: Sequence[int]) -> Outgoing:
        if len(fds) != len(table.regions):
            raise VhostUserLocalError(f"{len(table.regions)} regions need as many fds, "
                                      f"got {len(fds)}")
        return self.request(_R.SET_MEM_TABLE, table, fds)

    def set_vring_num(self, index: int, num: int) -> Outgoing:
        return self.request(_R.SET_VRING_NUM, VringState(index, num))

    def set_vring_base(self, index: int, base: int) -> Outgoing:
        return self.request(_R.SET_VRING_BASE, VringState(index, base))

    def get_vring_base(self, index: int) -> Outgoing:
        return self.request(_R.GET_VRING_BASE, VringState(index, 0))

    def set_vring_addr(self, index: int, desc: int, avail: int, used: int) -> Outgoing:
        """Ring areas as front-end virtual addresses (the memory table's userspace_addr)."""
        return self.request(_R.SET_VRING_ADDR, VringAddr(index, 0, desc, used, avail, 0))

    def _vring_file(self, request: VhostUserRequest, index: int, fd: int | None) -> Outgoing:
        if not 0 <= index <= 0xFF:
            raise VhostUserLocalError(f"vring index {index} does not fit the u64's 8 bits")
        if fd is None:
            return self.request(request, index | VHOST_USER_VRING_NOFD_MASK)
        return self.request(request, index, (fd,))

    def set_vring_kick(self, index: int, fd: int | None) -> Outgoing:
        return self._vring_file(_R.SET_VRING_KICK, index, fd)

    def set_vring_call(self, index: int, fd: int | None) -> Outgoing:
        return self._vring_file(_R.SET_VRING_CALL, index, fd)

    def set_vring_err(self, index: int, fd: int | None) -> Outgoing:
        return self._vring_file(_R.SET_VRING_ERR, index, fd)

    def set_vring_enable(self, index: int, enable: bool) -> Outgoing:
        return self.request(_R.SET_VRING_ENABLE, VringState(index, int(enable)))

    def get_config(self, offset: int, size: int, flags: int = 0) -> Outgoing:
        return self.request(_R.GET_CONFIG, ConfigPayload(offset, flags, bytes(size)))

    def set_config(self, offset: int, data: bytes, flags: int = 0) -> Outgoing:
        return self.request(_R.SET_CONFIG, ConfigPayload(offset, flags, data))

    def set_status(self, status: int) -> Outgoing:
        return self.request(_R.SET_STATUS, status)

    def get_status(self) -> Outgoing:
        return self.request(_R.GET_STATUS)

    def set_device_state_fd(self, direction: int, fd: int,
                            phase: int = VHOST_TRANSFER_STATE_PHASE_STOPPED) -> Outgoing:
        """Hand the back-end one end of the state transfer channel (a pipe: the write end
        to SAVE, the read end to LOAD); the reply's `device_state_errno` says whether it
        took it."""
        if not self.has(_PF.DEVICE_STATE):
            raise VhostUserLocalError(
                "VHOST_USER_SET_DEVICE_STATE_FD without protocol feature "
                "VHOST_USER_PROTOCOL_F_DEVICE_STATE (19) negotiated")
        return self.request(_R.SET_DEVICE_STATE_FD, DeviceStateTransfer(direction, phase),
                            (fd,))

    def check_device_state(self) -> Outgoing:
        """After the channel's end of file: did the back-end take (or give) it all?"""
        if not self.has(_PF.DEVICE_STATE):
            raise VhostUserLocalError(
                "VHOST_USER_CHECK_DEVICE_STATE without protocol feature "
                "VHOST_USER_PROTOCOL_F_DEVICE_STATE (19) negotiated")
        return self.request(_R.CHECK_DEVICE_STATE)

    def set_backend_req_fd(self, fd: int) -> Outgoing:
        """Hand the back-end its end of the back-end request channel (a socket)."""
        if not self.has(_PF.BACKEND_REQ):
            raise VhostUserLocalError(
                "VHOST_USER_SET_BACKEND_REQ_FD without protocol feature "
                "VHOST_USER_PROTOCOL_F_BACKEND_REQ (5) negotiated")
        return self.request(_R.SET_BACKEND_REQ_FD, None, (fd,))

    def backend_requests(self) -> BackendRequests:
        """The front-end's side of the back-end request channel, for what is negotiated."""
        if not self.has(_PF.BACKEND_REQ):
            raise VhostUserLocalError(
                "no back-end request channel without protocol feature "
                "VHOST_USER_PROTOCOL_F_BACKEND_REQ (5) negotiated")
        return BackendRequests(self.protocol_features)

    def vring_setup(self, index: int, num: int, desc: int, avail: int, used: int, *,
                    base: int = 0, kick: int | None, call: int | None,
                    enable: bool = True) -> list[Outgoing]:
        """One vring's start, in QEMU's order (vhost_virtqueue_start): NUM, BASE, ADDR,
        KICK, CALL, then ENABLE when VHOST_USER_F_PROTOCOL_FEATURES is negotiated."""
        out = [self.set_vring_num(index, num), self.set_vring_base(index, base),
               self.set_vring_addr(index, desc, avail, used),
               self.set_vring_kick(index, kick), self.set_vring_call(index, call)]
        if self.protocol_negotiated:
            out.append(self.set_vring_enable(index, enable))
        return out

    # -- replies -------------------------------------------------------------------------

    def want(self) -> int:
        return self.reader.want()

    def _reply_kind(self, request: VhostUserRequest, flags: int) -> PayloadKind:
        if not self._awaiting:
            raise VhostUserRemoteError(f"unsolicited reply to {request.spec_name}")
        head = self._awaiting[0]
        if request is not head.request:
            raise VhostUserRemoteError(
                f"reply to {request.spec_name} while one to {head.request.spec_name} is due")
        return head.kind

    def receive_data(self, data: bytes, fds: Sequence[int] = ()) -> Reply | None:
        """Feed reply bytes; return the reply they complete, checked against the request."""
        message = self.reader.feed(data, fds)
        if message is None:
            return None
        head = self._awaiting.popleft()
        what = f"{head.request.spec_name} reply"
        value = message.payload
        if head.request is _R.GET_VRING_BASE:
            assert isinstance(value, VringState) and isinstance(head.asked, VringState)
            if value.index != head.asked.index:
                raise VhostUserRemoteError(
                    f"{what}: vring {value.index}, vring {head.asked.index} was asked")
        elif head.request is _R.GET_CONFIG:
            assert isinstance(value, ConfigPayload) and isinstance(head.asked, ConfigPayload)
            if (value.offset, len(value.data)) != (head.asked.offset, len(head.asked.data)):
                raise VhostUserRemoteError(
                    f"{what}: window {value.offset}+{len(value.data)}, "
                    f"{head.asked.offset}+{len(head.asked.data)} was asked")
        elif head.request is _R.GET_FEATURES:
            assert isinstance(value, int)
            self.offered_features = value
        elif head.request is _R.GET_PROTOCOL_FEATURES:
            assert isinstance(value, int)
            self.offered_protocol_features = value
        elif head.request is _R.GET_QUEUE_NUM:
            assert isinstance(value, int)
            self.queue_num = value
        elif head.request is _R.SET_DEVICE_STATE_FD:
            assert isinstance(value, int)
            if not value & VHOST_USER_DEVICE_STATE_NOFD and \
                    not value & VHOST_USER_DEVICE_STATE_ERROR_MASK:
                # a channel of the back-end's own comes as an fd with the reply, which
                # the reader already refused: one without an fd breaks the rule
                raise VhostUserRemoteError(
                    f"{what}: {value:#x} says an fd comes with it, and none did")
            if value & ~(VHOST_USER_DEVICE_STATE_NOFD | VHOST_USER_DEVICE_STATE_ERROR_MASK):
                raise VhostUserRemoteError(f"{what}: reserved bits set in {value:#x}")
        return Reply(head.request, value, head.ack)

    def close(self) -> None:
        """Close fds of a reply that never completed (replies carry none; belt and braces)."""
        self.reader.close()
        self._awaiting.clear()


#: What each back-end request vxdp takes needs negotiated, besides BACKEND_REQ itself.
BACKEND_REQUEST_NEEDS = {VhostUserBackendRequest.CONFIG_CHANGE_MSG: _PF.CONFIG}


class BackendRequests:
    """The front-end's side of the back-end request channel (sans-I/O): the edge reads
    `want()` bytes into `receive_data()` until a request comes out, handles it, and sends
    `respond(message, ok)` (a REPLY_ACK, or nothing when none was asked).  One request
    is handled at a time.  A request that breaks a rule raises `VhostUserRemoteError`;
    the channel is then out of step: close it (the main connection goes on)."""

    def __init__(self, protocol_features: int) -> None:
        self.protocol_features = protocol_features
        self.reader = BackendChannelReader(kind_of=self._kind)
        self._pending: BackendMessage | None = None

    def has(self, feature: VhostUserProtocolFeature) -> bool:
        return bool(self.protocol_features >> feature & 1)

    def want(self) -> int:
        return self.reader.want()

    def _kind(self, request: VhostUserBackendRequest, flags: int) -> PayloadKind:
        kind = backend_request_kind(request, flags)
        need = BACKEND_REQUEST_NEEDS[request]
        if not self.has(need):
            raise VhostUserRemoteError(
                f"{request.spec_name} without protocol feature "
                f"VHOST_USER_PROTOCOL_F_{need.name} ({int(need)}) negotiated")
        return kind

    def receive_data(self, data: bytes, fds: Sequence[int] = ()) -> BackendMessage | None:
        """Feed request bytes; return the request they complete."""
        if self._pending is not None:
            raise VhostUserLocalError(
                f"respond to {self._pending.request.spec_name} before reading on")
        message = self.reader.feed(data, fds)
        self._pending = message
        return message

    def respond(self, message: BackendMessage, ok: bool = True) -> bytes:
        """The ack owed for `message`: with REPLY_ACK negotiated and NEED_REPLY set, u64 0
        when it was handled and 1 when not (vhost-user.rst: "the front-end must respond
        with zero when operation is successfully completed, or non-zero otherwise");
        otherwise nothing."""
        if message is not self._pending:
            raise VhostUserLocalError(
                f"{message.request.spec_name} is not the back-end request awaiting an answer")
        self._pending = None
        if message.need_reply and self.has(_PF.REPLY_ACK):
            return encode_backend_ack(message.request, ok)
        return b""

    @property
    def idle(self) -> bool:
        """True at a message boundary with nothing to answer (EOF here is a clean close)."""
        return self._pending is None and self.reader.idle

    def close(self) -> None:
        self.reader.close()
        self._pending = None


def device_state_errno(reply: Reply) -> int:
    """The error of a SET_DEVICE_STATE_FD reply (bits 0-7; 0 when the back-end took the
    channel) or of a CHECK_DEVICE_STATE reply (0 success, anything else an error)."""
    assert isinstance(reply.value, int)
    if reply.request is _R.SET_DEVICE_STATE_FD:
        return reply.value & VHOST_USER_DEVICE_STATE_ERROR_MASK
    return reply.value


def check_ack(reply: Reply) -> None:
    """Raise when an ack says the back-end refused its request."""
    if reply.ack and reply.value != 0:
        raise VhostUserRemoteError(
            f"back-end refused {reply.request.spec_name} (REPLY_ACK {reply.value})")


__all__ = ["BACKEND_REQUEST_NEEDS", "BackendRequests", "Frontend", "Outgoing", "Reply",
           "check_ack", "device_state_errno"]
