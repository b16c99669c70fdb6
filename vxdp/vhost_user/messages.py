"""vhost-user messages as data: request codes, flags, payload layouts, strict framing.

Everything that decides whether bytes on the socket are a well-formed vhost-user message
lives here (QEMU docs/interop/vhost-user.rst, "Message format", "Front-end message
types" and "Back-end message types").  Order and values (is this request allowed *now*,
is this index in range) are the state machines' business (`backend.py`, `frontend.py`).

Wire format: a 12-byte header `{u32 request; u32 flags; u32 size}` in host byte order
(little-endian on every machine we run on), then `size` bytes of payload.  File
descriptors travel as SCM_RIGHTS ancillary data with the message.  Flags: bits 0-1 the
version (1), bit 2 REPLY (set on every back-end reply), bit 3 NEED_REPLY (ask for a
REPLY_ACK u64 when that protocol feature is negotiated).

Framing (`MessageReader`): the edge asks `want()` how many bytes to read next and reads
no more, so a recvmsg never crosses a message boundary and every fd belongs to the
message whose bytes carried it.  The header is checked before any payload is read: the
version, the REPLY bit for the direction, a known and supported request, a size the
request's payload can have.  Then the payload is parsed at exactly that size and the fd
count is checked against it.  A refused message's fds are closed here: nobody else ever
saw them.

The back-end request channel (protocol feature BACKEND_REQ, formerly SLAVE_REQ): a second
socket the front-end hands over with SET_BACKEND_REQ_FD, on which the roles swap: the
back-end sends requests numbered from their own table (`VhostUserBackendRequest`) and
the front-end replies (a REPLY_ACK u64 when NEED_REPLY is set).  `BackendChannelReader`
frames that socket with the same rules; of its requests vxdp speaks CONFIG_CHANGE_MSG.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum, IntFlag
from typing import Generic, TypeVar

from construct import Array, Bytes, Int32ul, Int64ul, Struct, this

from vxdp.errors import VhostUserLocalError, VhostUserRemoteError


class VhostUserRequest(IntEnum):
    """Front-end message types with the spec's numbers (name = VHOST_USER_<name>)."""

    GET_FEATURES = 1
    SET_FEATURES = 2
    SET_OWNER = 3
    RESET_OWNER = 4
    SET_MEM_TABLE = 5
    SET_LOG_BASE = 6
    SET_LOG_FD = 7
    SET_VRING_NUM = 8
    SET_VRING_ADDR = 9
    SET_VRING_BASE = 10
    GET_VRING_BASE = 11
    SET_VRING_KICK = 12
    SET_VRING_CALL = 13
    SET_VRING_ERR = 14
    GET_PROTOCOL_FEATURES = 15
    SET_PROTOCOL_FEATURES = 16
    GET_QUEUE_NUM = 17
    SET_VRING_ENABLE = 18
    SEND_RARP = 19
    NET_SET_MTU = 20
    SET_BACKEND_REQ_FD = 21
    IOTLB_MSG = 22
    SET_VRING_ENDIAN = 23
    GET_CONFIG = 24
    SET_CONFIG = 25
    CREATE_CRYPTO_SESSION = 26
    CLOSE_CRYPTO_SESSION = 27
    POSTCOPY_ADVISE = 28
    POSTCOPY_LISTEN = 29
    POSTCOPY_END = 30
    GET_INFLIGHT_FD = 31
    SET_INFLIGHT_FD = 32
    GPU_SET_SOCKET = 33
    RESET_DEVICE = 34
    VRING_KICK = 35
    GET_MAX_MEM_SLOTS = 36
    ADD_MEM_REG = 37
    REM_MEM_REG = 38
    SET_STATUS = 39
    GET_STATUS = 40
    GET_SHARED_OBJECT = 41
    SET_DEVICE_STATE_FD = 42
    CHECK_DEVICE_STATE = 43

    @property
    def spec_name(self) -> str:
        """The name as the spec spells it, e.g. `VHOST_USER_SET_VRING_ADDR`."""
        return f"VHOST_USER_{self.name}"


