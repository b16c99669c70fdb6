"""The back-end state machine: order and value rules, each refusal naming the rule."""

import os
import struct

import pytest

from vxdp.errors import VhostUserLocalError, VhostUserRemoteError
from vxdp.vhost_user import events as ev
from vxdp.vhost_user.backend import Backend, BackendConfig
from vxdp.vhost_user.frontend import Frontend, Outgoing, check_ack, device_state_errno
from vxdp.vhost_user.messages import (
    MemoryRegionDesc,
    MemoryTable,
    VhostUserProtocolFeature,
    VhostUserRequest,
    VringAddr,
    VringState,
    encode_request,
)

from .conftest import feed_chunks

PF = VhostUserProtocolFeature
R = VhostUserRequest
VERSION_1, PROTOCOL, EVENT_IDX, PACKED = 1 << 32, 1 << 30, 1 << 29, 1 << 34
ALL_PF = (1 << PF.MQ) | (1 << PF.REPLY_ACK) | (1 << PF.CONFIG) | (1 << PF.STATUS) | \
    (1 << PF.RESET_DEVICE)
UVA = 0x7F00_0000_0000
REGION = MemoryRegionDesc(0x0, 0x10_0000, UVA, 0)
# split ring of 256 at gpa 0x1000 (desc), 0x2000 (avail), 0x3000 (used)
DESC, AVAIL, USED = UVA + 0x1000, UVA + 0x2000, UVA + 0x3000


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


class Session:
    """A front-end core and a back-end core joined in memory, as the edge would join them."""

    def __init__(self, *, features=VERSION_1 | PROTOCOL | EVENT_IDX | PACKED,
                 protocol_features=ALL_PF, queue_num=3, config_size=12, vrings=3):
        self.backend = Backend(BackendConfig(features, protocol_features, queue_num,
                                             config_size=config_size, vrings=vrings))
        self.front = Frontend()
        self.events: list[ev.BackendEvent] = []
        self.fds: list[int] = []

    def eventfd(self) -> int:
        fd = os.eventfd(0)
        self.fds.append(fd)
        return fd

    def send(self, out: Outgoing, answer=None, *, ok=True):
        data, fds, pos, event = out.data, list(out.fds), 0, None
        while pos < len(data):
            n = self.backend.want()
            event = self.backend.receive_data(data[pos:pos + n], fds)
            fds, pos = [], pos + n
        assert event is not None
        self.events.append(event)
        reply_bytes = self.backend.respond(event, answer, ok=ok)
        if not out.expects_reply:
            assert reply_bytes == b""
            return event, None
        reply, pos = None, 0
        while pos < len(reply_bytes):
            n = self.front.want()
            reply = self.front.receive_data(reply_bytes[pos:pos + n])
            pos += n
        assert reply is not None and pos == len(reply_bytes)
        return event, reply

    def open(self, features=VERSION_1 | PROTOCOL, proto=ALL_PF):
        self.send(self.front.get_features())
        self.send(self.front.get_protocol_features())
        self.send(self.front.set_protocol_features(proto))
        self.send(self.front.set_owner())
        self.send(self.front.set_features(features))
        return self

    def mem(self):
        self.send(self.front.set_mem_table(MemoryTable((REGION,)), [self.eventfd()]))
        return self

    def num(self, index=0, num=256):
        self.send(self.front.set_vring_num(index, num))
        return self

    def addr(self, index=0):
        self.send(self.front.set_vring_addr(index, DESC, AVAIL, USED))
        return self

    def started(self, index=0):
        self.mem().num(index).addr(index)
        self.send(self.front.set_vring_kick(index, self.eventfd()))
        return self

    def retired(self):
        """The back-end's retired fds, closed as the edge would close them."""
        fds = self.backend.take_retired()
        for fd in fds:
            os.close(fd)
        return fds

    def close(self):
        for fd in self.backend.close():
            os.close(fd)


