"""DPDK testpmd as the peer: skip without it, short socket paths, an injectable port."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import trio

from vxdp import dpdk
from vxdp.runtime.wire import WirePort, WireSpec


@pytest.fixture
def testpmd() -> str:
    """The testpmd binary; skips (saying why) where it is absent or cannot start."""
    reason = dpdk.unavailable()
    if reason is not None:
        pytest.skip(f"needs DPDK testpmd: {reason}")
    binary = dpdk.find_testpmd()
    assert binary is not None
    return binary


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for vhost-user sockets (sun_path holds 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="vxdp-io-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _open_fds() -> dict[int, str]:
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
    return fds


@pytest.fixture(autouse=True)
def no_leaked_fds() -> Iterator[None]:
    """ptys, sockets, eventfds and memfds of a test are all closed when it ends."""
    before = _open_fds()
    yield
    gc.collect()
    leaked = {fd: t for fd, t in _open_fds().items() if before.get(fd) != t}
    assert not leaked, f"fds left open: {leaked}"


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll `predicate` until it holds; fail naming `what` after `timeout` seconds."""
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out waiting for {what}")


class InjectPort(WirePort):
    """A port the test feeds (`inject`) and that keeps what it is sent (`sent`)."""

    def __init__(self) -> None:
        super().__init__(WireSpec("null"))
        self._in, self._out = trio.open_memory_channel[list[bytes]](1000)
        self.sent: list[bytes] = []

    def inject(self, frames: Sequence[bytes]) -> None:
        self._in.send_nowait(list(frames))

    async def _next(self, limit: int) -> list[bytes] | None:
        frames = await self._out.receive()
        if len(frames) > limit:
            self._in.send_nowait(frames[limit:])  # the rest comes next time
            frames = frames[:limit]
        return frames

    def _emit(self, frames: Sequence[bytes]) -> None:
        self.sent.extend(frames)

    def close(self) -> None:
        super().close()
        self._in.close()
        self._out.close()
