"""The agent protocol as a pure module: the control protocol's framing with the agent's
ops, two-way vectors, hostile frames from either end, hellos and answers checked."""

from __future__ import annotations

import errno as E
import struct
from typing import Any

import msgpack
import pytest

from virtio_spec.offload import HOST, RFC2019
from vxdp.control.agent import (
    AGENT_VERSION,
    MAX_AGENT_REQUEST,
    Hello,
    agent_connection,
    answer_result,
    command_args,
    parse_answer,
    request_limit,
)
from vxdp.control.protocol import MAX_REQUEST, NEED_DATA, BadMessage, Connection, Request
from vxdp.errors import ControlLocalError, ControlRemoteError

MAC = bytes.fromhex("525400123456")


def framed(doc: Any) -> bytes:
    body = msgpack.packb(doc, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


# (op, args, the frame's bytes): the client builds exactly these bytes, the server reads
# exactly this request back.  Written out by hand from the format in the module
# docstring: 4-byte big-endian length, then a msgpack map v, id, op, args.
VECTORS = [
    ("agent.hello", {"mac": "52:54:00:12:34:56"},
     bytes.fromhex("00000033") + b"\x84\xa1v\x01\xa2id\x01\xa2op\xabagent.hello\xa4args"
     b"\x81\xa3mac\xb152:54:00:12:34:56"),
    ("agent.command", {"cls": 64, "command": 2, "body": b"\x01\x02", "room": 8, "guest": 0},
     bytes.fromhex("00000043") + b"\x84\xa1v\x01\xa2id\x01\xa2op\xadagent.command\xa4args"
     b"\x85\xa3cls@\xa7command\x02\xa4body\xc4\x02\x01\x02\xa4room\x08\xa5guest\x00"),
]


@pytest.mark.parametrize(("op", "args", "wire"), VECTORS)
def test_vectors_both_ways(op: str, args: dict[str, Any], wire: bytes) -> None:
    mid, data = agent_connection("client").send_request(op, args)
    assert (mid, data) == (1, wire)
    server = agent_connection("server")
    server.receive_data(wire)
    assert server.next_event() == Request(1, op, args)
    assert server.next_event() is NEED_DATA


def test_a_command_carries_the_request_bytes_and_the_answer_comes_back() -> None:
    client, server = agent_connection("client"), agent_connection("server")
    body = bytes(range(48))
    mid, data = client.send_request("agent.command", command_args(64, 2, body, 12, 3))
    server.receive_data(data)
    req = server.next_event()
    assert isinstance(req, Request) and req.args["body"] == body and req.args["guest"] == 3
    client.receive_data(server.send_result(mid, answer_result(0, b"\0" * 12)))
    reply = client.next_event()
    assert parse_answer(reply.result, 12) == (0, b"\0" * 12)  # type: ignore[union-attr]


@pytest.mark.parametrize(("args", "problem"), [
    ({"cls": 64, "command": 1, "body": "not bytes", "room": 4}, "'body' must be bytes"),
    ({"cls": 256, "command": 1, "body": b"", "room": 4}, "'cls' must be an integer 0..255"),
    ({"cls": 64, "command": 1, "body": b"", "room": -1}, "'room' must be an integer 0.."),
    ({"cls": 64, "command": 1, "body": b"", "room": True}, "'room' must be an integer"),
    ({"cls": 64, "command": 1, "body": b""}, "needs argument 'room'"),
    ({"cls": 64, "command": 1, "body": b"", "room": 4, "guest": -2}, "a guest number"),
    ({"cls": 64, "command": 1, "body": b"", "room": 4, "map": "x"}, "no argument 'map'"),
])
def test_hostile_arguments_are_answered_and_the_next_frame_is_read(
        args: dict[str, Any], problem: str) -> None:
    server = agent_connection("server")
    server.receive_data(framed({"v": 1, "id": 7, "op": "agent.command", "args": args}))
    server.receive_data(framed({"v": 1, "id": 8, "op": "agent.hello", "args": {}}))
    bad = server.next_event()
    assert isinstance(bad, BadMessage) and bad.errno == E.EINVAL and bad.id == 7
    assert problem in bad.message and not bad.fatal
    assert server.next_event() == Request(8, "agent.hello", {})


@pytest.mark.parametrize(("frame", "errno", "fatal"), [
    (b"\x00\x00\x00\x03\xc1\xc1\xc1", E.EBADMSG, False),  # not msgpack
    (framed([1, 2]), E.EINVAL, False),  # not a map
    (framed({"v": 2, "id": 1, "op": "agent.hello"}), E.EPROTONOSUPPORT, False),
    (framed({"v": 1, "id": 1, "op": "map.lookup", "args": {}}), E.EOPNOTSUPP, False),
    (framed({"v": 1, "id": 1, "op": "agent.hello", "args": {"mac": "52-54-00-12-34-56"}}),
     E.EINVAL, False),
    (b"\x7f\xff\xff\xff", E.EMSGSIZE, True),  # over any limit
])
def test_hostile_frames(frame: bytes, errno: int, fatal: bool) -> None:
    server = agent_connection("server")
    server.receive_data(frame)
    bad = server.next_event()
    assert isinstance(bad, BadMessage) and (bad.errno, bad.fatal) == (errno, fatal)


def test_the_control_ops_are_not_agent_ops_and_back() -> None:
    """Each protocol answers the other's ops EOPNOTSUPP: a guest agent that reaches a
    control socket (or an older host) learns so from the first reply."""
    control, agent = Connection("server"), agent_connection("server")
    control.receive_data(framed({"v": 1, "id": 1, "op": "agent.hello", "args": {}}))
    agent.receive_data(framed({"v": 1, "id": 1, "op": "prog.show", "args": {}}))
    for conn in (control, agent):
        bad = conn.next_event()
        assert isinstance(bad, BadMessage) and bad.errno == E.EOPNOTSUPP
    with pytest.raises(ControlLocalError):
        agent_connection("client").send_request("prog.show")


def test_the_request_limit_follows_the_device_s_largest_program() -> None:
    assert request_limit(None) == MAX_REQUEST + 8
    assert request_limit(RFC2019) == MAX_REQUEST + 8 + 8 * 4096
    assert request_limit(HOST) == min(MAX_REQUEST + 8 + 8 * 1_000_000, MAX_AGENT_REQUEST)
    server = agent_connection("server", max_request=request_limit(RFC2019))
    server.receive_data(struct.pack(">I", request_limit(RFC2019) + 1))
    bad = server.next_event()
    assert isinstance(bad, BadMessage) and bad.errno == E.EMSGSIZE and bad.fatal
    # a SET_OFFLOAD of the profile's most instructions fits
    client = agent_connection("client")
    _, data = client.send_request("agent.command", command_args(64, 1, bytes(8 + 8 * 4096),
                                                                65536))
    server = agent_connection("server", max_request=request_limit(RFC2019))
    server.receive_data(data)
    assert isinstance(server.next_event(), Request)


def test_a_hello_crosses_with_its_capabilities() -> None:
    for caps, profile in ((RFC2019, "rfc2019"), (None, None)):
        hello = Hello(2, MAC, True, profile, caps)
        back = Hello.from_wire(msgpack.unpackb(msgpack.packb(hello.to_wire(), use_bin_type=True)))
        assert back == hello and back.version == AGENT_VERSION


@pytest.mark.parametrize(("change", "errno", "words"), [
    ({"agent": 2}, E.EPROTONOSUPPORT, "agent protocol 2"),
    ({"guest": "0"}, E.EPROTO, "'guest' must be"),
    ({"mac": "zz"}, E.EPROTO, "'mac' must be"),
    ({"live": 1}, E.EPROTO, "'live'"),
    ({"caps": {"xdp_max_insns": 1}}, E.EPROTO, "exactly"),
    ({"caps": {**RFC2019.to_config(), "xdp_helpers": [1, 2]}}, E.EPROTO, "four le64"),
    ({"caps": {**RFC2019.to_config(), "xdp_max_maps": -1}}, E.EPROTO, "'xdp_max_maps'"),
])
def test_a_hostile_hello_is_refused(change: dict[str, Any], errno: int, words: str) -> None:
    doc = {**Hello(0, MAC, True, "rfc2019", RFC2019).to_wire(), **change}
    with pytest.raises(ControlRemoteError) as refused:
        Hello.from_wire(doc)
    assert refused.value.errno == errno and words in str(refused.value)


@pytest.mark.parametrize(("doc", "words"), [
    ({"ack": 0, "result": b"\0" * 9}, "9 result bytes for a room of 8"),
    ({"ack": 300, "result": b""}, "'ack' byte"),
    ({"ack": 0, "result": "00"}, "'result' bytes"),
    ([0, b""], "must be a map"),
])
def test_a_hostile_answer_is_refused(doc: Any, words: str) -> None:
    with pytest.raises(ControlRemoteError) as refused:
        parse_answer(doc, 8)
    assert refused.value.errno == E.EPROTO and words in str(refused.value)
