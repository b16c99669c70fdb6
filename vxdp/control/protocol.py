"""The host control protocol, sans-I/O: frames in, events out; replies in, frames out.

Everything that decides what a byte on the control socket means lives here; the trio
server (`vxdp.runtime.control`) and the blocking client (`vxdp.control.client`) only move
bytes.  As h11 does, a `Connection` takes `receive_data(bytes)` (b"" for end of stream)
and hands back one event per `next_event()`; `send_*` return the bytes to write.

Wire format (version 1)
-----------------------
One message is one frame: a 4-byte big-endian length, then that many bytes of msgpack
holding a map.  Keys and values of BPF maps travel as lowercase hex strings, as in the
map JSON (DESIGN.md), so a result can be printed as it came.

    request  {"v": 1, "id": 7, "op": "map.lookup", "args": {"map": "flows", "key": "0a00"}}
    reply    {"v": 1, "id": 7, "ok": true, "result": {...}}
             {"v": 1, "id": 7, "ok": false,
              "error": {"errno": 2, "code": "ENOENT", "kind": "failed", "message": "...",
                        "log": "..."}}

`id` is the client's (an integer 0..2**32-1), echoed in the reply; a reply to a message
whose id could not be read carries `"id": null`.  A server answers the requests of one
connection in order.  `kind` is "failed" when the operation was tried and failed (a
lookup miss, a refused program: exit status 1 on the CLI) and "usage" when the request
could not be used (an unknown map, a key of the wrong size, a malformed message: exit
status 2); `log` is present for a verifier refusal.

Limits and malformed input
--------------------------
A request frame may hold at most `MAX_REQUEST` bytes, a reply `MAX_REPLY`.  What the
peer does wrong becomes a `BadMessage` event with the errno the reply should carry:

* a length over the limit (EMSGSIZE), or the stream ending inside a frame (EPIPE):
  *fatal*, framing is lost, the connection goes after the error reply;
* a frame that is not msgpack (EBADMSG), not a map or without a valid `v`/`id`/`op`
  (EINVAL), another protocol version (EPROTONOSUPPORT), an op that is not in `OPS`
  (EOPNOTSUPP), arguments missing, unknown or of the wrong type (EINVAL): the frame is
  answered with an error and the next one is read.
"""

from __future__ import annotations

import errno as E
import itertools
import struct
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import msgpack  # type: ignore[import-untyped]

from vxdp.errors import ControlError, ControlLocalError, ControlRemoteError, errno_name

VERSION: Final = 1
HEADER: Final = struct.Struct(">I")
MAX_REQUEST: Final = 64 * 1024  # requests are small: a path, a map name, a key, a value
MAX_REPLY: Final = 64 * 1024 * 1024  # a dump of a big map
MAX_ID: Final = 2**32 - 1
UPDATE_FLAGS: Final = ("any", "noexist", "exist")  # BPF_ANY, BPF_NOEXIST, BPF_EXIST

Role = Literal["server", "client"]
Kind = Literal["failed", "usage"]

# Argument kinds: what a value must be.  "map": a map name or id; "value": one hex string
# or a list of them (one per CPU); "flags": one of UPDATE_FLAGS; "guest": a guest number
# (0..MAX_ID); "id": a program id (0..MAX_ID); "uint": a count (0..MAX_ID); "bool": true
# or false.
ArgKind = Literal["str", "hex", "map", "value", "flags", "guest", "id", "uint", "bool"]

#: Every operation: {argument: (kind, required)}.
OPS: Final[dict[str, dict[str, tuple[ArgKind, bool]]]] = {
    "prog.attach": {"path": ("str", True), "section": ("str", False),
                    "program": ("str", False), "mode": ("str", False)},
    "prog.detach": {},
    "prog.show": {},
    "prog.dump_xlated": {"id": ("id", False)},
    "prog.dump_jited": {"id": ("id", False)},
    "map.show": {"map": ("map", False)},
    "map.dump": {"map": ("map", True)},
    "map.lookup": {"map": ("map", True), "key": ("hex", True)},
    "map.update": {"map": ("map", True), "key": ("hex", True), "value": ("value", True),
                   "flags": ("flags", False)},
    "map.delete": {"map": ("map", True), "key": ("hex", True)},
    "stats": {},
    "guest.list": {},
    "guest.link": {"guest": ("guest", True), "up": ("bool", True)},
    "guest.announce": {"guest": ("guest", True)},
    "wire.inject": {"count": ("uint", True), "seed": ("uint", False), "size": ("uint", False),
                    "flows": ("uint", False), "mix": ("str", False), "guest": ("guest", False)},
    "guest.migrate": {"to": ("str", True), "policy": ("str", False), "agent": ("str", False)},
}

