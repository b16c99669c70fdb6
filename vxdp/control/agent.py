"""The agent protocol, sans-I/O: the guest agent's RPC to the host agent.

The agent path of the 2019 RFC's review thread (`host.agent` has the story) carries the
guest's offload commands over a channel of their own instead of the control virtqueue.
It speaks the control socket's framing and messages (`vxdp.control.protocol`: a 4-byte
big-endian length, a msgpack map, version 1, ids echoed, error replies with errno and
kind, the same handling of malformed frames) with ops of its own:

    agent.hello    {"mac": "52:54:00:12:34:56", "guest": 0}        both optional
      -> {"agent": 1, "guest": 0, "mac": "52:54:00:12:34:56", "live": true,
          "profile": "host", "caps": {"xdp_max_insns": ..., "xdp_helpers": [w0, w1, w2, w3],
          ...}}                                  caps and profile null: no XDP offload
    agent.command  {"cls": 64, "command": 1, "body": <bin>, "room": 65536, "guest": 0}
      -> {"ack": 0, "result": <bin>}

`agent.command` is one `guest.offload.OffloadRequest`: the class and command of the
control queue, the body bytes exactly as the control queue carries them
(docs/offload-spec.md §4.2), and the writable room after the ack; the answer is the ack
and the result bytes the device would have written after it.  `guest` (optional) is the
guest number the guest agent believes it is (from the hello): a host agent refuses one
that is not its channel's with EPERM, as it refuses a hello whose `mac` is not the
channel's guest's.  Errors that are the channel's, not the device's (EPERM, ENODEV: no
live device) come as error replies; the device's own refusals as an ack and an errno in
the result, as on the control queue.

Limits: a request frame may hold `request_limit(caps)` bytes (a SET_OFFLOAD of
xdp_max_insns instructions plus the control protocol's 64 KiB), a reply the control
protocol's 64 MiB.  A result longer than the room the guest gave, an ack that is not a
byte, or a hello of the wrong shape is the host breaking the protocol
(ControlRemoteError, EPROTO).
"""

from __future__ import annotations

import errno as E
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from virtio_spec.offload import CONFIG_FIELDS, EBPF_PROG_HDR_SIZE, XdpCapabilities
from vxdp.errors import ControlRemoteError

from .protocol import MAX_ID, MAX_REQUEST, Connection, Ops, Role

#: The agent protocol's own version, in the hello (the framing is the control protocol's).
AGENT_VERSION: Final = 1
HELLO, COMMAND = "agent.hello", "agent.command"
#: The largest request a client sends (SET_OFFLOAD of a million instructions fits).
MAX_AGENT_REQUEST: Final = 16 * 1024 * 1024
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _uint(bits: int) -> Any:
    top = (1 << bits) - 1

    def ok(v: object) -> str | None:
        good = isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= top
        return None if good else f"an integer 0..{top}"
    return ok


#: Argument kinds: value -> None when it is one, else what it should have been.
KINDS: Final = {
    "u8": _uint(8),
    "u32": _uint(32),
    "guest": lambda v: None if isinstance(v, int) and not isinstance(v, bool)
    and 0 <= v <= MAX_ID else f"a guest number 0..{MAX_ID}",
    "mac": lambda v: None if isinstance(v, str) and _MAC.match(v)
    else "a MAC address as six lowercase hex bytes separated by ':'",
    "bytes": lambda v: None if isinstance(v, bytes) else "bytes (msgpack bin)",
}

#: Every op: {argument: (kind, required)}.
AGENT_OPS: Final[dict[str, dict[str, tuple[str, bool]]]] = {
    HELLO: {"mac": ("mac", False), "guest": ("guest", False)},
    COMMAND: {"cls": ("u8", True), "command": ("u8", True), "body": ("bytes", True),
              "room": ("u32", True), "guest": ("guest", False)},
}


def check_agent_args(op: str, args: Mapping[str, object]) -> str | None:
    """None when `args` suit agent op `op`, else what is wrong."""
    schema = AGENT_OPS[op]
    unknown = sorted(set(args) - set(schema))
    if unknown:
        return f"op {op!r} takes no argument {unknown[0]!r} (it takes {', '.join(schema)})"
    missing = [name for name, (_, required) in schema.items() if required and name not in args]
    if missing:
        return f"op {op!r} needs argument {missing[0]!r}"
    for name, value in args.items():
        want = KINDS[schema[name][0]](value)
        if want is not None:
            return f"op {op!r}: argument {name!r} must be {want}, got {type(value).__name__}"
    return None


AGENT: Final = Ops(tuple(AGENT_OPS), check_agent_args)


def request_limit(caps: XdpCapabilities | None) -> int:
    """The largest request frame a host agent takes: a SET_OFFLOAD of `xdp_max_insns`
    instructions and room for the rest of the message."""
    insns = caps.xdp_max_insns if caps is not None else 0
    return min(MAX_REQUEST + EBPF_PROG_HDR_SIZE + 8 * insns, MAX_AGENT_REQUEST)


