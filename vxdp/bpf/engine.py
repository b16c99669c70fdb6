"""One interface, several engines (DESIGN.md "Execution engines").

    engine = create_engine("interp", program)      # or "kernel", "jit", "smartnic"
    results = engine.run_xdp([pkt1, pkt2])           # one crossing of the FFI per batch
    engine.maps[0].lookup(key)                       # maps in the order of program.maps

An engine creates the maps of `program.maps` itself unless it is handed `maps` of its own
kind (to share maps between programs, as a tail-call target shares its caller's maps).
`load_tail_target(program)` loads another program over the same maps and returns the value
to store in a PROG_ARRAY slot to reach it (a prog fd in the kernel, a handle in the core).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import ClassVar, NamedTuple

from vxdp.bpf.maps import Map
from vxdp.bpf.program import Program, XdpAction
from vxdp.errors import UsageError


class XdpResult(NamedTuple):
    """What one run of an XDP program left behind.

    A NamedTuple rather than a dataclass: one is built per packet, and a tuple costs half
    as much to make (0.68 us against 1.31 us per result, measured on this 2-core machine)."""

    retval: int  # r0 as a u32, as BPF_PROG_TEST_RUN reports it
    data: bytes  # data_meta..data_end after the run (metadata first), as BPF_PROG_TEST_RUN
    redirect: int | None = None  # XDP_REDIRECT: the target ifindex the helper recorded

    @property
    def action(self) -> XdpAction | None:
        """The XDP action, or None when the program returned something else."""
        try:
            return XdpAction(self.retval)
        except ValueError:
            return None


class Engine(ABC):
    """Runs one program (and whatever it tail-calls) over batches of packets."""

    name: ClassVar[str]

    def __init__(self, program: Program, maps: Sequence[Map] | None = None) -> None:
        self.program = program
        self.maps: list[Map] = list(maps) if maps is not None else []

    @abstractmethod
    def run_xdp(self, packets: Sequence[bytes], *, ingress_ifindex: int = 1,
                rx_queue_index: int = 0) -> list[XdpResult]:
        """Run the program once per packet, in order, and return one result per packet."""

    @abstractmethod
    def load_tail_target(self, program: Program) -> int:
        """Load `program` over this engine's maps; return its PROG_ARRAY value."""

    def map_by_name(self, name: str) -> Map:
        for m in self.maps:
            if m.name == name:
                return m
        raise UsageError(f"no map named {name!r} (maps: {', '.join(m.name for m in self.maps)})")

    def close(self) -> None:
        for m in self.maps:
            m.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


ENGINES: dict[str, str] = {
    "interp": "vxdp.bpf.interp:InterpEngine",
    "jit": "vxdp.bpf.jit:JitEngine",
    "kernel": "vxdp.bpf.kernel:KernelEngine",
    "smartnic": "vxdp.bpf.nic.engine:NicEngine",  # the SmartNIC's image, simulated
}


def engine_class(name: str) -> type[Engine]:
    try:
        target = ENGINES[name]
    except KeyError:
        raise UsageError(f"unknown engine {name!r} (choose from {', '.join(ENGINES)})") from None
    module, _, cls = target.partition(":")
    try:
        return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"engine {name!r} is not available: {exc}") from exc


def create_engine(name: str, program: Program, maps: Sequence[Map] | None = None) -> Engine:
    return engine_class(name)(program, maps)