class VhostUserBackendRequest(IntEnum):
    """Back-end message types, sent on the back-end request channel, with the spec's own
    numbers (name = VHOST_USER_BACKEND_<name>; VHOST_USER_SLAVE_<name> before QEMU 8.1)."""

    IOTLB_MSG = 1
    CONFIG_CHANGE_MSG = 2
    VRING_HOST_NOTIFIER_MSG = 3
    VRING_CALL = 4
    VRING_ERR = 5
    SHARED_OBJECT_ADD = 6
    SHARED_OBJECT_REMOVE = 7
    SHARED_OBJECT_LOOKUP = 8

    @property
    def spec_name(self) -> str:
        """The name as the spec spells it, e.g. `VHOST_USER_BACKEND_CONFIG_CHANGE_MSG`."""
        return f"VHOST_USER_BACKEND_{self.name}"


class VhostUserProtocolFeature(IntEnum):
    """Protocol feature bits (name = VHOST_USER_PROTOCOL_F_<name>)."""

    MQ = 0
    LOG_SHMFD = 1
    RARP = 2
    REPLY_ACK = 3
    NET_MTU = 4
    BACKEND_REQ = 5
    CROSS_ENDIAN = 6
    CRYPTO_SESSION = 7
    PAGEFAULT = 8
    CONFIG = 9
    BACKEND_SEND_FD = 10
    HOST_NOTIFIER = 11
    INFLIGHT_SHMFD = 12
    RESET_DEVICE = 13
    INBAND_NOTIFICATIONS = 14
    CONFIGURE_MEM_SLOTS = 15
    STATUS = 16
    XEN_MMAP = 17
    SHARED_OBJECT = 18
    DEVICE_STATE = 19


class VhostUserFlag(IntFlag):
    """Header flags: the version occupies bits 0-1."""

    VERSION = 0x1
    REPLY = 0x4
    NEED_REPLY = 0x8


#: Virtio feature bit a back-end offers when it speaks GET/SET_PROTOCOL_FEATURES.
VHOST_USER_F_PROTOCOL_FEATURES = 30
#: Virtio feature bit for dirty-page logging (we never offer it).
VHOST_F_LOG_ALL = 26
VHOST_USER_VERSION = 1
VHOST_USER_VERSION_MASK = 0x3
#: Flags a header may carry: version, REPLY, NEED_REPLY.  Others are reserved.
VHOST_USER_FLAGS_KNOWN = 0x3 | 0x4 | 0x8  # version, REPLY, NEED_REPLY; a plain int for ~
#: SET_VRING_KICK/CALL/ERR u64: bits 0-7 the vring index, bit 8 "no fd" (polling).
VHOST_USER_VRING_IDX_MASK = 0xFF
VHOST_USER_VRING_NOFD_MASK = 0x100
#: Regions (and fds) SET_MEM_TABLE may carry.
VHOST_MEMORY_BASELINE_NREGIONS = 8
#: Largest config-space window one GET/SET_CONFIG moves.
VHOST_USER_MAX_CONFIG_SIZE = 256
#: vhost_vring_addr.flags bit: log writes to the used ring.
VHOST_VRING_F_LOG = 0x1
#: VhostUserConfig.flags values.
VHOST_SET_CONFIG_TYPE_FRONTEND = 0
VHOST_SET_CONFIG_TYPE_MIGRATION = 1
#: VhostUserTransferDeviceState.direction: the back-end saves (writes) its state, or
#: loads (reads) it.
VHOST_TRANSFER_STATE_DIRECTION_SAVE = 0
VHOST_TRANSFER_STATE_DIRECTION_LOAD = 1
#: VhostUserTransferDeviceState.phase: the only one vhost-user defines, both devices
#: suspended (every vring stopped) before switch-over.
VHOST_TRANSFER_STATE_PHASE_STOPPED = 0
#: SET_DEVICE_STATE_FD's reply u64: bits 0-7 0 or an error, bit 8 "no fd returned".
VHOST_USER_DEVICE_STATE_ERROR_MASK = 0xFF
VHOST_USER_DEVICE_STATE_NOFD = 0x100

# -- layouts, named as QEMU's hw/virtio/vhost-user.c names them ---------------------------

VhostUserHeader = Struct("request" / Int32ul, "flags" / Int32ul, "size" / Int32ul)
#: Size of the header: 3 * u32.
VHOST_USER_HDR_SIZE = 12

VhostUserU64 = Struct("u64" / Int64ul)

vhost_vring_state = Struct("index" / Int32ul, "num" / Int32ul)

