"""vhost-user wire format: two-way vectors for every message, strict framing refusals."""

import os
import struct

import pytest

from vxdp.errors import VhostUserLocalError, VhostUserRemoteError
from vxdp.vhost_user.messages import (
    BACKEND_REQUEST_PAYLOAD,
    REPLY_PAYLOAD,
    REQUEST_PAYLOAD,
    BackendChannelReader,
    ConfigPayload,
    DeviceStateTransfer,
    MemoryRegionDesc,
    MemoryTable,
    MessageReader,
    PayloadKind,
    VhostUserBackendRequest,
    VhostUserProtocolFeature,
    VhostUserRequest,
    VringAddr,
    VringState,
    encode_backend_ack,
    encode_backend_request,
    encode_reply,
    encode_request,
)

from .conftest import feed_chunks

R = VhostUserRequest


def hdr(code: int, flags: int, body: bytes) -> bytes:
    return struct.pack("<III", code, flags, len(body)) + body


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def state(i: int, n: int) -> bytes:
    return struct.pack("<II", i, n)


REGION_A = MemoryRegionDesc(0x0, 0x100000, 0x7F0000000000, 0)
REGION_B = MemoryRegionDesc(0x100000000, 0x200000, 0x7F0000200000, 0x1000)
REGIONS_RAW = (struct.pack("<QQQQ", 0x0, 0x100000, 0x7F0000000000, 0)
               + struct.pack("<QQQQ", 0x100000000, 0x200000, 0x7F0000200000, 0x1000))

# (request, payload, fd count, wire bytes without NEED_REPLY): every request vxdp speaks.
REQUEST_VECTORS = [
    (R.GET_FEATURES, None, 0, hdr(1, 1, b"")),
    (R.SET_FEATURES, (1 << 32) | (1 << 30), 0, hdr(2, 1, u64(0x140000000))),
    (R.SET_OWNER, None, 0, hdr(3, 1, b"")),
    (R.RESET_OWNER, None, 0, hdr(4, 1, b"")),
    (R.SET_MEM_TABLE, MemoryTable((REGION_A, REGION_B)), 2,
     hdr(5, 1, struct.pack("<II", 2, 0) + REGIONS_RAW)),
    (R.SET_VRING_NUM, VringState(1, 256), 0, hdr(8, 1, state(1, 256))),
    (R.SET_VRING_ADDR, VringAddr(2, 0, 0x7F0000001000, 0x7F0000003000, 0x7F0000002000, 0), 0,
     hdr(9, 1, struct.pack("<IIQQQQ", 2, 0, 0x7F0000001000, 0x7F0000003000,
                           0x7F0000002000, 0))),
    (R.SET_VRING_BASE, VringState(0, 0xFFFF), 0, hdr(10, 1, state(0, 0xFFFF))),
    (R.GET_VRING_BASE, VringState(3, 0), 0, hdr(11, 1, state(3, 0))),
    (R.SET_VRING_KICK, 1, 1, hdr(12, 1, u64(1))),
    (R.SET_VRING_CALL, 0x100 | 2, 0, hdr(13, 1, u64(0x102))),
    (R.SET_VRING_ERR, 0, 1, hdr(14, 1, u64(0))),
    (R.GET_PROTOCOL_FEATURES, None, 0, hdr(15, 1, b"")),
    (R.SET_PROTOCOL_FEATURES, 0x10209, 0, hdr(16, 1, u64(0x10209))),
    (R.GET_QUEUE_NUM, None, 0, hdr(17, 1, b"")),
    (R.SET_VRING_ENABLE, VringState(1, 1), 0, hdr(18, 1, state(1, 1))),
    (R.GET_CONFIG, ConfigPayload(0, 0, bytes(6)), 0,
     hdr(24, 1, struct.pack("<III", 0, 6, 0) + bytes(6))),
    (R.SET_CONFIG, ConfigPayload(6, 1, b"\x01\x00"), 0,
     hdr(25, 1, struct.pack("<III", 6, 2, 1) + b"\x01\x00")),
    (R.RESET_DEVICE, None, 0, hdr(34, 1, b"")),
    (R.SET_STATUS, 0x0F, 0, hdr(39, 1, u64(0x0F))),
    (R.GET_STATUS, None, 0, hdr(40, 1, b"")),
    (R.SET_BACKEND_REQ_FD, None, 1, hdr(21, 1, b"")),  # the fd: the channel's socket
    # direction LOAD, phase STOPPED; the fd: the transfer pipe's read end
    (R.SET_DEVICE_STATE_FD, DeviceStateTransfer(1, 0), 1, hdr(42, 1, state(1, 0))),
    (R.CHECK_DEVICE_STATE, None, 0, hdr(43, 1, b"")),
]

