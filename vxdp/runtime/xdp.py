"""An XDP hook the runtimes run bursts through: the host's attach point and the guest's
driver mode.

    hook = XdpHook()
    hook.attach(load_program("prog.o"))     # or a Program built any other way
    verdict = hook.run(frames)               # one engine call per burst
    verdict.passed, verdict.tx, verdict.redirect, verdict.dropped
    hook.detach()                            # frames pass untouched again

No program attached: every frame passes and nothing is counted as an action.  The action
counts (`hook.actions`) accumulate over every burst the hook ran, across attach and detach,
as the kernel's per-program statistics do not but an operator's view of a port does; the
program that ran is named in `hook.describe()`.

A program that faults on a frame (`ProgramFault`) costs that frame only: it is counted as
ABORTED (the kernel's `trace_xdp_exception` path) and the rest of the burst runs on.
A return value outside enum xdp_action is treated as ABORTED too, as the kernel's
`bpf_warn_invalid_xdp_action` does.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from host.config import DeviceProfile
from vxdp.bpf.coremaps import CoreMap
from vxdp.bpf.elf import load_object, object_name, select_program
from vxdp.bpf.engine import Engine, XdpResult, create_engine
from vxdp.bpf.maps import Map
from vxdp.bpf.profiles import NATIVE, Profile
from vxdp.bpf.program import Program, XdpAction
from vxdp.errors import ProgramFault, UsageError
from vxdp.vhost_user.fds import describe as describe_fd

#: Action names as the stats file and the demo table spell them.
ACTION_NAMES: tuple[str, ...] = tuple(a.name.lower() for a in XdpAction)


def host_verifier_profile(profile: DeviceProfile) -> Profile:
    """The verifier profile of host-attached programs: the device profile's offload
    capabilities when it offers the offload, else `native` (everything the C core
    runs)."""
    return Profile.from_capabilities(profile.xdp) if profile.xdp is not None else NATIVE


#: The largest object file `read_object` reads: BPF objects are kilobytes, a few MiB with
#: BTF and debug info.
MAX_OBJECT_BYTES = 64 << 20


def read_object(path: Path | str) -> bytes:
    """The bytes of the object file at `path`, read whole, never waiting on the file nor
    taking more than MAX_OBJECT_BYTES: anything but a regular file (a FIFO, whose open
    waits for a writer; /dev/zero, which never ends; a directory) is a usage error."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{path} is {describe_fd(fd)}, not a regular file: an object "
                             f"file is read whole")
        data = bytearray()
        while len(data) <= min(st.st_size, MAX_OBJECT_BYTES) \
                and (chunk := os.read(fd, 1 << 20)):
            data += chunk  # (a file that grows while read is read as far as the limit)
        if max(st.st_size, len(data)) > MAX_OBJECT_BYTES:
            raise UsageError(f"{path} is larger than the {MAX_OBJECT_BYTES >> 20} MiB an "
                             f"object file may have")
        return bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def load_program(path: Path | str, *, section: str | None = None,
                 name: str | None = None) -> Program:
    """The one XDP program of an object file (or the one `section`/`name` pick), read
    with `read_object` (a control socket's client names the path)."""
    return select_program(load_object(read_object(path), name=object_name(path)), section,
                          name)


@dataclass
class Verdict:
    """What one burst became: frames to pass on, to send back, to redirect, and how many
    were dropped (DROP, ABORTED, faults)."""

    passed: list[bytes] = field(default_factory=list)
    tx: list[bytes] = field(default_factory=list)
    redirect: list[tuple[int, bytes]] = field(default_factory=list)  # (ifindex, frame)
    dropped: int = 0


