"""A vhost-user front-end connection as the guest process holds it.

One reader task owns the socket's receive side and hands replies over a channel, so that
the guest sees the host go away (the socket closes) whenever it happens, not only while
it waits for a reply; requests go one at a time under a lock, each waiting for its reply
or REPLY_ACK when one is due (a nack raises, naming the request).
"""

from __future__ import annotations

import os
import socket
from typing import Any

import trio

from vxdp.errors import VhostUserError
from vxdp.vhost_user import Frontend, Outgoing, Reply
from vxdp.vhost_user.frontend import check_ack
from vxdp.vhost_user.transport import receive_some, send_message


class DeviceGone(VhostUserError):
    """The host closed the vhost-user socket (or it broke): the device is gone."""


class Link:
    """One vhost-user connection: a reader task for replies, requests one at a time."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.core = Frontend()
        self.gone: str | None = None
        self.closed = trio.Event()
        self.reading = False  # its reader task runs
        self.migrated = False  # a migration moved the device away: closing it is no loss
        self.proto = 0  # the protocol features negotiated
        self._lock = trio.Lock()
        self._send_reply, self._replies = trio.open_memory_channel[Reply](1)

    async def reader(self) -> None:
        reason = "host closed the vhost-user socket"
        try:
            while True:
                data, fds = await receive_some(self.sock, self.core.want())
                if not data:
                    for fd in fds:
                        os.close(fd)
                    break
                reply = self.core.receive_data(data, fds)
                if reply is not None:
                    await self._send_reply.send(reply)
        except (OSError, VhostUserError, trio.ClosedResourceError) as exc:
            reason = f"vhost-user connection failed: {exc}"
        finally:
            self.gone = reason
            self._send_reply.close()
            self.closed.set()

    async def send(self, out: Outgoing) -> Reply | None:
        async with self._lock:
            if self.gone is not None:
                raise DeviceGone(self.gone)
            try:
                await send_message(self.sock, out.data, out.fds)
            except OSError as exc:
                raise DeviceGone(f"vhost-user send failed: {exc}") from None
            if not out.expects_reply:
                return None
            try:
                reply = await self._replies.receive()
            except trio.EndOfChannel:
                raise DeviceGone(self.gone or "connection closed") from None
            check_ack(reply)
            return reply

    async def value(self, out: Outgoing) -> Any:
        reply = await self.send(out)
        assert reply is not None
        return reply.value

    def hang_up(self) -> None:
        """End the connection from our side: the host sees it close, and our reader its
        end (then `closed` is set)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone

    def close(self) -> None:
        self.core.close()
        self.sock.close()


__all__ = ["DeviceGone", "Link"]
