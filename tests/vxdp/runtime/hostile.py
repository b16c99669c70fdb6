"""A vhost-user front-end an attacker drives by hand, against `vxdp host` (a process or a
`HostRuntime` in this one): its own memfd (unsealed, so that it can shrink it), its own
kick, call and err fds, rings at fixed guest addresses, nothing of the guest runtime's
care.  `RawGuest.bring_up` takes a device to DRIVER_OK as QEMU would; after that the test
does what an attacker does.  Once the attacker shrinks its memory it must not touch it
again (this process would take the SIGBUS)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from virtio_spec.features import VirtioFeature, VirtioNetFeature
from virtio_spec.split import SplitDriverQueue
from virtio_spec.status import DeviceStatus
from vxdp.runtime.host import PROTOCOL_FEATURES
from vxdp.vhost_user import EventFd, FrontendConnection, FrontendMemory
from vxdp.vhost_user.messages import VHOST_USER_F_PROTOCOL_FEATURES

BASE = 0x4000_0000
RING_SPAN = 0x1_0000  # one ring's desc, avail and used areas
BUFFERS = BASE + 0x10_0000  # buffers start here
VERSION_1 = 1 << VirtioFeature.VIRTIO_F_VERSION_1
STATUS = 1 << VirtioNetFeature.VIRTIO_NET_F_STATUS
CTRL_VQ = 1 << VirtioNetFeature.VIRTIO_NET_F_CTRL_VQ
INDIRECT = 1 << VirtioFeature.VIRTIO_F_INDIRECT_DESC
_S = DeviceStatus


def areas(index: int) -> tuple[int, int, int]:
    """Guest addresses of vring `index`'s descriptor table, avail and used rings."""
    base = BASE + index * RING_SPAN
    return base, base + 0x8000, base + 0xC000


class RawGuest:
    """One hostile front-end on a connected socket (see the module docstring)."""

    def __init__(self, conn: FrontendConnection, *, memory_size: int = 4 << 20,
                 queue_size: int = 64) -> None:
        self.conn = conn
        self.memory = FrontendMemory.create([(BASE, memory_size)], seal=False)
        self.queue_size = queue_size
        self.kicks: dict[int, EventFd] = {}
        self.calls: dict[int, EventFd] = {}
        self.rings: dict[int, SplitDriverQueue] = {}
        self.features = 0

    @property
    def core(self):
        return self.conn.core

    async def bring_up(self, features: int = VERSION_1, *, rings: Sequence[int] = (0, 1),
                       calls: dict[int, int] | None = None,
                       protocol_features: int = PROTOCOL_FEATURES) -> None:
        """GET/SET_FEATURES, the memory table, status to FEATURES_OK, `rings` started
        (call fds from `calls` where given, else eventfds of ours), DRIVER_OK."""
        self.features, _ = await self.conn.negotiate(
            features | 1 << VHOST_USER_F_PROTOCOL_FEATURES, protocol_features)
        await self.conn.set_mem_table(self.memory)
        for status in (_S.ACKNOWLEDGE, _S.ACKNOWLEDGE | _S.DRIVER,
                       _S.ACKNOWLEDGE | _S.DRIVER | _S.FEATURES_OK):
            await self.conn.send(self.core.set_status(int(status)))
        for index in rings:
            self.kicks[index] = EventFd()
            call = (calls or {}).get(index)
            if call is None:
                self.calls[index] = EventFd()
                call = self.calls[index].fd
            self.rings[index] = SplitDriverQueue(
                self.memory.guest, self.queue_size, *areas(index),
                indirect=bool(self.features & INDIRECT), name=f"raw q{index}")
            uvas = [self.memory.uva(a) for a in areas(index)]
            for out in self.core.vring_setup(index, self.queue_size, *uvas,
                                             kick=self.kicks[index].fd, call=call):
                await self.conn.send(out)
        await self.conn.send(self.core.set_status(
            int(_S.ACKNOWLEDGE | _S.DRIVER | _S.FEATURES_OK | _S.DRIVER_OK)))

    def post_rx(self, count: int, size: int = 2048, *, at: int = BUFFERS) -> None:
        """`count` receive buffers on vring 0, published and kicked."""
        ring = self.rings[0]
        for i in range(count):
            ring.add([], [(at + i * size, size)])
        ring.publish()
        self.kicks[0].signal()

    async def status(self) -> int:
        return int(await self.conn.value(self.core.get_status()))

    def shrink(self, size: int = 0) -> None:
        """Truncate the memory's memfd under everyone who maps it (the SIGBUS attack).
        The rings' views are dropped first: nothing here may touch the memory again."""
        self.rings.clear()
        os.ftruncate(self.memory.regions[0].fd, size)

    async def aclose(self) -> None:
        self.rings.clear()
        await self.conn.aclose()
        for efd in (*self.kicks.values(), *self.calls.values()):
            efd.close()
        self.memory.close()


def fill(fd: int) -> None:
    """Write into a pipe (or socket) until it is full, then put it back in blocking mode,
    as an attacker that wants the host's next write to wait would."""
    os.set_blocking(fd, False)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(fd, True)


@asynccontextmanager
async def raw_guest(path: Path | str | None = None, *, sock: trio.socket.SocketType | None = None,
                    **kw: int) -> AsyncIterator[RawGuest]:
    """A RawGuest dialling `path` (or on `sock`), closed (memory unmapped) at the end."""
    if sock is not None:
        conn = FrontendConnection(sock)
    else:
        assert path is not None
        conn = await FrontendConnection.connect(path)
    guest = RawGuest(conn, **kw)
    try:
        yield guest
    finally:
        await guest.aclose()


__all__ = ["BASE", "BUFFERS", "CTRL_VQ", "INDIRECT", "STATUS", "VERSION_1", "RawGuest",
           "areas", "fill", "raw_guest"]