# (request, kind, value, wire bytes): back-end replies (REPLY = 0x4).
REPLY_VECTORS = [
    (R.GET_FEATURES, PayloadKind.U64, 0x1_4000_0000, hdr(1, 5, u64(0x140000000))),
    (R.GET_PROTOCOL_FEATURES, PayloadKind.U64, 0x10209, hdr(15, 5, u64(0x10209))),
    (R.GET_QUEUE_NUM, PayloadKind.U64, 3, hdr(17, 5, u64(3))),
    (R.GET_VRING_BASE, PayloadKind.VRING_STATE, VringState(3, 77), hdr(11, 5, state(3, 77))),
    (R.GET_CONFIG, PayloadKind.CONFIG, ConfigPayload(0, 0, b"\x52\x54\x00\x12\x34\x56"),
     hdr(24, 5, struct.pack("<III", 0, 6, 0) + b"\x52\x54\x00\x12\x34\x56")),
    (R.GET_STATUS, PayloadKind.U64, 0x0F, hdr(40, 5, u64(0x0F))),
    (R.SET_MEM_TABLE, PayloadKind.U64, 0, hdr(5, 5, u64(0))),  # a REPLY_ACK
    (R.SET_VRING_NUM, PayloadKind.U64, 1, hdr(8, 5, u64(1))),  # a nack
    # success, bit 8 set: no fd of the back-end's own comes back
    (R.SET_DEVICE_STATE_FD, PayloadKind.U64, 0x100, hdr(42, 5, u64(0x100))),
    (R.CHECK_DEVICE_STATE, PayloadKind.U64, 22, hdr(43, 5, u64(22))),  # EINVAL
]


def feed_all(reader: MessageReader, data: bytes, fds=()):
    return feed_chunks(reader.feed, reader.want, data, fds)


@pytest.fixture
def eventfds():
    made = []

    def make(n):
        fds = [os.eventfd(0) for _ in range(n)]
        made.extend(fds)
        return fds
    yield make
    for fd in made:
        try:
            os.close(fd)
        except OSError:
            pass


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_vectors_cover_every_request_and_reply():
    assert {v[0] for v in REQUEST_VECTORS} == set(REQUEST_PAYLOAD)
    assert set(REPLY_PAYLOAD) <= {v[0] for v in REPLY_VECTORS}


@pytest.mark.parametrize(("request_", "payload", "nfds", "wire"), REQUEST_VECTORS,
                         ids=[v[0].name for v in REQUEST_VECTORS])
def test_request_vectors_two_way(request_, payload, nfds, wire, eventfds):
    assert encode_request(request_, payload) == wire
    fds = eventfds(nfds)
    message = feed_all(MessageReader(), wire, fds)
    assert (message.request, message.payload, message.fds) == (request_, payload, tuple(fds))
    assert not message.need_reply


@pytest.mark.parametrize(("request_", "kind", "value", "wire"), REPLY_VECTORS,
                         ids=[v[0].name for v in REPLY_VECTORS])
def test_reply_vectors_two_way(request_, kind, value, wire):
    assert encode_reply(request_, kind, value) == wire
    reader = MessageReader(replies=True, kind_of=lambda r, f: kind)
    message = feed_all(reader, wire)
    assert (message.request, message.payload, message.is_reply) == (request_, value, True)