@pytest.fixture
def s():
    session = Session()
    yield session
    session.close()


def test_qemu_sequence_events_and_replies(s):
    _, r = s.send(s.front.get_features())
    assert r.value == VERSION_1 | PROTOCOL | EVENT_IDX | PACKED
    _, r = s.send(s.front.get_protocol_features())
    assert r.value == ALL_PF
    s.send(s.front.set_protocol_features(ALL_PF))
    _, r = s.send(s.front.get_queue_num())
    assert r.value == 3
    s.send(s.front.set_owner())
    e, r = s.send(s.front.set_features(VERSION_1 | PROTOCOL | EVENT_IDX))
    assert e == ev.FeaturesSet(VERSION_1 | PROTOCOL | EVENT_IDX) and (r.ack, r.value) == (True, 0)
    mem_fd = s.eventfd()
    e, _ = s.send(s.front.set_mem_table(MemoryTable((REGION,)), [mem_fd]))
    assert e == ev.MemTableSet(MemoryTable((REGION,)), (mem_fd,))
    assert s.retired() == [mem_fd]  # mapped while handling; then retired
    kick, call = s.eventfd(), s.eventfd()
    for out in s.front.vring_setup(0, 256, DESC, AVAIL, USED, base=5, kick=kick, call=call):
        s.send(out)
    assert s.events[-6:] == [ev.VringNumSet(0, 256), ev.VringBaseSet(0, 5),
                             ev.VringAddrSet(0, 0x1000, 0x2000, 0x3000, packed=False),
                             ev.VringKickSet(0, kick), ev.VringCallSet(0, call),
                             ev.VringEnableSet(0, True)]
    vring = s.backend.vrings[0]
    assert (vring.started, vring.enabled, vring.kick, vring.call) == (True, True, kick, call)
    e, r = s.send(s.front.get_config(0, 6), b"\x52\x54\x00\x12\x34\x56")
    assert e == ev.ConfigQueried(0, 6, 0) and r.value.data == b"\x52\x54\x00\x12\x34\x56"
    s.send(s.front.set_status(0x0F))
    e, r = s.send(s.front.get_status(), 0x0F)
    assert isinstance(e, ev.StatusQueried) and r.value == 0x0F
    e, r = s.send(s.front.get_vring_base(0), 42)
    assert e == ev.VringBaseQueried(0) and r.value == VringState(0, 42)
    assert not s.backend.vrings[0].started
    assert s.retired() == [kick]  # a stopped ring's kick fd is retired


def test_rings_enabled_without_protocol_features_disabled_with(s):
    s.open(features=VERSION_1)
    assert all(v.enabled for v in s.backend.vrings)
    t = Session()
    try:
        t.open(features=VERSION_1 | PROTOCOL)
        assert not any(v.enabled for v in t.backend.vrings)
    finally:
        t.close()


def test_packed_ring_areas(s):
    s.open(features=VERSION_1 | PROTOCOL | PACKED).mem().num()
    e, _ = s.send(s.front.set_vring_addr(0, DESC, UVA + 0x5000, UVA + 0x5004))
    assert e == ev.VringAddrSet(0, 0x1000, 0x5000, 0x5004, packed=True)
    e, _ = s.send(s.front.set_vring_base(0, 0x8000 | 7))  # wrap counter in bit 15
    assert e == ev.VringBaseSet(0, 0x8007)


def test_reply_ack_success_and_device_refusal(s):
    s.open()
    out = s.front.set_status(0x80)
    assert out.data[4:8] == struct.pack("<I", 0x9)  # version | NEED_REPLY
    _, r = s.send(out, ok=False)
    assert (r.ack, r.value) == (True, 1)
    with pytest.raises(VhostUserRemoteError, match="back-end refused VHOST_USER_SET_STATUS"):
        check_ack(r)
    _, r = s.send(s.front.set_status(0x01))
    check_ack(r)


