"""DPDK testpmd as a peer: locate it, launch it, drive its prompt, read its counters, stop it.

The vhost-user peers nobody here wrote: testpmd's `virtio_user` port (a front-end that
dials a back-end's socket) and its `net_vhost` port (a back-end that listens).  Tests and
the bench use them through `open_testpmd()`:

    async with open_testpmd(["virtio_user0,path=/tmp/h.sock,queues=1"]) as pmd:
        await pmd.command("set fwd txonly")
        await pmd.command("start")
        stats = await pmd.port_stats(0)

How testpmd is run, and why:

* `--no-huge --no-pci -m 512`: no hugepages and no devices are needed for vdevs; EAL
  memory comes from anonymous pages (virtio_user shares it with the back-end as memfds).
* `--lcores MAIN@CPU,FWD@CPU`: testpmd needs a main lcore and one forwarding lcore; the
  mapping puts both on any CPUs (two processes on a 2-CPU machine each take one CPU for
  forwarding and park their main lcore on the other).
* `--file-prefix`: unique per instance, so two testpmds (and parallel tests) never share
  /var/run/dpdk/<prefix>; the directory is removed when the instance stops.
* Interactive mode (`-i`) with commands on a stdin pipe; stdout and stderr on a pty, so
  testpmd's printf output is line-buffered and arrives as it is printed (on a pipe it
  sits in stdio's buffer until exit).  A reader task drains the pty all the time, so
  testpmd never blocks on a full terminal.
* testpmd runs in its own session (process group); `stop()` asks with `quit`, then
  SIGTERM, then SIGKILL to the whole group, each with a deadline.

`unavailable()` says why testpmd cannot be used here (absent, or it does not start), for
tests to skip with; it probes once per process.
"""

from __future__ import annotations

import itertools
import os
import pty
import re
import shutil
import signal
import subprocess
import termios
import tty
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from vxdp.errors import VxdpError

TESTPMD = "dpdk-testpmd"
#: Where EAL keeps a process's runtime files (as root; XDG_RUNTIME_DIR otherwise).
RUN_DIR = Path("/var/run/dpdk")
PROMPT = "testpmd> "
MBUFS = 32768
MEMORY_MB = 512
START_TIMEOUT = 20.0
COMMAND_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
_HINT = "Debian package dpdk (tools/debian-deps.sh installs it)"
_counter = itertools.count()
_probe: str | bool | None = False  # False: not probed yet


class DpdkError(VxdpError, RuntimeError):
    """testpmd could not be started, did not answer, or said something we cannot read."""


# -- finding and probing ------------------------------------------------------------------

def find_testpmd() -> str | None:
    """The testpmd binary: $VXDP_TESTPMD, else `dpdk-testpmd` on PATH, else None."""
    env = os.environ.get("VXDP_TESTPMD")
    if env:
        return env if os.access(env, os.X_OK) else None
    return shutil.which(TESTPMD)


def run_dir(prefix: str) -> Path:
    """EAL's runtime directory of one instance (root: /var/run/dpdk/<prefix>)."""
    if os.geteuid() == 0:
        return RUN_DIR / prefix
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return Path(base) / "dpdk" / prefix


def unique_prefix(name: str = "pmd") -> str:
    """A --file-prefix no other instance uses: process id, a counter, a name."""
    return f"vxdp-{os.getpid()}-{next(_counter)}-{name}"


def _probe_start(binary: str) -> str | None:
    prefix = unique_prefix("probe")
    argv = [binary, *eal_args(["net_null0"], prefix=prefix, lcores=lcores_for(0), memory_mb=128),
            "--", "-i", "--total-num-mbufs=2048"]
    try:
        done = subprocess.run(argv, input=b"quit\n", capture_output=True, timeout=START_TIMEOUT,
                              start_new_session=True)
    except subprocess.TimeoutExpired:
        return f"{binary} did not answer within {START_TIMEOUT:g} s"
    except OSError as exc:
        return f"{binary} cannot be run: {exc.strerror}"
    finally:
        shutil.rmtree(run_dir(prefix), ignore_errors=True)
    out = (done.stdout + done.stderr).decode(errors="replace")
    if done.returncode != 0 or "Bye" not in out:
        tail = " | ".join(line.strip() for line in out.strip().splitlines()[-3:])
        return f"{binary} cannot start here (exit {done.returncode}): {tail}"
    return None