MAX_VALUE_LIST = 4096  # per-CPU values: one per possible CPU


@dataclass(frozen=True)
class Request:
    id: int
    op: str
    args: dict[str, Any]


@dataclass(frozen=True)
class ErrorInfo:
    """An error reply's body."""

    errno: int
    message: str
    kind: Kind = "failed"
    log: str = ""

    @property
    def code(self) -> str:
        """The errno's symbolic name (`ENOENT`), or its number when it has none."""
        return errno_name(self.errno)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"errno": self.errno, "code": self.code, "kind": self.kind,
                               "message": self.message}
        if self.log:
            out["log"] = self.log
        return out


class RequestFailed(ControlError):
    """A request the host answered with an error (`error`): raised by the server's
    operations and, from the reply, by the client."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class Reply:
    """A reply: `result` when it succeeded, `error` when it did not."""

    id: int | None
    result: Any = None
    error: ErrorInfo | None = None


@dataclass(frozen=True)
class BadMessage:
    """The peer sent something that is not a message of this protocol."""

    id: int | None
    errno: int
    message: str
    fatal: bool = False

    def error(self) -> ErrorInfo:
        return ErrorInfo(self.errno, self.message, "usage")


@dataclass(frozen=True)
class Closed:
    """The stream ended at a frame boundary (or after a fatal BadMessage)."""


class NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()

Event = Request | Reply | BadMessage | Closed | NeedData


def frame(message: Mapping[str, Any], limit: int) -> bytes:
    """One message as a frame; ControlLocalError when it cannot be encoded or is over
    `limit` bytes."""
    try:
        body: bytes = msgpack.packb(message, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ControlLocalError(f"control message cannot be encoded: {exc}") from None
    if len(body) > limit:
        raise ControlLocalError(f"control message of {len(body)} bytes is over the "
                                f"{limit}-byte limit")
    return HEADER.pack(len(body)) + body


def _kind_ok(kind: ArgKind, value: object) -> str | None:
    """None when `value` is of `kind`, else what it should have been."""
    if kind == "str":
        return None if isinstance(value, str) else "a string"
    if kind == "hex":
        return None if isinstance(value, str) else "a hex string"
    if kind == "map":
        ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)
                                        and 0 <= value <= MAX_ID)
        return None if ok else "a map name or id"
    if kind == "flags":
        return None if value in UPDATE_FLAGS else f"one of {', '.join(UPDATE_FLAGS)}"
    if kind in ("guest", "id", "uint"):
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID
        what = {"guest": "a guest number", "id": "a program id", "uint": "a count"}[kind]
        return None if ok else f"{what} 0..{MAX_ID}"
    if kind == "bool":
        return None if isinstance(value, bool) else "true or false"
    ok = isinstance(value, str) or (isinstance(value, list) and 0 < len(value) <= MAX_VALUE_LIST
                                    and all(isinstance(v, str) for v in value))
    return None if ok else "a hex string or a list of hex strings (one per CPU)"


def check_args(op: str, args: Mapping[str, object]) -> str | None:
    """None when `args` suit `op`, else what is wrong (the op must be in OPS)."""
    schema = OPS[op]
    for name in args:
        if name not in schema:
            takes = ", ".join(schema) or "no arguments"
            return f"op {op!r} takes no argument {name!r} (it takes {takes})"
    for name, (kind, required) in schema.items():
        if name not in args:
            if required:
                return f"op {op!r} needs argument {name!r}"
            continue
        want = _kind_ok(kind, args[name])
        if want is not None:
            return (f"op {op!r}: argument {name!r} must be {want}, "
                    f"got {type(args[name]).__name__}")
    return None


@dataclass(frozen=True)
class Ops:
    """What a protocol on this framing speaks: its op names and the check of their
    arguments (None when they suit the op, else what is wrong).  The control socket's
    are `CONTROL`; the agent protocol (`vxdp.control.agent`) brings its own."""

    names: Collection[str]
    check: Callable[[str, Mapping[str, object]], str | None]


CONTROL: Final = Ops(OPS, check_args)


def _type_name(value: object) -> str:
    return type(value).__name__


@dataclass
class Connection:
    """One end of a control connection.  A "server" reads requests and writes replies,
    a "client" writes requests and reads replies."""

    role: Role
    max_in: int = 0  # 0: the role's default (MAX_REQUEST for a server, MAX_REPLY a client)
    max_out: int = 0
    ops: Ops = CONTROL
    _buf: bytearray = field(default_factory=bytearray)
    _eof: bool = False
    _closed: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        if self.role not in ("server", "client"):
            raise ControlLocalError(f"control connection role {self.role!r} is not server "
                                    f"or client")
        server = self.role == "server"
        self.max_in = self.max_in or (MAX_REQUEST if server else MAX_REPLY)
        self.max_out = self.max_out or (MAX_REPLY if server else MAX_REQUEST)

    # -- bytes in ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; b"" when the peer closed its end."""
        if self._eof:
            raise ControlLocalError("control connection: data after the end of the stream")
        if data:
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Event:
        """The next message, NEED_DATA, a BadMessage, or Closed."""
        if self._closed:
            return Closed()
        if len(self._buf) < HEADER.size:
            if not self._eof:
                return NEED_DATA
            return self._lost(f"stream ended inside a frame header ({len(self._buf)} of "
                              f"{HEADER.size} bytes)") if self._buf else self._close()
        (length,) = HEADER.unpack_from(self._buf)
        if length > self.max_in:
            return self._lost(f"frame of {length} bytes is over the {self.max_in}-byte limit",
                              E.EMSGSIZE)
        end = HEADER.size + length
        if len(self._buf) < end:
            if not self._eof:
                return NEED_DATA
            return self._lost(f"stream ended inside a frame ({len(self._buf) - HEADER.size} "
                              f"of {length} bytes)")
        body = bytes(self._buf[HEADER.size:end])
        del self._buf[:end]
        return self._message(body)

    def _close(self) -> Closed:
        self._closed = True
        return Closed()

    def _lost(self, message: str, code: int = E.EPIPE) -> BadMessage:
        self._closed = True
        self._buf.clear()
        return BadMessage(None, code, message, fatal=True)

    def _message(self, body: bytes) -> Request | Reply | BadMessage:
        try:
            doc = msgpack.unpackb(body, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises several types (ExtraData, FormatError...)
            return BadMessage(None, E.EBADMSG, f"frame is not msgpack: {exc}")
        if not isinstance(doc, dict):
            return BadMessage(None, E.EINVAL, f"message must be a map, got {_type_name(doc)}")
        mid = doc.get("id")
        if mid is not None and (not isinstance(mid, int) or isinstance(mid, bool)
                                or not 0 <= mid <= MAX_ID):
            return BadMessage(None, E.EINVAL, f"message id must be an integer 0..{MAX_ID}, "
                                              f"got {mid!r:.40}")
        version = doc.get("v")
        if version != VERSION:
            return BadMessage(mid, E.EPROTONOSUPPORT,
                              f"control protocol version {version!r:.20} is not spoken here "
                              f"(this end speaks version {VERSION})")
        return self._request(doc, mid) if self.role == "server" else self._reply(doc, mid)

    def _request(self, doc: dict[str, Any], mid: int | None) -> Request | BadMessage:
        if mid is None:
            return BadMessage(None, E.EINVAL, "request has no 'id'")
        op = doc.get("op")
        if not isinstance(op, str):
            return BadMessage(mid, E.EINVAL, f"request 'op' must be a string, got "
                                             f"{_type_name(op)}")
        if op not in self.ops.names:
            return BadMessage(mid, E.EOPNOTSUPP, f"unknown op {op!r:.60} (ops: "
                                                 f"{', '.join(self.ops.names)})")
        args = doc.get("args", {})
        if not isinstance(args, dict):
            return BadMessage(mid, E.EINVAL, f"request 'args' must be a map, got "
                                             f"{_type_name(args)}")
        extra = set(doc) - {"v", "id", "op", "args"}
        if extra:
            return BadMessage(mid, E.EINVAL, f"request has unknown fields {sorted(extra)}")
        problem = self.ops.check(op, args)
        if problem is not None:
            return BadMessage(mid, E.EINVAL, problem)
        return Request(mid, op, args)

    def _reply(self, doc: dict[str, Any], mid: int | None) -> Reply | BadMessage:
        ok = doc.get("ok")
        if not isinstance(ok, bool):
            return BadMessage(mid, E.EINVAL, "reply 'ok' must be true or false")
        if ok:
            return Reply(mid, doc.get("result"))
        err = doc.get("error")
        if not isinstance(err, dict) or not isinstance(err.get("errno"), int) \
                or not isinstance(err.get("message"), str):
            return BadMessage(mid, E.EINVAL, "error reply needs 'error' with an integer "
                                             "'errno' and a string 'message'")
        kind = err.get("kind", "failed")
        log = err.get("log", "")
        return Reply(mid, None, ErrorInfo(
            err["errno"], err["message"], "usage" if kind == "usage" else "failed",
            log if isinstance(log, str) else ""))

    # -- bytes out -----------------------------------------------------------------------

    def send_request(self, op: str, args: Mapping[str, Any] | None = None) -> tuple[int, bytes]:
        """A request frame and the id it carries (ids count up from 1)."""
        if self.role != "client":
            raise ControlLocalError("a server does not send requests")
        if op not in self.ops.names:
            raise ControlLocalError(f"unknown op {op!r}")
        body = {k: v for k, v in (args or {}).items() if v is not None}
        problem = self.ops.check(op, body)
        if problem is not None:
            raise ControlLocalError(problem)
        mid = next(self._ids) & MAX_ID
        return mid, frame({"v": VERSION, "id": mid, "op": op, "args": body}, self.max_out)

    def send_result(self, mid: int | None, result: Any) -> bytes:
        """A success reply; over the limit it becomes an E2BIG error reply."""
        self._server_only()
        try:
            return frame({"v": VERSION, "id": mid, "ok": True, "result": result}, self.max_out)
        except ControlLocalError as exc:
            return self.send_error(mid, ErrorInfo(E.E2BIG, f"reply: {exc}"))

    def send_error(self, mid: int | None, error: ErrorInfo) -> bytes:
        self._server_only()
        # an error reply is small; it is held to the protocol's reply limit, not to a
        # narrower max_out, so that an oversized result can always be refused
        return frame({"v": VERSION, "id": mid, "ok": False, "error": error.to_wire()},
                     MAX_REPLY)

    def _server_only(self) -> None:
        if self.role != "server":
            raise ControlLocalError("a client does not send replies")


def expect_reply(event: Event, mid: int) -> Reply:
    """A client's check of what came back for request `mid`."""
    if isinstance(event, BadMessage):
        raise ControlRemoteError(f"the host sent a bad reply: {event.message}", event.errno)
    if isinstance(event, Closed):
        raise ControlRemoteError("the host closed the control connection without a reply",
                                 E.ECONNRESET)
    if not isinstance(event, Reply):
        raise ControlRemoteError(f"expected a reply, got {event!r}", E.EPROTO)
    if event.id not in (mid, None):
        raise ControlRemoteError(f"reply to request {event.id}, expected {mid}", E.EPROTO)
    return event


__all__ = [
    "CONTROL",
    "HEADER",
    "MAX_REPLY",
    "MAX_REQUEST",
    "NEED_DATA",
    "OPS",
    "UPDATE_FLAGS",
    "VERSION",
    "BadMessage",
    "Closed",
    "Connection",
    "ErrorInfo",
    "Event",
    "NeedData",
    "Ops",
    "Reply",
    "Request",
    "RequestFailed",
    "check_args",
    "expect_reply",
    "frame",
]
