"""A blocking client of the host's control socket: what the CLI and scripts use.

    with ControlClient("/run/vxdp/host.ctl") as ctl:
        ctl.call("prog.show")                               # the result, as sent
        ctl.call("map.lookup", map="flows", key="0a000001")  # raises RequestFailed (ENOENT)

One request at a time; the reply's errors come back as `RequestFailed` (its `error` is the
reply's ErrorInfo: errno, kind, message, verifier log).  A socket nobody serves is a
`HostUnreachable` (a UsageError: exit status 2 on the CLI).
"""

from __future__ import annotations

import errno
import os
import socket
from types import TracebackType
from typing import Any

from vxdp.errors import ControlRemoteError, UsageError

from .protocol import NEED_DATA, Connection, RequestFailed, expect_reply

#: Seconds a call waits for its reply (attaching runs the verifier on the host).
TIMEOUT = 120.0


class HostUnreachable(UsageError):
    """No vxdp host answers on the control socket given."""


class ControlClient:
    """One connection to a host's control socket."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = TIMEOUT) -> None:
        self.path = os.fspath(path)
        self.conn = Connection("client")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except OSError as exc:
            self.sock.close()
            raise HostUnreachable(f"no vxdp host answers at {self.path}: "
                                  f"{exc.strerror or exc}") from None

    def call(self, op: str, **args: Any) -> Any:
        """Send one request and wait for its reply; the result, or RequestFailed."""
        mid, data = self.conn.send_request(op, args)
        try:
            self.sock.sendall(data)
            while (event := self.conn.next_event()) is NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
        except TimeoutError:
            raise ControlRemoteError(f"{self.path}: no reply to {op} within "
                                     f"{self.sock.gettimeout()} s", errno.ETIMEDOUT) from None
        except OSError as exc:
            raise ControlRemoteError(f"{self.path}: {op}: {exc.strerror or exc}",
                                     exc.errno or errno.EIO) from None
        reply = expect_reply(event, mid)
        if reply.error is not None:
            raise RequestFailed(reply.error)
        return reply.result

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


__all__ = ["TIMEOUT", "ControlClient", "HostUnreachable"]