def unavailable() -> str | None:
    """Why testpmd cannot be used on this machine, or None when it can (probed once)."""
    global _probe
    if _probe is False:
        binary = find_testpmd()
        _probe = (f"{TESTPMD} not found ({_HINT})" if binary is None
                  else _probe_start(binary))
    assert _probe is not True
    return _probe


def eal_args(vdevs: Sequence[str], *, prefix: str, lcores: str = "0@0,1@1",
             memory_mb: int = MEMORY_MB) -> list[str]:
    """EAL options for vdev-only testpmd without hugepages or PCI."""
    args = ["--lcores", lcores, "--no-huge", "--no-pci", "-m", str(memory_mb),
            "--file-prefix", prefix, "--log-level", "lib.eal:warning"]
    for vdev in vdevs:
        args += ["--vdev", vdev]
    return args


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def lcores_for(instance: int) -> str:
    """Lcore mapping for the `instance`-th concurrent testpmd: forwarding lcores on
    different CPUs where there are two, main lcores parked on the other one."""
    if cpu_count() < 2:
        return "0@0,1@0"
    return "0@0,1@1" if instance % 2 == 0 else "0@1,1@0"


def forwarding_cpu(instance: int) -> int | None:
    """The CPU the `instance`-th testpmd forwards on (`lcores_for`), None with one CPU."""
    if cpu_count() < 2:
        return None
    return int(lcores_for(instance).split(",")[1].split("@")[1])


# -- port statistics ------------------------------------------------------------------------

@dataclass(frozen=True)
class PortStats:
    """`show port stats N`: cumulative counters and testpmd's rates since its last show."""

    port: int
    rx_packets: int
    rx_bytes: int
    rx_missed: int
    rx_errors: int
    rx_nombuf: int
    tx_packets: int
    tx_bytes: int
    tx_errors: int
    rx_pps: int | None = None
    tx_pps: int | None = None


_BLOCK = re.compile(r"NIC statistics for port (\d+)\s*#+(.*?)#{20,}", re.S)
_FIELD = re.compile(r"([A-Za-z][A-Za-z-]*):\s+(\d+)")


def parse_port_stats(text: str) -> dict[int, PortStats]:
    """Every `NIC statistics for port N` block in `text` (the last one of a port wins)."""
    out: dict[int, PortStats] = {}
    for match in _BLOCK.finditer(text):
        fields = {k.lower(): int(v) for k, v in _FIELD.findall(match.group(2))}
        try:
            out[int(match.group(1))] = PortStats(
                int(match.group(1)), fields["rx-packets"], fields["rx-bytes"],
                fields["rx-missed"], fields["rx-errors"], fields["rx-nombuf"],
                fields["tx-packets"], fields["tx-bytes"], fields["tx-errors"],
                fields.get("rx-pps"), fields.get("tx-pps"))
        except KeyError as exc:
            raise DpdkError(f"port statistics without {exc.args[0]}: {match.group(0)!r}") \
                from None
    return out


_NEGOTIATED = re.compile(r"negotiated Virtio features: (0x[0-9a-fA-F]+)")
_PROTOCOL = re.compile(r"negotiated Vhost-user protocol features: (0x[0-9a-fA-F]+)")
_MESSAGE = re.compile(r"read message (VHOST_USER_[A-Z_]+)")