def test_need_reply_flag_on_the_wire():
    wire = encode_request(R.SET_VRING_NUM, VringState(0, 8), need_reply=True)
    assert wire[4:8] == struct.pack("<I", 0x9)
    assert feed_all(MessageReader(), wire).need_reply


def test_protocol_feature_numbers_are_the_specs():
    spec = {"MQ": 0, "LOG_SHMFD": 1, "RARP": 2, "REPLY_ACK": 3, "NET_MTU": 4,
            "BACKEND_REQ": 5, "CROSS_ENDIAN": 6, "CRYPTO_SESSION": 7, "PAGEFAULT": 8,
            "CONFIG": 9, "BACKEND_SEND_FD": 10, "HOST_NOTIFIER": 11, "INFLIGHT_SHMFD": 12,
            "RESET_DEVICE": 13, "INBAND_NOTIFICATIONS": 14, "CONFIGURE_MEM_SLOTS": 15,
            "STATUS": 16, "XEN_MMAP": 17, "SHARED_OBJECT": 18, "DEVICE_STATE": 19}
    assert {f.name: int(f) for f in VhostUserProtocolFeature} == spec
    assert R.SET_VRING_ENABLE.spec_name == "VHOST_USER_SET_VRING_ENABLE"


def test_reader_reads_byte_by_byte_and_never_past_a_message():
    wire = encode_request(R.SET_VRING_NUM, VringState(0, 8)) + encode_request(R.GET_FEATURES)
    reader = MessageReader()
    got = []
    pos = 0
    while pos < len(wire):
        assert reader.want() >= 1
        m = reader.feed(wire[pos:pos + 1])
        pos += 1
        if m is not None:
            got.append(m.request)
    assert got == [R.SET_VRING_NUM, R.GET_FEATURES]
    assert reader.idle
    with pytest.raises(VhostUserLocalError, match="wants 12"):
        MessageReader().feed(bytes(13))


MALFORMED = [
    ("unknown code", hdr(99, 1, b""), 0, "unknown request code 99"),
    ("unsupported", hdr(6, 1, struct.pack("<QQ", 0, 0)), 0,
     r"unsupported request VHOST_USER_SET_LOG_BASE \(6\)"),
    ("version 0", hdr(1, 0, b""), 0, "version 0, only version 1 exists"),
    ("version 2", hdr(1, 2, b""), 0, "version 2"),
    ("reply flag on a request", hdr(1, 5, b""), 0, "REPLY flag set"),
    ("reserved flag", hdr(1, 0x11, b""), 0, "reserved flag bits 0x11"),
    ("u64 too short", hdr(2, 1, b"\x00" * 4), 0,
     "VHOST_USER_SET_FEATURES: payload size 4, a u64 payload is 8"),
    ("payload on GET_FEATURES", hdr(1, 1, u64(0)), 0, "payload size 8, a none payload is 0"),
    ("vring addr short", hdr(9, 1, bytes(32)), 0, "a vring address payload is 40"),
    ("nregions disagrees", hdr(5, 1, struct.pack("<II", 3, 0) + REGIONS_RAW), 2,
     "nregions 3 does not match a payload of 72 bytes"),
    ("nine regions", hdr(5, 1, struct.pack("<II", 9, 0) + bytes(32 * 9)), 0,
     r"payload size 296, a memory table payload is 8 \+ 32 \* nregions"),
    ("config size disagrees", hdr(24, 1, struct.pack("<III", 0, 8, 0) + bytes(6)), 0,
     "config size 8 does not match"),
    ("config window too big", hdr(25, 1, struct.pack("<III", 0, 257, 0) + bytes(257)), 0,
     "payload size 269"),
    ("mem table fds short", hdr(5, 1, struct.pack("<II", 2, 0) + REGIONS_RAW), 1,
     "2 regions need 2 fds, got 1"),
    ("kick without fd", hdr(12, 1, u64(0)), 0, r"VHOST_USER_SET_VRING_KICK: u64 0x0 needs 1 fd"),
    ("nofd call with fd", hdr(13, 1, u64(0x100)), 1, r"u64 0x100 needs 0 fd\(s\), got 1"),
    ("fd on SET_OWNER", hdr(3, 1, b""), 1, "VHOST_USER_SET_OWNER: carries no fds, got 1"),
    ("backend req fd missing", hdr(21, 1, b""), 0,
     r"VHOST_USER_SET_BACKEND_REQ_FD: needs 1 fd \(the channel's socket\), got 0"),
    ("backend req two fds", hdr(21, 1, b""), 2, "needs 1 fd .* got 2"),
    ("backend req payload", hdr(21, 1, u64(3)), 1, "payload size 8, a none payload is 0"),
    ("state fd missing", hdr(42, 1, state(0, 0)), 0,
     r"VHOST_USER_SET_DEVICE_STATE_FD: needs 1 fd \(the transfer channel's end\), got 0"),
    ("state params short", hdr(42, 1, struct.pack("<I", 0)), 1,
     "a device state transfer parameters payload is 8"),
    ("check with payload", hdr(43, 1, u64(0)), 0, "payload size 8, a none payload is 0"),
]


