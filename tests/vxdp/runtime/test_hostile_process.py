"""A hostile guest against a `vxdp host` process: fds that would make the host wait,
memory that shrinks under it.

Every test runs the host as a process serving two guests (an attacker on `bad.sock`, a
well-behaved `GuestRuntime` on `good.sock`) with a generator on its wire, lets the
attacker do its worst, then checks that the host still serves: its control socket
answers, the good guest keeps receiving frames, the process is alive.  A host that
blocked in a write would fail those within the test's deadline instead of hanging it,
and one that took a SIGBUS dies alone, not with the test runner."""

from __future__ import annotations

import fcntl
import os
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from vxdp.control import ControlClient
from vxdp.runtime import GuestRuntime, open_port
from vxdp.vhost_user.messages import VhostUserProtocolFeature as PF

from .conftest import core_unavailable, until
from .hostile import STATUS, VERSION_1, fill, raw_guest
from .procs import Proc, processes

pytestmark = pytest.mark.skipif(core_unavailable() is not None,
                                reason=str(core_unavailable()))

EVENTFD_MAX = 0xFFFF_FFFF_FFFF_FFFE  # a write of 1 on top of this waits (blocking mode)


async def ctl(path: Path, op: str, /, **args: Any) -> Any:
    """One control request from a worker thread, answered within 5 s or failed."""
    def go() -> Any:
        with ControlClient(path, timeout=5) as client:
            return client.call(op, **args)
    return await trio.to_thread.run_sync(go)


class Stage:
    """The host process, its control socket, the good guest."""

    def __init__(self, host: Proc, tmp: Path, good: GuestRuntime) -> None:
        self.host = host
        self.bad = tmp / "bad.sock"
        self.ctl = tmp / "host.ctl"
        self.good = good

    async def still_serving(self) -> dict[str, Any]:
        """The host answers on its control socket and moves frames to the good guest;
        returns its stats."""
        before = self.good.stack["packets"]
        stats = await ctl(self.ctl, "stats")
        await until(lambda: self.good.stack["packets"] >= before + 20,
                    "the good guest to keep receiving", timeout=10)
        assert self.host.process.poll() is None
        return stats

    async def bad_left(self) -> str:
        """Wait until the attacker's session is over; its reason."""
        async def gone() -> bool:
            return not (await ctl(self.ctl, "guest.list"))[0]["connected"]
        with trio.fail_after(10):
            while not await gone():
                await trio.sleep(0.05)
        return str((await ctl(self.ctl, "stats"))["guests"][0]["last_disconnect"])


@asynccontextmanager
async def stage(tmp: Path, datapath: str = "c") -> AsyncIterator[Stage]:
    async with processes(tmp) as procs:
        host = await procs.host(
            "--socket", str(tmp / "bad.sock"), "--socket", str(tmp / "good.sock"),
            "--control", str(tmp / "host.ctl"), "--datapath", datapath,
            "--wire", "gen:count=10000000,rate=3000,size=128,seed=3")
        good = GuestRuntime(tmp / "good.sock", port=open_port("null"), retry=0.05)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(good.run)
                await until(lambda: good.ready.is_set(), "the good guest's DRIVER_OK")
                try:
                    yield Stage(host, tmp, good)
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            good.close()


async def test_a_call_eventfd_that_would_block_is_coalesced_not_waited_on(
        tmp_path: Path) -> None:
    """A blocking eventfd whose counter is full: the host's next write of 1 would wait
    until someone reads it.  The host takes the fd non-blocking and folds the
    notification into the one pending."""
    full = os.eventfd(0)  # blocking, as the attacker made it
    os.eventfd_write(full, EVENTFD_MAX)
    try:
        with trio.fail_after(60):
            async with stage(tmp_path) as s, raw_guest(s.bad) as bad:
                await bad.bring_up(calls={0: full})
                bad.post_rx(32)  # frames come in; each burst wants an rx interrupt
                stats = await s.still_serving()
                await s.still_serving()
                assert stats["guests"][0]["live"]
                assert stats["guests"][0]["interrupts_coalesced"] > 0
                assert os.eventfd_read(full) == EVENTFD_MAX  # nothing more was added
    finally:
        os.close(full)