def vhost_log(text: str) -> dict[str, object]:
    """What DPDK's vhost library logged (net_vhost port): the vhost-user messages it read
    in order, and the last negotiated virtio and protocol features (None if never)."""
    features = _NEGOTIATED.findall(text)
    protocol = _PROTOCOL.findall(text)
    return {"messages": _MESSAGE.findall(text),
            "features": int(features[-1], 16) if features else None,
            "protocol_features": int(protocol[-1], 16) if protocol else None}


# -- a running testpmd ----------------------------------------------------------------------

class Testpmd:
    """One interactive testpmd process (made by `open_testpmd`)."""

    def __init__(self, process: trio.Process, master: int, prefix: str,
                 argv: list[str]) -> None:
        self.process = process
        self.prefix = prefix
        self.argv = argv
        self._master = master
        self._text: list[str] = []
        self._size = 0
        self._changed = trio.Event()
        self._eof = False

    # -- output --------------------------------------------------------------------

    @property
    def output(self) -> str:
        """Everything testpmd printed so far (\\r removed)."""
        if len(self._text) > 1:
            self._text = ["".join(self._text)]
        return self._text[0] if self._text else ""

    def _received(self, text: str) -> None:
        self._text.append(text)
        self._size += len(text)
        self._changed.set()
        self._changed = trio.Event()

    async def _reader(self) -> None:
        try:
            while True:
                try:
                    await trio.lowlevel.wait_readable(self._master)
                    chunk = os.read(self._master, 65536)
                except BlockingIOError:
                    continue
                except (OSError, trio.ClosedResourceError):
                    chunk = b""  # EIO: every writer of the pty is gone
                if not chunk:
                    break
                self._received(chunk.decode(errors="replace").replace("\r", ""))
        finally:
            self._eof = True
            self._changed.set()

    async def wait_for(self, pattern: str | re.Pattern[str], *, start: int = 0,
                       timeout: float = COMMAND_TIMEOUT) -> re.Match[str]:
        """Wait until the output from offset `start` matches `pattern`."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        with trio.move_on_after(timeout):
            while True:
                match = regex.search(self.output, start)
                if match is not None:
                    return match
                if self._eof:
                    raise DpdkError(f"testpmd exited while waiting for {regex.pattern!r}: "
                                    f"{self.tail()}")
                await self._changed.wait()
        raise DpdkError(f"testpmd printed no {regex.pattern!r} within {timeout:g} s: "
                        f"{self.tail()}")

    def tail(self, lines: int = 8) -> str:
        return " | ".join(line.strip() for line in self.output.strip().splitlines()[-lines:])

    def port_mac(self, port: int = 0) -> bytes:
        """The MAC testpmd gave port `port` (its `Port N: MAC` line at start)."""
        match = re.search(rf"^Port {port}: ((?:[0-9A-Fa-f]{{2}}:){{5}}[0-9A-Fa-f]{{2}})\s*$",
                          self.output, re.M)
        if match is None:
            raise DpdkError(f"testpmd printed no MAC for port {port}")
        return bytes.fromhex(match.group(1).replace(":", ""))

    # -- commands ------------------------------------------------------------------

    async def command(self, line: str, *, timeout: float = COMMAND_TIMEOUT,
                      retype_after: float | None = None) -> str:
        """Type one command; return what testpmd printed before its next prompt.

        testpmd's line editor can lose a line typed while its event thread prints (a
        vhost-user connection or a link change, asynchronously).  An idempotent command
        may pass `retype_after`: with no prompt by then it is typed again, until
        `timeout` runs out."""
        if "\n" in line:
            raise ValueError("one command at a time")
        assert self.process.stdin is not None
        deadline = trio.current_time() + timeout
        while True:
            mark = self._size
            await self.process.stdin.send_all(line.encode() + b"\n")
            left = deadline - trio.current_time()
            wait = left if retype_after is None else min(retype_after, left)
            try:
                prompt = await self.wait_for(re.escape(PROMPT), start=mark, timeout=wait)
            except DpdkError:
                if self._eof or retype_after is None or trio.current_time() >= deadline:
                    raise
                continue
            return self.output[mark:prompt.start()]

    async def port_stats(self, port: int = 0) -> PortStats:
        text = await self.command(f"show port stats {port}", retype_after=3.0)
        stats = parse_port_stats(text)
        if port not in stats:
            raise DpdkError(f"no statistics for port {port} in {text!r}")
        return stats[port]

    async def clear_stats(self, port: int = 0) -> None:
        await self.command(f"clear port stats {port}")

    async def forward(self, mode: str) -> None:
        """Set the forwarding mode (io, txonly, rxonly, ...) and start forwarding."""
        await self.command(f"set fwd {mode}")
        await self.command("start")

    async def halt(self) -> None:
        """Stop forwarding (testpmd prints its forward statistics)."""
        await self.command("stop")

    # -- stopping ------------------------------------------------------------------

    async def stop(self) -> int:
        """`quit`, then SIGTERM, then SIGKILL to the process group; the exit status.
        Shielded: it finishes even when the caller is being cancelled."""
        with trio.CancelScope(shield=True):
            proc = self.process
            if proc.returncode is None and proc.stdin is not None:
                with trio.move_on_after(1):
                    try:
                        await proc.stdin.send_all(b"quit\n")
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
            for sig, wait in ((None, STOP_TIMEOUT), (signal.SIGTERM, 2.0),
                              (signal.SIGKILL, 5.0)):
                if proc.returncode is not None:
                    break
                if sig is not None:
                    try:
                        os.killpg(proc.pid, sig)
                    except ProcessLookupError:
                        pass
                with trio.move_on_after(wait):
                    await proc.wait()
            if proc.stdin is not None:
                await proc.stdin.aclose()
            shutil.rmtree(run_dir(self.prefix), ignore_errors=True)
        return proc.returncode if proc.returncode is not None else -9


@asynccontextmanager
async def open_testpmd(vdevs: Sequence[str], *, args: Sequence[str] = (),
                       prefix: str | None = None, lcores: str | None = None,
                       mbufs: int = MBUFS, memory_mb: int = MEMORY_MB,
                       start_timeout: float = START_TIMEOUT,
                       binary: str | None = None) -> AsyncIterator[Testpmd]:
    """Start an interactive testpmd over `vdevs` and yield it once its prompt is up;
    stop it (and remove its runtime directory) on the way out, whatever happened."""
    binary = binary or find_testpmd()
    if binary is None:
        raise DpdkError(f"{TESTPMD} not found ({_HINT})")
    prefix = prefix or unique_prefix()
    argv = [binary, *eal_args(vdevs, prefix=prefix, lcores=lcores or lcores_for(0),
                              memory_mb=memory_mb),
            "--", "-i", f"--total-num-mbufs={mbufs}", *args]
    master, slave = pty.openpty()
    try:
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.OPOST  # no \n -> \r\n on output
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        os.set_blocking(master, False)
        process = await trio.lowlevel.open_process(
            argv, stdin=subprocess.PIPE, stdout=slave, stderr=slave, start_new_session=True)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    pmd = Testpmd(process, master, prefix, argv)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pmd._reader)
            try:
                await pmd.wait_for(re.escape(PROMPT), timeout=start_timeout)
                yield pmd
            finally:
                await pmd.stop()
                with trio.move_on_after(2):
                    while not pmd._eof:
                        await pmd._changed.wait()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The reader never fails: what comes out is the body's (or start's) own error,
        # which the caller gets as it was raised, not wrapped by our nursery.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        trio.lowlevel.notify_closing(master)
        os.close(master)


__all__ = ["COMMAND_TIMEOUT", "MBUFS", "PROMPT", "DpdkError", "PortStats", "Testpmd",
           "cpu_count", "eal_args", "find_testpmd", "lcores_for", "open_testpmd",
           "parse_port_stats", "run_dir", "unavailable", "unique_prefix", "vhost_log"]