def test_reply_reader_refuses_a_request_and_fds():
    reader = MessageReader(replies=True, kind_of=lambda r, f: PayloadKind.U64)
    with pytest.raises(VhostUserRemoteError, match="REPLY flag clear where a reply was due"):
        feed_all(reader, hdr(1, 1, u64(0)))
    fd = os.eventfd(0)
    reader = MessageReader(replies=True, kind_of=lambda r, f: PayloadKind.U64)
    with pytest.raises(VhostUserRemoteError, match="reply: carries no fds, got 1"):
        feed_all(reader, hdr(1, 5, u64(0)), [fd])
    assert not is_open(fd)


def test_builders_refuse_what_does_not_fit():
    with pytest.raises(VhostUserLocalError, match="at most 8 regions"):
        encode_request(R.SET_MEM_TABLE, MemoryTable((REGION_A,) * 9))
    with pytest.raises(VhostUserLocalError, match="at most 256 bytes"):
        encode_request(R.SET_CONFIG, ConfigPayload(0, 0, bytes(257)))
    with pytest.raises(VhostUserLocalError, match="cannot lay out"):
        encode_request(R.SET_VRING_NUM, VringState(1 << 32, 0))
    with pytest.raises(VhostUserLocalError, match="not a request vxdp speaks"):
        encode_request(R.SET_LOG_BASE, 0)
    with pytest.raises(VhostUserLocalError, match="must be an int"):
        encode_request(R.SET_FEATURES, VringState(0, 0))


# -- the back-end request channel ----------------------------------------------------------

B = VhostUserBackendRequest


def test_backend_request_numbers_are_the_specs():
    # vhost-user.rst, "Back-end message types": their own numbering, from 1.
    spec = {"IOTLB_MSG": 1, "CONFIG_CHANGE_MSG": 2, "VRING_HOST_NOTIFIER_MSG": 3,
            "VRING_CALL": 4, "VRING_ERR": 5, "SHARED_OBJECT_ADD": 6,
            "SHARED_OBJECT_REMOVE": 7, "SHARED_OBJECT_LOOKUP": 8}
    assert {r.name: int(r) for r in B} == spec
    assert B.CONFIG_CHANGE_MSG.spec_name == "VHOST_USER_BACKEND_CONFIG_CHANGE_MSG"
    assert int(R.SET_BACKEND_REQ_FD) == 21
    assert set(BACKEND_REQUEST_PAYLOAD) == {B.CONFIG_CHANGE_MSG}


