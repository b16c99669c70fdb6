"""`vxdp host` and `vxdp guest` as child processes: started, read, signalled, reaped.

    async with processes(workdir) as procs:
        host = await procs.host("--socket", "g0.sock", "--control", "h.ctl")
        guest = await procs.guest("--socket", "g0.sock")
        await guest.wait_for("offload: ")

Each child's stdout is collected as it comes (`Proc.out`) so a caller can wait for a line;
stderr is kept for the error message of a child that exits early.  Whatever happens, the
children are killed (SIGKILL) and reaped and their pipes closed when the block ends.  The
scenario runner and the process tests share this.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio


class Proc:
    """One child process; its stdout lines are collected as they come."""

    def __init__(self, name: str, process: trio.Process) -> None:
        self.name = name
        self.process = process
        self.out = ""
        self.err = b""
        self._changed = trio.Event()

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for chunk in self.process.stdout:
            self.out += chunk.decode(errors="replace")
            self._changed.set()
            self._changed = trio.Event()

    async def _read_err(self) -> None:
        assert self.process.stderr is not None
        async for chunk in self.process.stderr:
            self.err += chunk

    async def wait_for(self, text: str, *, after: int = 0) -> int:
        """Wait until `text` appears in stdout past offset `after`; returns its end."""
        while True:
            at = self.out.find(text, after)
            if at >= 0:
                return at + len(text)
            if self.process.poll() is not None:
                await trio.sleep(0.05)  # let the readers drain
                at = self.out.find(text, after)
                if at >= 0:
                    return at + len(text)
                raise AssertionError(f"{self.name} exited ({self.process.returncode}) before "
                                     f"printing {text!r}:\n{self.out}\n{self.err.decode()}")
            await self._changed.wait()

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    async def stop(self) -> int:
        """SIGTERM, then the exit status."""
        self.signal(signal.SIGTERM)
        return await self.process.wait()


class Processes:
    def __init__(self, nursery: trio.Nursery, tmp: Path, cwd: Path | None = None) -> None:
        self.nursery = nursery
        self.tmp = tmp
        self.cwd = cwd
        self.procs: list[Proc] = []

    async def start(self, name: str, *args: str) -> Proc:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("LD_PRELOAD", None)
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "vxdp", *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=self.cwd, env=env)
        proc = Proc(name, process)
        self.nursery.start_soon(proc._read)
        self.nursery.start_soon(proc._read_err)
        self.procs.append(proc)
        return proc

    async def host(self, *args: str) -> Proc:
        proc = await self.start("host", "host", *args)
        await proc.wait_for("vxdp host: serving")
        return proc

    async def guest(self, *args: str) -> Proc:
        proc = await self.start("guest", "guest", *args)
        await proc.wait_for("device_ready")
        return proc


@asynccontextmanager
async def processes(tmp: Path, cwd: Path | None = None) -> AsyncIterator[Processes]:
    """Children are killed (SIGKILL) and reaped, their pipes closed, whatever the test did."""
    procs: Processes | None = None
    try:
        async with trio.open_nursery() as nursery:
            procs = Processes(nursery, tmp, cwd)
            try:
                yield procs
            finally:
                with trio.CancelScope(shield=True):
                    for p in procs.procs:
                        if p.process.poll() is None:
                            p.process.kill()
                        await p.process.wait()
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for p in procs.procs if procs is not None else []:
                for pipe in (p.process.stdout, p.process.stderr):
                    if pipe is not None:
                        await pipe.aclose()


__all__ = ["Proc", "Processes", "processes"]