vhost_vring_addr = Struct(
    "index" / Int32ul,
    "flags" / Int32ul,
    "desc_user_addr" / Int64ul,
    "used_user_addr" / Int64ul,
    "avail_user_addr" / Int64ul,
    "log_guest_addr" / Int64ul,
)

VhostUserMemoryRegion = Struct(
    "guest_phys_addr" / Int64ul,
    "memory_size" / Int64ul,
    "userspace_addr" / Int64ul,
    "mmap_offset" / Int64ul,
)
#: Size of one region: 4 * u64.
VHOST_USER_MEMORY_REGION_SIZE = 32

VhostUserMemory = Struct(
    "nregions" / Int32ul,
    "padding" / Int32ul,
    "regions" / Array(this.nregions, VhostUserMemoryRegion),
)

VhostUserConfig = Struct(
    "offset" / Int32ul,
    "size" / Int32ul,
    "flags" / Int32ul,
    "region" / Bytes(this.size),
)
#: Size of the config header before the window: 3 * u32.
VHOST_USER_CONFIG_HDR_SIZE = 12

VhostUserTransferDeviceState = Struct("direction" / Int32ul, "phase" / Int32ul)


# -- payload values -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class VringState:
    """`struct vhost_vring_state`: a vring index and a number (size, base, enable)."""

    index: int
    num: int


@dataclass(frozen=True, slots=True)
class VringAddr:
    """`struct vhost_vring_addr`: the ring areas as the FRONT-END's user virtual addresses.

    For a packed ring desc/avail/used name the descriptor ring, the driver event
    suppression area and the device event suppression area."""

    index: int
    flags: int
    desc_user_addr: int
    used_user_addr: int
    avail_user_addr: int
    log_guest_addr: int = 0


@dataclass(frozen=True, slots=True)
class MemoryRegionDesc:
    """`VhostUserMemoryRegion`: one region of guest memory, backed by the fd sent with it."""

    guest_phys_addr: int
    memory_size: int
    userspace_addr: int
    mmap_offset: int


@dataclass(frozen=True, slots=True)
class MemoryTable:
    """`VhostUserMemory`: the regions of SET_MEM_TABLE (their fds travel in `Message.fds`)."""

    regions: tuple[MemoryRegionDesc, ...]


@dataclass(frozen=True, slots=True)
class ConfigPayload:
    """`VhostUserConfig`: a window of device config space; its size is `len(data)`."""

    offset: int
    flags: int
    data: bytes


@dataclass(frozen=True, slots=True)
class DeviceStateTransfer:
    """`VhostUserTransferDeviceState`: SET_DEVICE_STATE_FD's direction and phase (the
    channel's fd travels in `Message.fds`)."""

    direction: int
    phase: int


Payload = None | int | VringState | VringAddr | MemoryTable | ConfigPayload | \
    DeviceStateTransfer


class PayloadKind(Enum):
    """Which layout follows the header."""

    NONE = "none"
    U64 = "u64"
    VRING_STATE = "vring state"
    VRING_ADDR = "vring address"
    MEMORY = "memory table"
    CONFIG = "config space"
    DEVICE_STATE = "device state transfer parameters"


_R = VhostUserRequest
_K = PayloadKind

#: Payload of each request we speak, front-end -> back-end.  Anything else is refused.
REQUEST_PAYLOAD: dict[VhostUserRequest, PayloadKind] = {
    _R.GET_FEATURES: _K.NONE,
    _R.SET_FEATURES: _K.U64,
    _R.SET_OWNER: _K.NONE,
    _R.RESET_OWNER: _K.NONE,
    _R.SET_MEM_TABLE: _K.MEMORY,
    _R.SET_VRING_NUM: _K.VRING_STATE,
    _R.SET_VRING_ADDR: _K.VRING_ADDR,
    _R.SET_VRING_BASE: _K.VRING_STATE,
    _R.GET_VRING_BASE: _K.VRING_STATE,
    _R.SET_VRING_KICK: _K.U64,
    _R.SET_VRING_CALL: _K.U64,
    _R.SET_VRING_ERR: _K.U64,
    _R.GET_PROTOCOL_FEATURES: _K.NONE,
    _R.SET_PROTOCOL_FEATURES: _K.U64,
    _R.GET_QUEUE_NUM: _K.NONE,
    _R.SET_VRING_ENABLE: _K.VRING_STATE,
    _R.GET_CONFIG: _K.CONFIG,
    _R.SET_CONFIG: _K.CONFIG,
    _R.RESET_DEVICE: _K.NONE,
    _R.SET_STATUS: _K.U64,
    _R.GET_STATUS: _K.NONE,
    _R.SET_BACKEND_REQ_FD: _K.NONE,
    _R.SET_DEVICE_STATE_FD: _K.DEVICE_STATE,
    _R.CHECK_DEVICE_STATE: _K.NONE,
}

