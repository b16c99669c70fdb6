"""The control protocol as a pure module: framing, limits, malformed input, replies."""

from __future__ import annotations

import errno as E
import struct
from typing import Any

import msgpack
import pytest

from vxdp.control.protocol import (
    MAX_REQUEST,
    NEED_DATA,
    VERSION,
    BadMessage,
    Closed,
    Connection,
    ErrorInfo,
    Reply,
    Request,
    expect_reply,
)
from vxdp.errors import ControlLocalError, ControlRemoteError


def framed(doc: Any) -> bytes:
    body = msgpack.packb(doc, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def request(**fields: Any) -> dict[str, Any]:
    return {"v": VERSION, "id": 5, "op": "prog.show", "args": {}, **fields}


def events(conn: Connection) -> list[Any]:
    out = []
    while (event := conn.next_event()) is not NEED_DATA:
        out.append(event)
        if isinstance(event, Closed):
            break
    return out


def test_a_request_and_its_reply_cross_byte_by_byte() -> None:
    client, server = Connection("client"), Connection("server")
    mid, data = client.send_request("map.lookup", {"map": "flows", "key": "0a000001"})
    for b in data[:-1]:
        server.receive_data(bytes([b]))
        assert server.next_event() is NEED_DATA
    server.receive_data(data[-1:])
    assert server.next_event() == Request(mid, "map.lookup", {"map": "flows", "key": "0a000001"})
    reply = server.send_result(mid, {"key": "0a000001", "value": "05"})
    client.receive_data(reply)
    got = expect_reply(client.next_event(), mid)
    assert got == Reply(mid, {"key": "0a000001", "value": "05"})


def test_two_frames_in_one_read_are_two_requests_and_ids_count_up() -> None:
    client, server = Connection("client"), Connection("server")
    a, fa = client.send_request("prog.show")
    b, fb = client.send_request("stats")
    assert b == a + 1
    server.receive_data(fa + fb)
    assert [e.op for e in events(server)] == ["prog.show", "stats"]
    server.receive_data(b"")
    assert server.next_event() == Closed()


def test_error_replies_carry_errno_name_kind_and_log() -> None:
    server, client = Connection("server"), Connection("client")
    client.receive_data(server.send_error(9, ErrorInfo(E.EACCES, "rejected", log="0: (95)")))
    reply = client.next_event()
    assert isinstance(reply, Reply) and reply.result is None
    assert reply.error == ErrorInfo(E.EACCES, "rejected", "failed", "0: (95)")
    assert reply.error.code == "EACCES"
    assert ErrorInfo(E.EOPNOTSUPP, "x").code == "EOPNOTSUPP"


def test_a_length_over_the_limit_is_fatal() -> None:
    server = Connection("server")
    server.receive_data(struct.pack(">I", MAX_REQUEST + 1) + b"x" * 10)
    bad = server.next_event()
    assert isinstance(bad, BadMessage) and bad.fatal and bad.errno == E.EMSGSIZE
    assert f"{MAX_REQUEST + 1} bytes is over the {MAX_REQUEST}-byte limit" in bad.message
    assert server.next_event() == Closed()  # framing is lost: nothing more is read


def test_a_frame_at_the_limit_is_read() -> None:
    doc = request(args={"x": "y" * 10})
    data = framed(doc)
    server = Connection("server", max_in=len(data) - 4)
    server.receive_data(data)
    bad = server.next_event()  # it is read (and then refused for its argument, not size)
    assert isinstance(bad, BadMessage) and bad.errno == E.EINVAL and not bad.fatal


@pytest.mark.parametrize(("cut", "what"), [(2, "frame header (2 of 4 bytes)"),
                                           (7, "inside a frame (3 of")])
def test_the_stream_ending_inside_a_frame_is_fatal(cut: int, what: str) -> None:
    server = Connection("server")
    server.receive_data(framed(request())[:cut])
    server.receive_data(b"")
    bad = server.next_event()
    assert isinstance(bad, BadMessage) and bad.fatal and bad.errno == E.EPIPE
    assert what in bad.message
    with pytest.raises(ControlLocalError, match="after the end of the stream"):
        server.receive_data(b"more")


MALFORMED: list[tuple[bytes, int, int | None, str]] = [
    # (frame, errno, id the reply carries, words of the message)
    (struct.pack(">I", 1) + b"\xc1", E.EBADMSG, None, "not msgpack"),
    (struct.pack(">I", 2) + b"\x92\x01", E.EBADMSG, None, "not msgpack"),  # truncated
    (framed([1, 2, 3]), E.EINVAL, None, "must be a map, got list"),
    (framed({1: 2}), E.EBADMSG, None, "not msgpack"),  # int keys: strict_map_key
    (framed(request(id="seven")), E.EINVAL, None, "id must be an integer"),
    (framed(request(id=True)), E.EINVAL, None, "id must be an integer"),
    (framed(request(id=-1)), E.EINVAL, None, "id must be an integer"),
    (framed(request(id=2**32)), E.EINVAL, None, "id must be an integer"),
    (framed({"v": VERSION, "op": "prog.show"}), E.EINVAL, None, "request has no 'id'"),
    (framed(request(v=2)), E.EPROTONOSUPPORT, 5, "version 2 is not spoken here"),
    (framed(request(v=None)), E.EPROTONOSUPPORT, 5, "version None"),
    (framed(request(op="prog.load")), E.EOPNOTSUPP, 5, "unknown op 'prog.load'"),
    (framed(request(op=3)), E.EINVAL, 5, "'op' must be a string, got int"),
    (framed(request(args=[1])), E.EINVAL, 5, "'args' must be a map, got list"),
    (framed(request(extra=1)), E.EINVAL, 5, "unknown fields ['extra']"),
    (framed(request(args={"map": "m"})), E.EINVAL, 5, "takes no argument 'map'"),
    (framed(request(op="map.dump")), E.EINVAL, 5, "needs argument 'map'"),
    (framed(request(op="map.dump", args={"map": True})), E.EINVAL, 5,
     "must be a map name or id, got bool"),
    (framed(request(op="map.lookup", args={"map": "m", "key": 1})), E.EINVAL, 5,
     "'key' must be a hex string, got int"),
    (framed(request(op="map.lookup", args={"map": "m", "key": b"\x01"})), E.EINVAL, 5,
     "'key' must be a hex string, got bytes"),
    (framed(request(op="map.update", args={"map": "m", "key": "00", "value": [1]})),
     E.EINVAL, 5, "list of hex strings"),
    (framed(request(op="map.update", args={"map": "m", "key": "00", "value": "00",
                                           "flags": "replace"})),
     E.EINVAL, 5, "one of any, noexist, exist"),
    (framed(request(op="prog.attach", args={"path": None})), E.EINVAL, 5,
     "'path' must be a string, got NoneType"),
    (framed(request(op="guest.link", args={"guest": True, "up": True})), E.EINVAL, 5,
     "'guest' must be a guest number 0..4294967295, got bool"),
    (framed(request(op="guest.link", args={"guest": -1, "up": True})), E.EINVAL, 5,
     "'guest' must be a guest number"),
    (framed(request(op="guest.link", args={"guest": 0, "up": "down"})), E.EINVAL, 5,
     "'up' must be true or false, got str"),
    (framed(request(op="guest.link", args={"guest": 0, "up": 0})), E.EINVAL, 5,
     "'up' must be true or false, got int"),
    (framed(request(op="guest.link", args={"guest": 0})), E.EINVAL, 5,
     "op 'guest.link' needs argument 'up'"),
    (framed(request(op="guest.announce", args={"guest": "0"})), E.EINVAL, 5,
     "'guest' must be a guest number 0..4294967295, got str"),
    (framed(request(op="guest.list", args={"guest": 0})), E.EINVAL, 5,
     "op 'guest.list' takes no argument 'guest' (it takes no arguments)"),
]


def test_guest_requests_go_through() -> None:
    client, server = Connection("client"), Connection("server")
    for op, args in (("guest.list", {}), ("guest.link", {"guest": 1, "up": False}),
                     ("guest.announce", {"guest": 0})):
        mid, data = client.send_request(op, args)
        server.receive_data(data)
        assert server.next_event() == Request(mid, op, args)


@pytest.mark.parametrize(("data", "errno", "mid", "words"), MALFORMED)
def test_a_malformed_message_is_answered_and_the_next_one_is_read(
        data: bytes, errno: int, mid: int | None, words: str) -> None:
    server = Connection("server")
    server.receive_data(data + framed(request(id=6)))
    bad = server.next_event()
    assert isinstance(bad, BadMessage), bad
    assert (bad.errno, bad.id, bad.fatal) == (errno, mid, False)
    assert words in bad.message
    assert bad.error().kind == "usage"
    assert server.next_event() == Request(6, "prog.show", {})


def test_an_oversized_reply_becomes_an_e2big_error() -> None:
    server = Connection("server", max_out=100)
    client = Connection("client")
    client.receive_data(server.send_result(3, "x" * 200))
    reply = client.next_event()
    assert isinstance(reply, Reply) and reply.error is not None
    assert reply.error.errno == E.E2BIG and "over the 100-byte limit" in reply.error.message


def test_the_client_refuses_to_send_what_the_server_would_refuse() -> None:
    client = Connection("client")
    with pytest.raises(ControlLocalError, match=r"unknown op 'prog\.load'"):
        client.send_request("prog.load")
    with pytest.raises(ControlLocalError, match="'key' must be a hex string"):
        client.send_request("map.lookup", {"map": "m", "key": 5})
    with pytest.raises(ControlLocalError, match="does not send replies"):
        client.send_result(1, None)
    with pytest.raises(ControlLocalError, match="does not send requests"):
        Connection("server").send_request("stats")
    with pytest.raises(ControlLocalError, match="role 'peer'"):
        Connection("peer")  # type: ignore[arg-type]


def test_a_client_checks_what_comes_back() -> None:
    client = Connection("client")
    client.receive_data(framed({"v": VERSION, "id": 4, "ok": True, "result": None}))
    with pytest.raises(ControlRemoteError, match="reply to request 4, expected 3"):
        expect_reply(client.next_event(), 3)
    client.receive_data(framed({"v": VERSION, "id": 3, "ok": "yes"}))
    with pytest.raises(ControlRemoteError, match="bad reply: reply 'ok' must be"):
        expect_reply(client.next_event(), 3)
    client.receive_data(framed({"v": VERSION, "id": 3, "ok": False, "error": "boom"}))
    with pytest.raises(ControlRemoteError, match="integer 'errno'"):
        expect_reply(client.next_event(), 3)
    client.receive_data(b"")
    with pytest.raises(ControlRemoteError, match="closed the control connection"):
        expect_reply(client.next_event(), 3)


def test_importing_the_protocol_leaves_trio_alone() -> None:
    import subprocess
    import sys
    code = ("import sys, vxdp.control.protocol, vxdp.control.client; "
            "print('trio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