def test_no_ack_without_reply_ack_negotiated(s):
    s.open(proto=1 << PF.STATUS)
    out = s.front.set_status(1)
    assert not out.expects_reply
    s.send(out)  # asserts the back-end owes nothing


def test_reset_device_retires_fds_and_forgets_rings(s):
    s.open().started(0)
    s.retired()  # the memory table's fd
    call = s.eventfd()
    s.send(s.front.set_vring_call(1, call))
    e, _ = s.send(s.front.reset_device())
    assert e == ev.DeviceReset(R.RESET_DEVICE)
    assert sorted(s.retired()) == sorted([s.fds[1], call])
    assert s.backend.features is None and not s.backend.vrings[0].started
    with pytest.raises(VhostUserRemoteError, match="before VHOST_USER_SET_FEATURES"):
        s.send(s.front.set_vring_addr(0, DESC, AVAIL, USED))


def test_replaced_fds_are_retired_and_close_retires_the_rest(s):
    s.open()
    a, b, err = s.eventfd(), s.eventfd(), s.eventfd()
    s.send(s.front.set_vring_call(2, a))
    s.send(s.front.set_vring_call(2, b))
    assert s.retired() == [a]
    s.send(s.front.set_vring_err(2, err))
    s.send(s.front.set_vring_call(2, None))  # polling: no fd
    assert s.retired() == [b]
    assert s.backend.close() == [err]
    os.close(err)


def test_respond_must_answer_the_pending_message(s):
    e, _ = s.send(s.front.get_features())
    with pytest.raises(VhostUserLocalError, match="not the message awaiting a reply"):
        s.backend.respond(e)
    s.open()
    s.backend.receive_data(encode_request(R.GET_STATUS))
    with pytest.raises(VhostUserLocalError, match="respond to VHOST_USER_GET_STATUS"):
        s.backend.receive_data(b"")
    with pytest.raises(VhostUserLocalError, match="status must be a byte"):
        s.backend.respond(s.backend._pending.event, 0x100)


def _addr_outside(s):
    s.open().mem().num()
    return s.front.set_vring_addr(0, UVA + 0xFF800, AVAIL, USED)  # 2 KiB of desc past the end