#: Payload of the back-end's reply to the requests that have one (without REPLY_ACK).
REPLY_PAYLOAD: dict[VhostUserRequest, PayloadKind] = {
    _R.GET_FEATURES: _K.U64,
    _R.GET_PROTOCOL_FEATURES: _K.U64,
    _R.GET_QUEUE_NUM: _K.U64,
    _R.GET_VRING_BASE: _K.VRING_STATE,
    _R.GET_CONFIG: _K.CONFIG,
    _R.GET_STATUS: _K.U64,
    _R.SET_DEVICE_STATE_FD: _K.U64,
    _R.CHECK_DEVICE_STATE: _K.U64,
}

#: Requests whose u64 carries a vring index and may carry an eventfd.
VRING_FILE_REQUESTS = frozenset({_R.SET_VRING_KICK, _R.SET_VRING_CALL, _R.SET_VRING_ERR})

_B = VhostUserBackendRequest

#: Payload of each back-end request vxdp speaks on the back-end request channel (the
#: reply, when NEED_REPLY asks for one, is a REPLY_ACK u64).
BACKEND_REQUEST_PAYLOAD: dict[VhostUserBackendRequest, PayloadKind] = {
    _B.CONFIG_CHANGE_MSG: _K.NONE,
}

_FIXED_SIZE = {_K.NONE: 0, _K.U64: 8, _K.VRING_STATE: 8, _K.VRING_ADDR: 40,
               _K.DEVICE_STATE: 8}


def request_name(code: int) -> str:
    """`VHOST_USER_SET_VRING_ADDR (9)`, or `unknown request 99` for codes not in the spec."""
    try:
        return f"{VhostUserRequest(code).spec_name} ({code})"
    except ValueError:
        return f"unknown request {code}"


def size_ok(kind: PayloadKind, size: int) -> bool:
    """True when a payload of `kind` can be `size` bytes long."""
    if kind in _FIXED_SIZE:
        return size == _FIXED_SIZE[kind]
    if kind is _K.MEMORY:
        body = size - 8
        return (0 <= body <= VHOST_MEMORY_BASELINE_NREGIONS * VHOST_USER_MEMORY_REGION_SIZE
                and body % VHOST_USER_MEMORY_REGION_SIZE == 0)
    return VHOST_USER_CONFIG_HDR_SIZE <= size <= (VHOST_USER_CONFIG_HDR_SIZE
                                                 + VHOST_USER_MAX_CONFIG_SIZE)


def expected_size(kind: PayloadKind) -> str:
    """The sizes a payload of `kind` may have, in words, for error messages."""
    if kind in _FIXED_SIZE:
        return f"{_FIXED_SIZE[kind]}"
    if kind is _K.MEMORY:
        return "8 + 32 * nregions (nregions <= 8)"
    return "12 + size (size <= 256)"