class XdpHook:
    """One attach point; `engine` names the vxdp engine programs run on."""

    def __init__(self, engine: str = "interp") -> None:
        self.engine_name = engine
        self.program: Program | None = None
        self._engine: Engine | None = None
        self.actions: dict[str, int] = dict.fromkeys(ACTION_NAMES, 0)
        self.faults = 0
        self.runs = 0  # bursts run with a program attached
        self.run_ns = 0  # time spent in those bursts

    @property
    def attached(self) -> bool:
        return self._engine is not None

    @property
    def engine_maps(self) -> list[Map]:
        """The attached program's maps, in its map order, whatever the engine (the very
        maps it runs on, and the C ports with it); empty when none is attached."""
        return list(self._engine.maps) if self._engine is not None else []

    @property
    def maps(self) -> list[CoreMap] | None:
        """The attached program's maps when they are core maps (shared with C ports)."""
        if self._engine is None or not all(isinstance(m, CoreMap) for m in self._engine.maps):
            return None
        return [m for m in self._engine.maps if isinstance(m, CoreMap)]

    def attach(self, program: Program) -> None:
        """Load `program` (replacing any attached one); raises InvalidProgram and leaves
        the previous program attached when the engine refuses it."""
        engine = create_engine(self.engine_name, program)
        old, self._engine, self.program = self._engine, engine, program
        if old is not None:
            old.close()

    def detach(self) -> bool:
        """Remove the program; False when none was attached."""
        engine, self._engine, self.program = self._engine, None, None
        if engine is None:
            return False
        engine.close()
        return True

    def describe(self) -> str:
        if self.program is None:
            return "no program"
        return f"{self.program.name} ({self.program.insn_count} insns, engine {self.engine_name})"

    def run(self, frames: Sequence[bytes], *, ingress_ifindex: int = 1,
            rx_queue_index: int = 0) -> Verdict:
        """Run one burst; without a program every frame passes."""
        verdict = Verdict()
        engine = self._engine
        if engine is None or not frames:
            verdict.passed.extend(frames)
            return verdict
        start = time.perf_counter_ns()
        results: Sequence[XdpResult | None]
        try:
            results = engine.run_xdp(frames, ingress_ifindex=ingress_ifindex,
                                     rx_queue_index=rx_queue_index)
        except ProgramFault:
            results = self._one_by_one(engine, frames, ingress_ifindex, rx_queue_index)
        self.run_ns += time.perf_counter_ns() - start
        self.runs += 1
        for result in results:
            self._sort(result, verdict)
        return verdict

    def _one_by_one(self, engine: Engine, frames: Sequence[bytes], ifindex: int,
                    queue: int) -> list[XdpResult | None]:
        out: list[XdpResult | None] = []
        for frame in frames:
            try:
                out.extend(engine.run_xdp([frame], ingress_ifindex=ifindex,
                                          rx_queue_index=queue))
            except ProgramFault:
                self.faults += 1
                out.append(None)
        return out

    def _sort(self, result: XdpResult | None, verdict: Verdict) -> None:
        action = result.action if result is not None else None
        if result is None or action is None or action is XdpAction.ABORTED:
            self.actions["aborted"] += 1
            verdict.dropped += 1
        elif action is XdpAction.DROP:
            self.actions["drop"] += 1
            verdict.dropped += 1
        elif action is XdpAction.PASS:
            self.actions["pass"] += 1
            verdict.passed.append(result.data)
        elif action is XdpAction.TX:
            self.actions["tx"] += 1
            verdict.tx.append(result.data)
        else:
            self.actions["redirect"] += 1
            verdict.redirect.append((result.redirect or 0, result.data))

    def stats(self) -> dict[str, object]:
        """JSON-ready: the program, its action counts, faults and time per burst."""
        return {
            "program": self.program.name if self.program is not None else None,
            "digest": self.program.digest if self.program is not None else None,
            "engine": self.engine_name,
            "actions": dict(self.actions),
            "faults": self.faults,
            "bursts": self.runs,
            "ns_per_burst": self.run_ns // self.runs if self.runs else 0,
        }

    def close(self) -> None:
        self.detach()


__all__ = ["ACTION_NAMES", "MAX_OBJECT_BYTES", "Verdict", "XdpHook", "load_program", "read_object"]