REFUSALS = [
    ("SET_FEATURES before owner",
     lambda s: s.front.set_features(VERSION_1),
     "VHOST_USER_SET_FEATURES before VHOST_USER_SET_OWNER"),
    ("features not offered",
     lambda s: (s.send(s.front.set_owner()), s.front.set_features(VERSION_1 | 1 << 5))[1],
     "VHOST_USER_SET_FEATURES: bits 0x20 were not offered"),
    ("protocol features not offered",
     lambda s: s.front.set_protocol_features(1 << PF.PAGEFAULT),
     "VHOST_USER_SET_PROTOCOL_FEATURES: bits 0x100 were not offered"),
    ("GET_QUEUE_NUM without MQ",
     lambda s: s.front.get_queue_num(),
     r"VHOST_USER_GET_QUEUE_NUM without protocol feature VHOST_USER_PROTOCOL_F_MQ \(0\)"),
    ("SET_VRING_ADDR before SET_MEM_TABLE",
     lambda s: (s.open().num(), s.front.set_vring_addr(0, DESC, AVAIL, USED))[1],
     "VHOST_USER_SET_VRING_ADDR before VHOST_USER_SET_MEM_TABLE"),
    ("SET_VRING_ADDR before SET_VRING_NUM",
     lambda s: (s.open().mem(), s.front.set_vring_addr(1, DESC, AVAIL, USED))[1],
     "vring 1 before VHOST_USER_SET_VRING_NUM"),
    ("vring index >= queue count",
     lambda s: (s.open(), s.front.set_vring_num(3, 256))[1],
     "VHOST_USER_SET_VRING_NUM: vring index 3 >= queue count 3"),
    ("kick index >= queue count",
     lambda s: (s.open(), s.front.set_vring_kick(200, s.eventfd()))[1],
     "vring index 200 >= queue count 3"),
    ("num not a power of two",
     lambda s: (s.open(), s.front.set_vring_num(0, 384))[1],
     r"vring 0 size 384 is not a power of two in 1..32768 \(virtio 1.3 §2.7\)"),
    ("num above 32768",
     lambda s: (s.open(), s.front.set_vring_num(0, 65536))[1],
     "size 65536 is not a power of two in 1..32768"),
    ("num zero",
     lambda s: (s.open(), s.front.set_vring_num(0, 0))[1],
     "size 0 is not a power of two"),
    ("addresses outside every region", _addr_outside,
     "vring 0 descriptor area 0x7f00000ff800\\+0x1000 is outside every memory region"),
    ("used ring misaligned",
     lambda s: (s.open().mem().num(), s.front.set_vring_addr(0, DESC, AVAIL, USED + 2))[1],
     "used area at 0x3002 is not 4-byte aligned"),
    ("logging flag",
     lambda s: (s.open().mem().num(),
                s.front.request(R.SET_VRING_ADDR, VringAddr(0, 1, DESC, USED, AVAIL, 0)))[1],
     "flags 0x1; logging"),
    ("kick before addr",
     lambda s: (s.open().mem().num(), s.front.set_vring_kick(0, s.eventfd()))[1],
     "VHOST_USER_SET_VRING_KICK: vring 0 started before VHOST_USER_SET_VRING_ADDR"),
    ("num while started",
     lambda s: (s.open().started(0), s.front.set_vring_num(0, 128))[1],
     "vring 0 is started; stop it with VHOST_USER_GET_VRING_BASE first"),
    ("features change while started",
     lambda s: (s.open().started(0), s.front.set_features(VERSION_1))[1],
     "features change while vring 0 is started"),
    ("split base above 16 bits",
     lambda s: (s.open(), s.front.set_vring_base(0, 0x10000))[1],
     "base 65536 is not a 16-bit ring index"),
    ("enable not 0 or 1",
     lambda s: (s.open(), s.front.request(R.SET_VRING_ENABLE, VringState(0, 2)))[1],
     "vring 0 num 2 is not 0 or 1"),
    ("enable without VHOST_USER_F_PROTOCOL_FEATURES",
     lambda s: (s.open(features=VERSION_1), s.front.set_vring_enable(0, True))[1],
     "VHOST_USER_SET_VRING_ENABLE without VHOST_USER_F_PROTOCOL_FEATURES negotiated"),
    ("reserved bits in the vring file u64",
     lambda s: (s.open(), s.front.request(R.SET_VRING_CALL, 0x1200 | 1, [s.eventfd()]))[1],
     "VHOST_USER_SET_VRING_CALL: reserved bits 0x1200 set"),
    ("config without CONFIG",
     lambda s: (s.open(proto=0), s.front.get_config(0, 6))[1],
     "VHOST_USER_GET_CONFIG without protocol feature VHOST_USER_PROTOCOL_F_CONFIG"),
    ("config window outside",
     lambda s: (s.open(), s.front.set_config(8, bytes(6)))[1],
     "VHOST_USER_SET_CONFIG: window 8\\+6 is not inside the 12-byte config space"),
    ("config flags",
     lambda s: (s.open(), s.front.get_config(0, 4, flags=2))[1],
     "flags 2 is neither FRONTEND nor MIGRATION"),
    ("status without STATUS",
     lambda s: (s.open(proto=0), s.front.set_status(1))[1],
     "VHOST_USER_SET_STATUS without protocol feature VHOST_USER_PROTOCOL_F_STATUS"),
    ("status above a byte",
     lambda s: (s.open(), s.front.set_status(0x100))[1],
     "0x100 is not an 8-bit device status"),
    ("reset device without RESET_DEVICE",
     lambda s: (s.open(proto=0), s.front.request(R.RESET_DEVICE))[1],
     "without protocol feature VHOST_USER_PROTOCOL_F_RESET_DEVICE"),
    ("empty memory table",
     lambda s: (s.open(), s.front.set_mem_table(MemoryTable(()), []))[1],
     "0 regions, want 1..8"),
    ("overlapping regions",
     lambda s: (s.open(), s.front.set_mem_table(MemoryTable((
         REGION, MemoryRegionDesc(0x8_0000, 0x1000, UVA + 0x20_0000, 0))),
         [s.eventfd(), s.eventfd()]))[1],
     "regions 0 and 1 overlap in guest_phys_addr"),
]