def agent_connection(role: Role, *, max_request: int = MAX_AGENT_REQUEST) -> Connection:
    """One end of an agent channel: a host agent is the "server", a guest agent the
    "client"."""
    if role == "server":
        return Connection("server", max_in=max_request, ops=AGENT)
    return Connection("client", max_out=max_request, ops=AGENT)


def mac_text(mac: bytes) -> str:
    return mac.hex(":")


@dataclass(frozen=True)
class Hello:
    """What the host agent tells a guest agent about the channel's guest."""

    guest: int
    mac: bytes
    live: bool
    profile: str | None
    caps: XdpCapabilities | None
    version: int = AGENT_VERSION

    def to_wire(self) -> dict[str, Any]:
        return {"agent": self.version, "guest": self.guest, "mac": mac_text(self.mac),
                "live": self.live, "profile": self.profile,
                "caps": self.caps.to_config() if self.caps is not None else None}

    @classmethod
    def from_wire(cls, doc: object) -> Hello:
        """A hello reply's result, checked (ControlRemoteError EPROTO when malformed)."""
        if not isinstance(doc, dict):
            raise _broken(f"hello must be a map, got {type(doc).__name__}")
        version, guest, mac = doc.get("agent"), doc.get("guest"), doc.get("mac")
        if version != AGENT_VERSION:
            raise ControlRemoteError(f"host agent speaks agent protocol {version!r:.20}, "
                                     f"this guest agent {AGENT_VERSION}", E.EPROTONOSUPPORT)
        for name, kind in (("guest", "guest"), ("mac", "mac")):
            if (want := KINDS[kind](doc.get(name))) is not None:
                raise _broken(f"hello {name!r} must be {want}")
        profile, raw = doc.get("profile"), doc.get("caps")
        if not isinstance(doc.get("live"), bool) or not isinstance(profile, str | None):
            raise _broken("hello 'live' must be true or false and 'profile' a string or null")
        caps = None if raw is None else _caps(raw, profile or "")
        assert isinstance(guest, int) and isinstance(mac, str)
        return cls(guest, bytes.fromhex(mac.replace(":", "")), doc["live"], profile, caps)


def _caps(raw: object, name: str) -> XdpCapabilities:
    """The capabilities of a hello, every field checked as config space would hold it."""
    if not isinstance(raw, dict) or set(raw) != set(CONFIG_FIELDS):
        raise _broken(f"hello 'caps' must be a map of exactly {', '.join(CONFIG_FIELDS)}")
    words = raw["xdp_helpers"]
    if not (isinstance(words, list) and len(words) == 4
            and all(_uint(64)(w) is None for w in words)):
        raise _broken("hello 'xdp_helpers' must be four le64 words")
    for f in CONFIG_FIELDS:
        if f != "xdp_helpers" and KINDS["u32"](raw[f]) is not None:
            raise _broken(f"hello {f!r} must be an integer 0..{2**32 - 1}")
    return XdpCapabilities.from_config(raw, name)


def command_args(cls: int, command: int, body: bytes, room: int,
                 guest: int | None = None) -> dict[str, Any]:
    """`agent.command`'s arguments for one offload request."""
    args: dict[str, Any] = {"cls": cls, "command": command, "body": bytes(body), "room": room}
    if guest is not None:
        args["guest"] = guest
    return args


def answer_result(ack: int, result: bytes) -> dict[str, Any]:
    """`agent.command`'s result: the device's ack and result bytes."""
    return {"ack": ack, "result": bytes(result)}


def parse_answer(doc: object, room: int) -> tuple[int, bytes]:
    """(ack, result bytes) from `agent.command`'s result, checked against the `room`
    the request gave (ControlRemoteError EPROTO when the host broke the protocol)."""
    if not isinstance(doc, dict):
        raise _broken(f"command result must be a map, got {type(doc).__name__}")
    ack, result = doc.get("ack"), doc.get("result")
    if KINDS["u8"](ack) is not None or not isinstance(result, bytes):
        raise _broken("command result needs an 'ack' byte and 'result' bytes")
    if len(result) > room:
        raise _broken(f"{len(result)} result bytes for a room of {room}: the device "
                      f"cannot write past the room (virtio 1.3 \u00a72.7.5.1)")
    assert isinstance(ack, int)
    return ack, result


def _broken(message: str) -> ControlRemoteError:
    return ControlRemoteError(f"the host agent broke the agent protocol: {message}", E.EPROTO)


__all__ = ["AGENT", "AGENT_OPS", "AGENT_VERSION", "COMMAND", "HELLO", "MAX_AGENT_REQUEST",
           "Hello", "agent_connection", "answer_result", "check_agent_args", "command_args",
           "mac_text", "parse_answer", "request_limit"]