def encode_payload(kind: PayloadKind, payload: Payload) -> bytes:
    """The bytes of `payload` laid out as `kind`; LocalError if they do not fit."""
    try:
        if kind is _K.NONE:
            if payload is not None:
                raise VhostUserLocalError(f"a {kind.value} payload carries nothing, got {payload!r}")
            return b""
        if kind is _K.U64:
            if not isinstance(payload, int):
                raise VhostUserLocalError(f"a u64 payload must be an int, got {payload!r}")
            return bytes(VhostUserU64.build({"u64": payload}))
        if kind is _K.VRING_STATE and isinstance(payload, VringState):
            return bytes(vhost_vring_state.build({"index": payload.index, "num": payload.num}))
        if kind is _K.DEVICE_STATE and isinstance(payload, DeviceStateTransfer):
            return bytes(VhostUserTransferDeviceState.build({"direction": payload.direction,
                                                             "phase": payload.phase}))
        if kind is _K.VRING_ADDR and isinstance(payload, VringAddr):
            return bytes(vhost_vring_addr.build({
                "index": payload.index, "flags": payload.flags,
                "desc_user_addr": payload.desc_user_addr,
                "used_user_addr": payload.used_user_addr,
                "avail_user_addr": payload.avail_user_addr,
                "log_guest_addr": payload.log_guest_addr}))
        if kind is _K.MEMORY and isinstance(payload, MemoryTable):
            if len(payload.regions) > VHOST_MEMORY_BASELINE_NREGIONS:
                raise VhostUserLocalError(
                    f"a memory table holds at most {VHOST_MEMORY_BASELINE_NREGIONS} regions, "
                    f"got {len(payload.regions)}")
            return bytes(VhostUserMemory.build({
                "nregions": len(payload.regions), "padding": 0,
                "regions": [{"guest_phys_addr": r.guest_phys_addr,
                             "memory_size": r.memory_size,
                             "userspace_addr": r.userspace_addr,
                             "mmap_offset": r.mmap_offset} for r in payload.regions]}))
        if kind is _K.CONFIG and isinstance(payload, ConfigPayload):
            if len(payload.data) > VHOST_USER_MAX_CONFIG_SIZE:
                raise VhostUserLocalError(
                    f"a config window is at most {VHOST_USER_MAX_CONFIG_SIZE} bytes, "
                    f"got {len(payload.data)}")
            return bytes(VhostUserConfig.build({
                "offset": payload.offset, "size": len(payload.data), "flags": payload.flags,
                "region": payload.data}))
    except VhostUserLocalError:
        raise
    except Exception as exc:  # construct range errors: a field that does not fit its width
        raise VhostUserLocalError(f"cannot lay out {payload!r} as a {kind.value}: {exc}") from exc
    raise VhostUserLocalError(f"a {kind.value} payload cannot be {payload!r}")


def decode_payload(kind: PayloadKind, body: bytes, what: str) -> Payload:
    """Parse `body` (already known to have a size `kind` allows) as `kind`."""
    if kind is _K.NONE:
        return None
    if kind is _K.U64:
        return int(VhostUserU64.parse(body).u64)
    if kind is _K.VRING_STATE:
        s = vhost_vring_state.parse(body)
        return VringState(int(s.index), int(s.num))
    if kind is _K.DEVICE_STATE:
        t = VhostUserTransferDeviceState.parse(body)
        return DeviceStateTransfer(int(t.direction), int(t.phase))
    if kind is _K.VRING_ADDR:
        a = vhost_vring_addr.parse(body)
        return VringAddr(int(a.index), int(a.flags), int(a.desc_user_addr),
                         int(a.used_user_addr), int(a.avail_user_addr), int(a.log_guest_addr))
    if kind is _K.MEMORY:
        nregions = int(Int32ul.parse(body[:4]))
        if 8 + nregions * VHOST_USER_MEMORY_REGION_SIZE != len(body):
            raise VhostUserRemoteError(
                f"{what}: nregions {nregions} does not match a payload of {len(body)} bytes")
        m = VhostUserMemory.parse(body)
        return MemoryTable(tuple(
            MemoryRegionDesc(int(r.guest_phys_addr), int(r.memory_size),
                             int(r.userspace_addr), int(r.mmap_offset)) for r in m.regions))
    size = int(Int32ul.parse(body[4:8]))
    if VHOST_USER_CONFIG_HDR_SIZE + size != len(body):
        raise VhostUserRemoteError(
            f"{what}: config size {size} does not match a payload of {len(body)} bytes")
    c = VhostUserConfig.parse(body)
    return ConfigPayload(int(c.offset), int(c.flags), bytes(c.region))


@dataclass(frozen=True, slots=True)
class Message:
    """One vhost-user message: its request, header flags, parsed payload and fds."""

    request: VhostUserRequest
    flags: int
    payload: Payload = None
    fds: tuple[int, ...] = ()

    @property
    def need_reply(self) -> bool:
        return bool(self.flags & VhostUserFlag.NEED_REPLY)

    @property
    def is_reply(self) -> bool:
        return bool(self.flags & VhostUserFlag.REPLY)


