"""The front-end core: QEMU's request sequence, strict reply parsing."""

import struct

import pytest

from vxdp.errors import VhostUserLocalError, VhostUserRemoteError
from vxdp.vhost_user.frontend import Frontend, check_ack
from vxdp.vhost_user.messages import (
    ConfigPayload,
    MessageReader,
    PayloadKind,
    VhostUserRequest,
    VringState,
    encode_reply,
)

from .conftest import feed_chunks

R = VhostUserRequest
REPLY_ACK_ONLY = 1 << 3


def feed(front: Frontend, data: bytes):
    reply, pos = None, 0
    while pos < len(data):
        n = front.want()
        reply = front.receive_data(data[pos:pos + n])
        pos += n
    return reply


def requests_of(outs):
    reader = MessageReader()
    got = []
    for out in outs:
        pos = 0
        while pos < len(out.data):
            n = reader.want()
            m = reader.feed(out.data[pos:pos + n], out.fds if pos == 0 else ())
            pos += n
        got.append((m.request, m.need_reply))
    return got


def test_vring_setup_follows_qemu_order():
    front = Frontend()
    front.set_features((1 << 32) | (1 << 30))
    outs = front.vring_setup(1, 256, 0x1000, 0x2000, 0x3000, base=3, kick=None, call=None)
    assert [r for r, _ in requests_of(outs)] == [
        R.SET_VRING_NUM, R.SET_VRING_BASE, R.SET_VRING_ADDR, R.SET_VRING_KICK,
        R.SET_VRING_CALL, R.SET_VRING_ENABLE]
    front = Frontend()
    front.set_features(1 << 32)  # no protocol features: rings are enabled already
    outs = front.vring_setup(0, 8, 0x1000, 0x2000, 0x3000, kick=None, call=None)
    assert R.SET_VRING_ENABLE not in [r for r, _ in requests_of(outs)]


def test_acks_asked_once_reply_ack_is_negotiated():
    front = Frontend()
    first = front.set_protocol_features(REPLY_ACK_ONLY)
    assert not first.expects_reply  # the feature takes effect from the next request
    out = front.set_owner()
    assert out.expects_reply and requests_of([out]) == [(R.SET_OWNER, True)]
    reply = feed(front, encode_reply(R.SET_OWNER, PayloadKind.U64, 0))
    assert reply.ack and reply.value == 0
    check_ack(reply)
    get = front.get_features()  # has a reply of its own: no NEED_REPLY
    assert requests_of([get]) == [(R.GET_FEATURES, False)]


def test_replies_update_what_the_frontend_knows():
    front = Frontend()
    front.get_features()
    front.get_protocol_features()
    front.get_queue_num()
    feed(front, encode_reply(R.GET_FEATURES, PayloadKind.U64, 1 << 32))
    feed(front, encode_reply(R.GET_PROTOCOL_FEATURES, PayloadKind.U64, 0x201))
    feed(front, encode_reply(R.GET_QUEUE_NUM, PayloadKind.U64, 3))
    assert (front.offered_features, front.offered_protocol_features, front.queue_num) == \
        (1 << 32, 0x201, 3)
    assert not front.awaiting


BAD_REPLIES = [
    ("unsolicited", lambda f: None,
     encode_reply(R.GET_FEATURES, PayloadKind.U64, 0), "unsolicited reply to VHOST_USER_GET"),
    ("wrong request", lambda f: f.get_features(),
     encode_reply(R.GET_STATUS, PayloadKind.U64, 0),
     "reply to VHOST_USER_GET_STATUS while one to VHOST_USER_GET_FEATURES is due"),
    ("wrong size", lambda f: f.get_features(),
     struct.pack("<IIII", 1, 5, 4, 0), "payload size 4, a u64 payload is 8"),
    ("other vring", lambda f: f.get_vring_base(2),
     encode_reply(R.GET_VRING_BASE, PayloadKind.VRING_STATE, VringState(1, 0)),
     "vring 1, vring 2 was asked"),
    ("other window", lambda f: f.get_config(0, 6),
     encode_reply(R.GET_CONFIG, PayloadKind.CONFIG, ConfigPayload(0, 0, bytes(4))),
     r"window 0\+4, 0\+6 was asked"),
    ("not a reply", lambda f: f.get_features(),
     struct.pack("<IIIQ", 1, 1, 8, 0), "REPLY flag clear where a reply was due"),
]


