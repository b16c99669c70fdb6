"""In-process rigs: a HostRuntime and GuestRuntimes joined by socketpairs (the same
vhost-user messages as between processes), and the test XDP program."""

from __future__ import annotations

import gc
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trio

from vxdp.bpf.program import Program
from vxdp.runtime import GuestRuntime, HostRuntime
from vxdp.runtime.wire import WirePort

HERE = Path(__file__).parent
PROGS = HERE.parent / "progs"


def core_unavailable() -> str | None:
    try:
        import vxdp.native  # noqa: F401
    except ImportError as exc:
        return f"the C packet core does not load: {exc}"
    return None


def mix_object() -> Path:
    """tests/vxdp/runtime/progs/xdp_runtime_mix.c compiled (skips without clang)."""
    from vxdp.bpf.clang import clang_unavailable, compile_c
    reason = clang_unavailable()
    if reason:
        pytest.skip(reason)
    return compile_c(HERE / "progs" / "xdp_runtime_mix.c", flags=[f"-I{PROGS}"])


def mix_program() -> Program:
    reason = core_unavailable()
    if reason:
        pytest.skip(reason)
    from vxdp.runtime import load_program
    return load_program(mix_object())


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
    """Sockets, eventfds and memfds of a test are all closed when it ends."""
    before = _open_fds()
    yield
    leaked = {fd: t for fd, t in _open_fds().items() if before.get(fd) != t}
    if leaked:  # mmap keeps an fd until its last view goes: collect, then look again
        gc.collect()
        leaked = {fd: t for fd, t in _open_fds().items() if before.get(fd) != t}
    assert not leaked, f"fds left open: {leaked}"


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait (polling) until `predicate()` holds; fail naming `what` after `timeout`."""
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.005)
        return
    raise AssertionError(f"timed out waiting for {what}")


class Rig:
    """A host with guest sockets served over socketpairs; guests that dial them."""

    def __init__(self, nursery: trio.Nursery, host: HostRuntime) -> None:
        self.nursery = nursery
        self.host = host
        self.guests: list[GuestRuntime] = []
        self.scopes: dict[int, trio.CancelScope] = {}
        self._dialers: dict[int, trio.MemorySendChannel[trio.socket.SocketType]] = {}

    def connect(self, n: int) -> None:
        """A new connection to host socket n: the host side is served, the guest side
        goes to guest n's next dial."""
        a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        scope = trio.CancelScope()
        self.scopes[n] = scope

        async def serve() -> None:
            with scope:
                await self.host.guests[n].serve_socket(a)
            a.close()
        self.nursery.start_soon(serve)
        self._dialers[n].send_nowait(b)

    def socket_to(self, n: int) -> trio.socket.SocketType:
        """A connected socket whose other end host socket n serves (a migration's
        destination, in process)."""
        a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

        async def serve() -> None:
            await self.host.guests[n].serve_socket(a)
            a.close()
        self.nursery.start_soon(serve)
        return b

    def kill_host_side(self, n: int) -> None:
        """The host's end of guest n's connection goes away (as when the host dies)."""
        self.scopes[n].cancel()

    async def add_guest(self, port: WirePort | None = None, **kw: object) -> GuestRuntime:
        n = len(self.guests)
        send, recv = trio.open_memory_channel[trio.socket.SocketType](4)
        self._dialers[n] = send
        guest = GuestRuntime(None, port=port, retry=0.01, **kw)  # type: ignore[arg-type]
        self.guests.append(guest)

        async def dial() -> trio.socket.SocketType:
            return await recv.receive()
        await self.nursery.start(lambda task_status: guest.run(dial=dial,
                                                              task_status=task_status))
        self.connect(n)
        await until(lambda: guest.ready.is_set(), f"guest {n} DRIVER_OK")
        return guest


@pytest.fixture(params=["c", "python"])
def datapath(request: pytest.FixtureRequest) -> str:
    """The host datapath a rig runs: the C port, or the Python device model."""
    if request.param == "c" and core_unavailable() is not None:
        pytest.skip(str(core_unavailable()))
    return str(request.param)


@pytest.fixture
async def rig_factory(datapath: str) -> AsyncIterator[Callable[..., Rig]]:
    made: list[tuple[Rig, trio.Nursery]] = []
    async with trio.open_nursery() as nursery:

        def make(sockets: int = 1, **kw: object) -> Rig:
            host = HostRuntime([f"unused-{i}.sock" for i in range(sockets)],
                               datapath=datapath, **kw)  # type: ignore[arg-type]
            nursery.start_soon(host.pump_wire)
            rig = Rig(nursery, host)
            made.append((rig, nursery))
            return rig
        yield make
        nursery.cancel_scope.cancel()
    for rig, _ in made:
        for g in rig.guests:
            g.close()
        rig.host.close()
    # the guests' mappings (and the fds mmap keeps) go with the last reference
    made.clear()