def encode(request: VhostUserRequest | VhostUserBackendRequest, kind: PayloadKind,
           payload: Payload = None, *, reply: bool = False, need_reply: bool = False) -> bytes:
    """Header and payload bytes of one message, on either channel (fds are the edge's to
    attach)."""
    body = encode_payload(kind, payload)
    flags = VHOST_USER_VERSION
    flags |= VhostUserFlag.REPLY if reply else 0
    flags |= VhostUserFlag.NEED_REPLY if need_reply else 0
    header = VhostUserHeader.build({"request": int(request), "flags": int(flags),
                                    "size": len(body)})
    return bytes(header) + body


def encode_request(request: VhostUserRequest, payload: Payload = None, *,
                   need_reply: bool = False) -> bytes:
    """A front-end request laid out as `REQUEST_PAYLOAD` says."""
    if request not in REQUEST_PAYLOAD:
        raise VhostUserLocalError(f"{request.spec_name} is not a request vxdp speaks")
    return encode(request, REQUEST_PAYLOAD[request], payload, need_reply=need_reply)


def encode_reply(request: VhostUserRequest, kind: PayloadKind, payload: Payload) -> bytes:
    """A back-end reply to `request` (REPLY set; a REPLY_ACK is a U64 reply)."""
    return encode(request, kind, payload, reply=True)


@dataclass(frozen=True, slots=True)
class BackendMessage:
    """One message on the back-end request channel (a back-end request, or the
    front-end's reply to one)."""

    request: VhostUserBackendRequest
    flags: int
    payload: Payload = None

    @property
    def need_reply(self) -> bool:
        return bool(self.flags & VhostUserFlag.NEED_REPLY)


def encode_backend_request(request: VhostUserBackendRequest, payload: Payload = None, *,
                           need_reply: bool = False) -> bytes:
    """A back-end request laid out as `BACKEND_REQUEST_PAYLOAD` says."""
    if request not in BACKEND_REQUEST_PAYLOAD:
        raise VhostUserLocalError(f"{request.spec_name} is not a back-end request vxdp speaks")
    return encode(request, BACKEND_REQUEST_PAYLOAD[request], payload, need_reply=need_reply)


def encode_backend_ack(request: VhostUserBackendRequest, ok: bool) -> bytes:
    """The front-end's REPLY_ACK to a back-end request: REPLY set, u64 0 for success and
    1 otherwise (vhost-user.rst: "zero when operation is successfully completed, or
    non-zero otherwise")."""
    return encode(request, PayloadKind.U64, 0 if ok else 1, reply=True)


def check_fds(message: Message) -> None:
    """The fd count a request must carry: one per region, one per vring file unless the
    NOFD bit is set, one socket for SET_BACKEND_REQ_FD, none otherwise."""
    what = message.request.spec_name
    n = len(message.fds)
    if message.request is _R.SET_BACKEND_REQ_FD:
        if n != 1:
            raise VhostUserRemoteError(f"{what}: needs 1 fd (the channel's socket), got {n}")
        return
    if message.request is _R.SET_DEVICE_STATE_FD:
        if n != 1:
            raise VhostUserRemoteError(f"{what}: needs 1 fd (the transfer channel's end), "
                                       f"got {n}")
        return
    if message.request is _R.SET_MEM_TABLE:
        assert isinstance(message.payload, MemoryTable)
        want = len(message.payload.regions)
        if n != want:
            raise VhostUserRemoteError(
                f"{what}: {want} regions need {want} fds, got {n}")
        return
    if message.request in VRING_FILE_REQUESTS:
        assert isinstance(message.payload, int)
        want = 0 if message.payload & VHOST_USER_VRING_NOFD_MASK else 1
        if n != want:
            raise VhostUserRemoteError(
                f"{what}: u64 {message.payload:#x} needs {want} fd(s), got {n}")
        return
    if n:
        raise VhostUserRemoteError(f"{what}: carries no fds, got {n}")