@pytest.mark.parametrize(("ask", "wire", "message"), [b[1:] for b in BAD_REPLIES],
                         ids=[b[0] for b in BAD_REPLIES])
def test_bad_replies_are_refused(ask, wire, message):
    front = Frontend()
    ask(front)
    with pytest.raises(VhostUserRemoteError, match=message):
        feed(front, wire)


def test_builders_refuse_local_mistakes():
    front = Frontend()
    with pytest.raises(VhostUserLocalError, match="1 regions need as many fds, got 0"):
        from vxdp.vhost_user.messages import MemoryRegionDesc, MemoryTable
        front.set_mem_table(MemoryTable((MemoryRegionDesc(0, 4096, 0, 0),)), [])
    with pytest.raises(VhostUserLocalError, match="vring index 256 does not fit"):
        front.set_vring_call(256, None)
    with pytest.raises(VhostUserLocalError, match="not a request vxdp speaks"):
        front.request(R.SET_LOG_BASE, 0)


# -- the back-end request channel: the front-end's side -----------------------------------

def channel_of(proto: int):
    front = Frontend()
    front.set_protocol_features(proto)
    return front.backend_requests()


def feed_requests(requests, data: bytes):
    return feed_chunks(requests.receive_data, requests.want, data)


BACKEND_REQ, CONFIG, REPLY_ACK = 1 << 5, 1 << 9, 1 << 3


def test_config_change_is_taken_and_acked_as_asked():
    requests = channel_of(BACKEND_REQ | CONFIG | REPLY_ACK)
    message = feed_requests(requests, struct.pack("<III", 2, 0x9, 0))
    assert message.request.spec_name == "VHOST_USER_BACKEND_CONFIG_CHANGE_MSG"
    assert message.need_reply and not requests.idle
    with pytest.raises(VhostUserLocalError, match=r"respond to .*CONFIG_CHANGE_MSG"):
        requests.receive_data(b"\x00")
    assert requests.respond(message, True) == struct.pack("<IIIQ", 2, 0x5, 8, 0)
    assert requests.idle
    with pytest.raises(VhostUserLocalError, match="not the back-end request awaiting"):
        requests.respond(message)
    message = feed_requests(requests, struct.pack("<III", 2, 0x9, 0))
    assert requests.respond(message, False) == struct.pack("<IIIQ", 2, 0x5, 8, 1)
    # without NEED_REPLY: no ack
    message = feed_requests(requests, struct.pack("<III", 2, 0x1, 0))
    assert requests.respond(message) == b""


def test_no_ack_without_reply_ack_negotiated():
    requests = channel_of(BACKEND_REQ | CONFIG)
    message = feed_requests(requests, struct.pack("<III", 2, 0x9, 0))
    assert requests.respond(message) == b""


def test_config_change_refused_without_config_negotiated():
    requests = channel_of(BACKEND_REQ | REPLY_ACK)
    with pytest.raises(VhostUserRemoteError,
                       match="VHOST_USER_BACKEND_CONFIG_CHANGE_MSG without protocol feature "
                             r"VHOST_USER_PROTOCOL_F_CONFIG \(9\) negotiated"):
        feed_requests(requests, struct.pack("<III", 2, 0x9, 0))


def test_no_channel_without_backend_req():
    with pytest.raises(VhostUserLocalError, match="PROTOCOL_F_BACKEND_REQ"):
        channel_of(CONFIG | REPLY_ACK)