async def test_a_call_fd_whose_o_nonblock_is_taken_back_ends_only_that_session(
        tmp_path: Path) -> None:
    """The attacker keeps clearing O_NONBLOCK on its (shared) eventfd: the host's write
    blocks all the same, the core's watchdog interrupts it, and the attacker's session
    ends naming the fd; the other guest never notices."""
    full = os.eventfd(0)
    os.eventfd_write(full, EVENTFD_MAX)
    stop = threading.Event()

    def take_back() -> None:
        while not stop.wait(0.001):
            flags = fcntl.fcntl(full, fcntl.F_GETFL)
            fcntl.fcntl(full, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)

    thief = threading.Thread(target=take_back, daemon=True)
    try:
        with trio.fail_after(60):
            async with stage(tmp_path) as s, raw_guest(s.bad) as bad:
                await bad.bring_up(calls={0: full})
                thief.start()
                bad.post_rx(32)
                reason = await s.bad_left()
                assert "vring 0 call fd" in reason and "blocked" in reason
                assert "O_NONBLOCK" in reason
                await s.still_serving()
        assert "vring 0 call fd" in s.host.err.decode()  # logged
    finally:
        stop.set()
        if thief.is_alive():
            thief.join()
        os.close(full)


async def test_a_full_pipe_as_call_fd_is_coalesced_not_waited_on(tmp_path: Path) -> None:
    r, w = os.pipe()  # blocking; the attacker fills it and never reads
    fill(w)
    try:
        with trio.fail_after(60):
            async with stage(tmp_path) as s, raw_guest(s.bad) as bad:
                await bad.bring_up(calls={0: w})
                bad.post_rx(32)
                stats = await s.still_serving()
                await s.still_serving()
                assert stats["guests"][0]["live"]
                assert stats["guests"][0]["interrupts_coalesced"] > 0
    finally:
        os.close(r)
        os.close(w)


async def test_a_call_fd_that_is_no_eventfd_is_refused_and_the_ring_goes_on(
        tmp_path: Path) -> None:
    """/dev/zero as the call fd: refused with a nack, naming what it is."""
    devzero = os.open("/dev/zero", os.O_RDWR)
    try:
        with trio.fail_after(60):
            async with stage(tmp_path) as s, raw_guest(s.bad) as bad:
                with pytest.raises(Exception, match="refused VHOST_USER_SET_VRING_CALL"):
                    await bad.bring_up(calls={0: devzero})
                await s.still_serving()
        assert "call fd" in s.host.err.decode() and "character device" in s.host.err.decode()
    finally:
        os.close(devzero)


async def test_a_backend_request_channel_kept_and_filled_costs_only_the_channel(
        tmp_path: Path) -> None:
    """The attacker hands the host one end of its back-end request channel but keeps
    that end too, fills the other end's buffer through it and puts the shared socket
    back in blocking mode.  A config change for it (link down) must not stop the host:
    the channel fails after BACKEND_ACK_TIMEOUT, the session and the host go on."""
    with trio.fail_after(60):
        async with stage(tmp_path) as s, raw_guest(s.bad) as bad:
            kept, far = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                await bad.conn.negotiate(
                    VERSION_1 | STATUS | 1 << 30,
                    1 << PF.REPLY_ACK | 1 << PF.CONFIG | 1 << PF.STATUS | 1 << PF.BACKEND_REQ)
                await bad.conn.send(bad.core.set_backend_req_fd(kept.fileno()))
                for status in (1, 3, 11):  # to FEATURES_OK: STATUS is negotiated
                    await bad.conn.send(bad.core.set_status(status))
                fill(kept.fileno())  # and O_NONBLOCK off the description the host shares
                await ctl(s.ctl, "guest.link", guest=0, up=False)
                await s.still_serving()
                await until(lambda: b"back-end request channel failed" in s.host.err,
                            "the channel to fail", timeout=15)
                await s.still_serving()
                assert await bad.conn.value(bad.core.get_features())  # session goes on
            finally:
                kept.close()
                far.close()
        assert "no ack in time" in s.host.err.decode()


@pytest.mark.parametrize("datapath", ["c", "python"])
async def test_memory_shrunk_under_the_host_ends_only_that_session(tmp_path: Path,
                                                                   datapath: str) -> None:
    """The attacker truncates its (unsealable) memfd after DRIVER_OK: the host's next
    look at its rings, from C or from the Python model, raises SIGBUS.  The host maps
    zero pages over the region, ends that session naming the region, and serves the
    other guest."""
    with trio.fail_after(60):
        async with stage(tmp_path, datapath) as s, raw_guest(s.bad) as bad:
            await bad.bring_up()
            bad.post_rx(8)
            await until(lambda: bad.rings[0].has_used(), "frames in the attacker's ring")
            bad.shrink()  # from here on nobody may touch that memory: the host does
            bad.kicks[1].signal()
            reason = await s.bad_left()
            assert "memory region 0" in reason and "SIGBUS" in reason
            assert "guest_phys_addr 0x40000000" in reason
            await s.still_serving()
            await s.still_serving()
    err = s.host.err.decode()
    assert "memory region 0" in err and "lost its backing" in err