@pytest.mark.parametrize(("make", "message"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refusals_name_the_rule(s, make, message):
    out = make(s)
    with pytest.raises(VhostUserRemoteError, match=message):
        s.send(out)
    assert not any(is_open(fd) for fd in out.fds)  # a refused message's fds are closed


def test_protocol_features_need_bit_30_offered():
    s = Session(features=VERSION_1, protocol_features=0)
    with pytest.raises(VhostUserRemoteError,
                       match="VHOST_USER_GET_PROTOCOL_FEATURES: VHOST_USER_F_PROTOCOL_FEATURES"):
        s.send(s.front.get_protocol_features())
    s.close()


def test_refusal_carries_a_nack_when_an_ack_was_asked(s):
    s.open()
    out = s.front.set_vring_num(0, 3)
    with pytest.raises(VhostUserRemoteError) as info:
        s.send(out)
    assert info.value.reply == struct.pack("<IIIQ", 8, 0x5, 8, 1)


def test_unsupported_request_named(s):
    wire = struct.pack("<IIIQQ", 6, 1, 16, 0, 0)  # SET_LOG_BASE, a valid layout we never offer
    with pytest.raises(VhostUserRemoteError, match=r"VHOST_USER_SET_LOG_BASE \(6\)"):
        s.backend.receive_data(wire[:12])


def test_config_checks_its_values():
    with pytest.raises(VhostUserLocalError, match="need VHOST_USER_F_PROTOCOL_FEATURES"):
        BackendConfig(VERSION_1, 1)
    with pytest.raises(VhostUserLocalError, match="queue_num 0"):
        BackendConfig(VERSION_1, queue_num=0)
    with pytest.raises(VhostUserLocalError, match="vrings 257"):
        BackendConfig(VERSION_1, queue_num=128, vrings=257)


def test_get_queue_num_answers_pairs_while_vrings_bound_the_index():
    """A net back-end: GET_QUEUE_NUM counts queue pairs (QEMU net/vhost-user.c compares
    it with the netdev's queues=, DPDK answers VHOST_MAX_QUEUE_PAIRS); its vrings are
    2 per pair and the control queue."""
    s = Session(queue_num=2, vrings=5)
    try:
        s.send(s.front.get_protocol_features())
        s.send(s.front.set_protocol_features(ALL_PF))
        _, r = s.send(s.front.get_queue_num())
        assert r.value == 2 and s.front.queue_num == 2
        assert len(s.backend.vrings) == 5
        s.send(s.front.set_owner())
        e, _ = s.send(s.front.set_vring_num(4, 64))  # the control queue's index exists
        assert e == ev.VringNumSet(4, 64)
        with pytest.raises(VhostUserRemoteError, match="vring index 5 >= queue count 5"):
            s.send(s.front.set_vring_num(5, 64))
    finally:
        s.close()


def test_memory_table_replaced_while_running_keeps_rings_in_it(s):
    s.open().started(0)
    moved = MemoryRegionDesc(0x0, 0x10_0000, UVA + 0x1000_0000, 0)
    with pytest.raises(VhostUserRemoteError, match="outside every memory region"):
        s.send(s.front.set_mem_table(MemoryTable((moved,)), [s.eventfd()]))


# -- the back-end request channel (BACKEND_REQ) --------------------------------------------

CHANNEL_PF = ALL_PF | (1 << PF.BACKEND_REQ)


def feed_acks(channel, data: bytes):
    return feed_chunks(channel.receive_data, channel.want, data)


def channel_session(proto=CHANNEL_PF) -> Session:
    s = Session(protocol_features=CHANNEL_PF)
    s.send(s.front.get_features())
    s.send(s.front.get_protocol_features())
    s.send(s.front.set_protocol_features(proto))
    return s


def test_backend_req_fd_before_set_owner_as_qemu_sends_it():
    s = channel_session()
    try:
        sock = s.eventfd()  # the core sees an fd; that it is a socket is the edge's check
        event, reply = s.send(s.front.set_backend_req_fd(sock))
        assert isinstance(event, ev.BackendChannelSet) and event.fd == sock
        assert reply is not None and reply.ack and reply.value == 0
        assert s.backend.channel.fd == sock and not s.backend.owner
        # a second one replaces the first, which is retired
        event, _ = s.send(s.front.set_backend_req_fd(other := s.eventfd()))
        assert s.retired() == [sock] and s.backend.channel.fd == other
    finally:
        fds = s.backend.close()
        assert other in fds
        for fd in fds:
            os.close(fd)


def test_backend_req_fd_needs_the_feature_negotiated():
    s = channel_session(proto=ALL_PF)
    fd = os.eventfd(0)
    data = encode_request(R.SET_BACKEND_REQ_FD)
    with pytest.raises(VhostUserRemoteError,
                       match="VHOST_USER_SET_BACKEND_REQ_FD without protocol feature "
                             r"VHOST_USER_PROTOCOL_F_BACKEND_REQ \(5\) negotiated") as info:
        s.backend.receive_data(data, [fd])
    assert not is_open(fd)
    assert info.value.reply == b""  # no ack asked
    with pytest.raises(VhostUserLocalError, match="PROTOCOL_F_BACKEND_REQ"):
        s.front.set_backend_req_fd(0)
    s.close()


def test_config_change_bytes_ack_and_the_rules_for_sending_it():
    s = channel_session()
    with pytest.raises(VhostUserLocalError, match="before VHOST_USER_SET_BACKEND_REQ_FD"):
        s.backend.config_change()
    assert not s.backend.can_signal_config
    s.send(s.front.set_backend_req_fd(s.eventfd()))
    assert s.backend.can_signal_config
    wire = s.backend.config_change()
    # CONFIG_CHANGE_MSG is back-end request 2; NEED_REPLY (0x8) since REPLY_ACK is on
    assert wire == struct.pack("<III", 2, 0x9, 0)
    channel = s.backend.channel
    assert channel.awaiting
    ack = feed_acks(channel, struct.pack("<IIIQ", 2, 0x5, 8, 0))
    assert ack.ok and not channel.awaiting
    s.backend.config_change()
    ack = feed_acks(channel, struct.pack("<IIIQ", 2, 0x5, 8, 1))
    assert (ack.ok, ack.value) == (False, 1)
    s.close()


def test_config_change_without_reply_ack_asks_nothing_and_refuses_acks():
    s = channel_session(proto=(1 << PF.CONFIG) | (1 << PF.BACKEND_REQ))
    s.send(s.front.set_backend_req_fd(s.eventfd()))
    assert s.backend.config_change() == struct.pack("<III", 2, 0x1, 0)
    with pytest.raises(VhostUserRemoteError, match="unsolicited reply to "
                                                   "VHOST_USER_BACKEND_CONFIG_CHANGE_MSG"):
        feed_acks(s.backend.channel, struct.pack("<IIIQ", 2, 0x5, 8, 0))
    s.close()


def test_config_change_needs_config_negotiated():
    s = channel_session(proto=(1 << PF.REPLY_ACK) | (1 << PF.BACKEND_REQ))
    s.send(s.front.set_backend_req_fd(s.eventfd()))
    assert not s.backend.can_signal_config
    with pytest.raises(VhostUserLocalError,
                       match=r"without protocol feature VHOST_USER_PROTOCOL_F_CONFIG \(9\)"):
        s.backend.config_change()
    s.close()


@pytest.mark.parametrize(("wire", "message"), [
    (struct.pack("<IIIQ", 2, 0x5, 8, 0)[:-4], None),  # short: checked by size below
    (struct.pack("<III", 2, 0x5, 4) + bytes(4), "payload size 4, a u64 payload is 8"),
    (struct.pack("<IIIQ", 1, 0x5, 8, 0),
     "reply to VHOST_USER_BACKEND_IOTLB_MSG while one to "
     "VHOST_USER_BACKEND_CONFIG_CHANGE_MSG is due"),
    (struct.pack("<IIIQ", 2, 0x1, 8, 0), "REPLY flag clear where a reply was due"),
    (struct.pack("<IIIQ", 9, 0x5, 8, 0), "unknown back-end request code 9"),
])
def test_malformed_acks_are_refused(wire, message):
    s = channel_session()
    s.send(s.front.set_backend_req_fd(s.eventfd()))
    s.backend.config_change()
    channel = s.backend.channel
    if message is None:  # a partial ack is no ack yet
        assert feed_acks(channel, wire) is None and channel.awaiting
    else:
        with pytest.raises(VhostUserRemoteError, match=message):
            feed_acks(channel, wire)
        s.backend.drop_channel()  # what the edge does: the session goes on without it
        assert s.backend.channel is None and len(s.retired()) == 1
        s.send(s.front.get_features())
    s.close()


def test_device_state_transfer_needs_the_feature_and_says_whether_suspended():
    """SET_DEVICE_STATE_FD / CHECK_DEVICE_STATE (vhost-user.rst "Migrating back-end
    state"): the device answers an errno, which the reply carries in bits 0-7 with bit 8
    set (no channel of the back-end's own); the fd is the back-end's until answered."""
    s = Session(protocol_features=ALL_PF | 1 << PF.DEVICE_STATE)
    try:
        s.open(proto=ALL_PF | 1 << PF.DEVICE_STATE).started(0)
        s.retired()
        rfd, wfd = os.pipe()
        e, r = s.send(s.front.set_device_state_fd(0, wfd), 16)  # EBUSY: a ring runs
        assert e == ev.DeviceStateFdSet(0, 0, wfd, suspended=False)
        assert r.value == 0x110 and device_state_errno(r) == 16
        assert s.retired() == [wfd]
        s.send(s.front.get_vring_base(0), 0)
        s.retired()
        wfd = os.dup(rfd)
        e, r = s.send(s.front.set_device_state_fd(1, wfd), 0)
        assert e == ev.DeviceStateFdSet(1, 0, wfd, suspended=True)
        assert r.value == 0x100 and device_state_errno(r) == 0
        e, r = s.send(s.front.check_device_state(), 22)
        assert isinstance(e, ev.DeviceStateChecked) and device_state_errno(r) == 22
        with pytest.raises(VhostUserLocalError, match="an errno below 256"):
            s.send(s.front.set_device_state_fd(0, s.eventfd()), 0x100)
    finally:
        s.close()
        os.close(rfd)


def test_device_state_without_the_protocol_feature_breaks_the_session(s):
    s.open()
    with pytest.raises(VhostUserLocalError, match="VHOST_USER_PROTOCOL_F_DEVICE_STATE"):
        s.front.set_device_state_fd(0, 99)
    raw = encode_request(R.CHECK_DEVICE_STATE)
    with pytest.raises(VhostUserRemoteError, match="without protocol feature "
                                                   "VHOST_USER_PROTOCOL_F_DEVICE_STATE"):
        feed_chunks(s.backend.receive_data, s.backend.want, raw, [])