def close_fds(fds: Sequence[int]) -> None:
    """Close fds nobody will use (a refused message's); already-closed ones are ignored."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


#: What the reader asks to learn the payload layout: (request, flags) -> kind.
KindOf = Callable[[VhostUserRequest, int], PayloadKind]
#: The same, on the back-end request channel.
BackendKindOf = Callable[[VhostUserBackendRequest, int], PayloadKind]


def request_kind(request: VhostUserRequest, flags: int) -> PayloadKind:
    """Payload kind of a front-end request; refuses requests vxdp does not speak."""
    try:
        return REQUEST_PAYLOAD[request]
    except KeyError:
        raise VhostUserRemoteError(
            f"unsupported request {request_name(request)}: vxdp never offers the feature "
            f"it belongs to") from None


def backend_request_kind(request: VhostUserBackendRequest, flags: int) -> PayloadKind:
    """Payload kind of a back-end request; refuses requests vxdp does not speak."""
    try:
        return BACKEND_REQUEST_PAYLOAD[request]
    except KeyError:
        raise VhostUserRemoteError(
            f"unsupported back-end request {request.spec_name} ({int(request)}): vxdp never "
            f"negotiates the feature it belongs to") from None


_Code = TypeVar("_Code", VhostUserRequest, VhostUserBackendRequest)
_Msg = TypeVar("_Msg", Message, BackendMessage)


class _Framer(Generic[_Code, _Msg]):
    """Frames one direction of one socket: the rules both channels share."""

    _codes: type[_Code]
    _unknown: str

    def __init__(self, *, replies: bool,
                 kind_of: Callable[[_Code, int], PayloadKind]) -> None:
        self._replies = replies
        self._kind_of: Callable[[_Code, int], PayloadKind] = kind_of
        self._buf = bytearray()
        self._fds: list[int] = []
        self._header: tuple[_Code, int, int, PayloadKind] | None = None
        self._broken = False

    def want(self) -> int:
        """How many bytes to read next (never past the current message)."""
        if self._header is None:
            return VHOST_USER_HDR_SIZE - len(self._buf)
        return self._header[2] - len(self._buf)

    @property
    def idle(self) -> bool:
        """True at a message boundary (an EOF here is a clean close)."""
        return self._header is None and not self._buf and not self._fds

    def close(self) -> None:
        """Close fds of a message that never completed."""
        close_fds(self._fds)
        self._fds = []

    def feed(self, data: bytes, fds: Sequence[int] = ()) -> _Msg | None:
        """Take bytes (at most `want()`) and fds; return the message they complete."""
        if self._broken:
            close_fds(fds)
            raise VhostUserLocalError("the message stream already failed; reconnect")
        if len(data) > self.want():
            close_fds(fds)
            raise VhostUserLocalError(f"fed {len(data)} bytes, the reader wants {self.want()}")
        self._buf += data
        self._fds.extend(fds)
        try:
            return self._advance()
        except VhostUserRemoteError:
            self._broken = True
            self.close()
            raise

    def _build(self, request: _Code, flags: int, payload: Payload,
               fds: tuple[int, ...]) -> _Msg:
        raise NotImplementedError

    def _advance(self) -> _Msg | None:
        if self._header is None:
            if len(self._buf) < VHOST_USER_HDR_SIZE:
                return None
            self._header = self._check_header(bytes(self._buf))
            self._buf.clear()
        request, flags, size, kind = self._header
        if len(self._buf) < size:
            return None
        payload = decode_payload(kind, bytes(self._buf), request.spec_name)
        message = self._build(request, flags, payload, tuple(self._fds))
        self._buf.clear()
        self._fds = []
        self._header = None
        return message

    def _check_header(self, raw: bytes) -> tuple[_Code, int, int, PayloadKind]:
        h = VhostUserHeader.parse(raw)
        code, flags, size = int(h.request), int(h.flags), int(h.size)
        try:
            request = self._codes(code)
        except ValueError:
            raise VhostUserRemoteError(f"unknown {self._unknown} code {code}") from None
        what = request.spec_name
        if flags & VHOST_USER_VERSION_MASK != VHOST_USER_VERSION:
            raise VhostUserRemoteError(
                f"{what}: version {flags & VHOST_USER_VERSION_MASK}, only version 1 exists")
        if flags & ~VHOST_USER_FLAGS_KNOWN:
            raise VhostUserRemoteError(f"{what}: reserved flag bits {flags:#x} set")
        if bool(flags & VhostUserFlag.REPLY) != self._replies:
            side = "a reply" if self._replies else "a request"
            raise VhostUserRemoteError(f"{what}: REPLY flag {'clear' if self._replies else 'set'}"
                                       f" where {side} was due")
        kind = self._kind_of(request, flags)
        if not size_ok(kind, size):
            raise VhostUserRemoteError(
                f"{what}: payload size {size}, a {kind.value} payload is {expected_size(kind)}")
        return request, flags, size, kind


class MessageReader(_Framer[VhostUserRequest, Message]):
    """Frames a byte stream (plus fds) into `Message`s, refusing anything malformed.

    `replies=False` reads front-end requests (REPLY must be clear); `replies=True` reads
    back-end replies (REPLY must be set) with `kind_of` saying which layout the awaited
    reply has.  After a refusal the stream is out of step: drop the connection."""

    _codes = VhostUserRequest
    _unknown = "request"

    def __init__(self, *, replies: bool = False, kind_of: KindOf = request_kind) -> None:
        super().__init__(replies=replies, kind_of=kind_of)

    def _build(self, request: VhostUserRequest, flags: int, payload: Payload,
               fds: tuple[int, ...]) -> Message:
        message = Message(request, flags, payload, fds)
        if not self._replies:
            check_fds(message)
        elif fds:
            raise VhostUserRemoteError(
                f"{request.spec_name} reply: carries no fds, got {len(fds)}")
        return message


class BackendChannelReader(_Framer[VhostUserBackendRequest, BackendMessage]):
    """Frames the back-end request channel: `replies=False` reads the back-end's
    requests (the front-end's side), `replies=True` the front-end's acks (the back-end's
    side, `kind_of` saying what is awaited).  No message carries fds here: vxdp never
    negotiates BACKEND_SEND_FD.  After a refusal the channel is out of step: close it."""

    _codes = VhostUserBackendRequest
    _unknown = "back-end request"

    def __init__(self, *, replies: bool = False,
                 kind_of: BackendKindOf = backend_request_kind) -> None:
        super().__init__(replies=replies, kind_of=kind_of)

    def _build(self, request: VhostUserBackendRequest, flags: int, payload: Payload,
               fds: tuple[int, ...]) -> BackendMessage:
        if fds:
            raise VhostUserRemoteError(
                f"{request.spec_name}{' reply' if self._replies else ''}: carries no fds "
                f"(BACKEND_SEND_FD is not negotiated), got {len(fds)}")
        return BackendMessage(request, flags, payload)


__all__ = [
    "BACKEND_REQUEST_PAYLOAD", "REPLY_PAYLOAD", "REQUEST_PAYLOAD", "VHOST_F_LOG_ALL",
    "VHOST_MEMORY_BASELINE_NREGIONS", "VHOST_SET_CONFIG_TYPE_FRONTEND",
    "VHOST_SET_CONFIG_TYPE_MIGRATION", "VHOST_TRANSFER_STATE_DIRECTION_LOAD",
    "VHOST_TRANSFER_STATE_DIRECTION_SAVE", "VHOST_TRANSFER_STATE_PHASE_STOPPED",
    "VHOST_USER_CONFIG_HDR_SIZE", "VHOST_USER_DEVICE_STATE_ERROR_MASK",
    "VHOST_USER_DEVICE_STATE_NOFD", "VHOST_USER_FLAGS_KNOWN", "VHOST_USER_F_PROTOCOL_FEATURES",
    "VHOST_USER_HDR_SIZE", "VHOST_USER_MAX_CONFIG_SIZE", "VHOST_USER_MEMORY_REGION_SIZE",
    "VHOST_USER_VERSION", "VHOST_USER_VERSION_MASK", "VHOST_USER_VRING_IDX_MASK",
    "VHOST_USER_VRING_NOFD_MASK", "VHOST_VRING_F_LOG", "VRING_FILE_REQUESTS",
    "BackendChannelReader", "BackendKindOf", "BackendMessage", "ConfigPayload",
    "DeviceStateTransfer", "KindOf", "MemoryRegionDesc", "MemoryTable", "Message",
    "MessageReader", "Payload", "PayloadKind", "VhostUserBackendRequest", "VhostUserConfig",
    "VhostUserFlag", "VhostUserHeader", "VhostUserMemory", "VhostUserMemoryRegion",
    "VhostUserProtocolFeature", "VhostUserRequest", "VhostUserTransferDeviceState",
    "VhostUserU64", "VringAddr", "VringState", "backend_request_kind", "check_fds",
    "close_fds", "decode_payload", "encode", "encode_backend_ack", "encode_backend_request",
    "encode_payload", "encode_reply", "encode_request", "expected_size", "request_kind",
    "request_name", "size_ok", "vhost_vring_addr", "vhost_vring_state",
]