# (request, need_reply, wire): back-end requests; (request, ok, wire): front-end acks.
BACKEND_REQUEST_VECTORS = [
    (B.CONFIG_CHANGE_MSG, False, hdr(2, 1, b"")),
    (B.CONFIG_CHANGE_MSG, True, hdr(2, 9, b"")),
]
BACKEND_ACK_VECTORS = [
    (B.CONFIG_CHANGE_MSG, True, hdr(2, 5, u64(0))),
    (B.CONFIG_CHANGE_MSG, False, hdr(2, 5, u64(1))),
]


@pytest.mark.parametrize(("request_", "need_reply", "wire"), BACKEND_REQUEST_VECTORS)
def test_backend_request_vectors_two_way(request_, need_reply, wire):
    assert encode_backend_request(request_, need_reply=need_reply) == wire
    message = feed_all(BackendChannelReader(), wire)
    assert (message.request, message.payload, message.need_reply) == (request_, None, need_reply)


@pytest.mark.parametrize(("request_", "ok", "wire"), BACKEND_ACK_VECTORS)
def test_backend_ack_vectors_two_way(request_, ok, wire):
    assert encode_backend_ack(request_, ok) == wire
    reader = BackendChannelReader(replies=True, kind_of=lambda r, f: PayloadKind.U64)
    message = feed_all(reader, wire)
    assert (message.request, message.payload) == (request_, 0 if ok else 1)


BACKEND_MALFORMED = [
    ("unknown code", hdr(0, 1, b""), 0, "unknown back-end request code 0"),
    ("front-end numbering", hdr(24, 1, b""), 0, "unknown back-end request code 24"),
    ("iotlb never negotiated", hdr(1, 1, bytes(32)), 0,
     r"unsupported back-end request VHOST_USER_BACKEND_IOTLB_MSG \(1\)"),
    ("host notifier never negotiated", hdr(3, 1, bytes(24)), 1,
     "unsupported back-end request VHOST_USER_BACKEND_VRING_HOST_NOTIFIER_MSG"),
    ("payload on config change", hdr(2, 1, u64(0)), 0,
     "VHOST_USER_BACKEND_CONFIG_CHANGE_MSG: payload size 8, a none payload is 0"),
    ("reply flag on a request", hdr(2, 5, b""), 0, "REPLY flag set where a request was due"),
    ("version 0", hdr(2, 8, b""), 0, "version 0, only version 1 exists"),
    ("fd on config change", hdr(2, 1, b""), 1,
     r"carries no fds \(BACKEND_SEND_FD is not negotiated\), got 1"),
]


@pytest.mark.parametrize(("reader_class", "wire", "nfds", "message"),
                         [(MessageReader, *m[1:]) for m in MALFORMED]
                         + [(BackendChannelReader, *m[1:]) for m in BACKEND_MALFORMED],
                         ids=[m[0] for m in MALFORMED]
                         + [f"back-end {m[0]}" for m in BACKEND_MALFORMED])
def test_malformed_requests_are_refused_and_their_fds_closed(reader_class, wire, nfds,
                                                             message, eventfds):
    fds = eventfds(nfds)
    reader = reader_class()
    with pytest.raises(VhostUserRemoteError, match=message):
        feed_all(reader, wire, fds)
    assert not any(is_open(fd) for fd in fds)
    with pytest.raises(VhostUserLocalError, match="already failed"):
        reader.feed(b"\x00")


def test_backend_ack_reader_refuses_a_short_ack_and_a_request():
    reader = BackendChannelReader(replies=True, kind_of=lambda r, f: PayloadKind.U64)
    with pytest.raises(VhostUserRemoteError, match="payload size 4, a u64 payload is 8"):
        feed_all(reader, hdr(2, 5, b"\x00" * 4))
    reader = BackendChannelReader(replies=True, kind_of=lambda r, f: PayloadKind.U64)
    with pytest.raises(VhostUserRemoteError, match="REPLY flag clear where a reply was due"):
        feed_all(reader, hdr(2, 1, u64(0)))
    with pytest.raises(VhostUserLocalError, match="not a back-end request vxdp speaks"):
        encode_backend_request(B.IOTLB_MSG)
