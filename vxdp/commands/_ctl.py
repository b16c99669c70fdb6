"""What `vxdp prog` and `vxdp map` share: the control socket of a host (`--host`) or of a
guest (`--guest`), errors, hex input.

Exit statuses: 0 done; 1 the host tried and the operation failed (ENOENT, EEXIST, E2BIG,
a program the verifier refused); 2 input that cannot be used (bad hex, an unknown map, an
object that is not there, no host answering at --host).  Errors print as bpftool prints
them, `Error: ...` on stderr, or with -j `{"error": ..., "errno": ...}` on stdout.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from vxdp.errors import UsageError

if TYPE_CHECKING:
    from vxdp.control import RequestFailed


def add_host_options(parser: argparse.ArgumentParser, *, leaf: bool,
                     guest: bool = True) -> None:
    """--host (and --guest) and -j, accepted before and after the sub-command (a leaf's
    value wins)."""
    default: Any = argparse.SUPPRESS if leaf else None
    parser.add_argument("--host", metavar="PATH", default=default,
                        help="the control socket of a running `vxdp host --control PATH`")
    if guest:
        parser.add_argument("--guest", metavar="PATH", default=default, dest="guest_socket",
                            help="the control socket of a running `vxdp guest --control "
                                 "PATH` (what the guest placed, its maps over the control "
                                 "queue)")
    parser.add_argument("-j", "--json", action="store_true",
                        default=argparse.SUPPRESS if leaf else False, help="print JSON")


def call(args: argparse.Namespace, op: str, **kw: Any) -> Any:
    """One request to the host (--host) or guest (--guest); RequestFailed when it says
    no."""
    from vxdp.control import ControlClient
    host, guest = args.host, getattr(args, "guest_socket", None)
    if bool(host) == bool(guest):
        raise UsageError("--host PATH or --guest PATH is needed (one of them): the control "
                         "socket of a running `vxdp host --control PATH` or `vxdp guest "
                         "--control PATH`")
    with ControlClient(str(host or guest)) as ctl:
        return ctl.call(op, **kw)


def host_command(body: Callable[[argparse.Namespace], int]
                 ) -> Callable[[argparse.Namespace], int]:
    """A command's `run`: a request the host refuses is printed (`failure`) and the
    exit status is its kind's."""
    @functools.wraps(body)
    def run(args: argparse.Namespace) -> int:
        from vxdp.control import RequestFailed
        try:
            return body(args)
        except RequestFailed as exc:
            return failure(args, exc)
    return run


def failure(args: argparse.Namespace, exc: RequestFailed) -> int:
    """Print a failed request as bpftool would; its exit status (1 failed, 2 usage)."""
    err = exc.error
    if args.json:
        doc: dict[str, Any] = {"error": err.message, "errno": err.code}
        if err.log:
            doc["log"] = err.log
        print(json.dumps(doc))
    else:
        print(f"Error: {err.message} ({err.code})", file=sys.stderr)
        if err.log:
            print(err.log.rstrip(), file=sys.stderr)
    return 2 if err.kind == "usage" else 1


def emit(args: argparse.Namespace, doc: Any, text: str) -> None:
    """`doc` as one line of JSON with -j, else `text` (nothing when it is empty)."""
    if args.json:
        print(json.dumps(doc))
    elif text:
        print(text)


def hex_tokens(tokens: Sequence[str], what: str) -> str:
    """Bytes written as hex: one string (`0a000001`), several (`0a 00 00 01`), each may
    start with 0x; an optional leading `hex` word, as bpftool takes it.  Lowercase hex."""
    parts = list(tokens)
    if parts and parts[0] == "hex":
        parts = parts[1:]
    if not parts:
        raise UsageError(f"{what}: no bytes given")
    text = "".join(p.removeprefix("0x").removeprefix("0X") for p in parts)
    try:
        return bytes.fromhex(text).hex()
    except ValueError:
        raise UsageError(f"{what}: {' '.join(parts)!r} is not hex") from None


def spaced(hex_text: str) -> str:
    """`0a000001` as bpftool prints bytes: `0a 00 00 01`."""
    return " ".join(hex_text[i:i + 2] for i in range(0, len(hex_text), 2))


__all__ = ["add_host_options", "call", "emit", "failure", "hex_tokens", "host_command",
           "spaced"]
