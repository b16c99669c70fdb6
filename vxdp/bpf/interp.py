"""The `interp` engine: programs run on the C interpreter of the packet core.

    run_raw(insns, mem) -> r0             # the ubpf / bpf_conformance harness setting
    InterpEngine(program).run_xdp(pkts)   # XDP in the frame of BPF_PROG_TEST_RUN

The core loads the program after checking its structure itself (hostile input), rebinds
each LD_IMM64 map reference (imm = index into `program.maps`) to its own map, and bounds-
checks every memory access at run time; a bad access raises ProgramFault naming the packet,
the pc and the address.  A batch crosses the FFI once.

Helpers that have state keep it per engine: `cpu` (get_smp_processor_id and the per-CPU map
slot, default 0), `seed` (get_prandom_u32 is a seeded xorshift128+, so runs repeat), and the
trace_printk text, read with `trace_lines()`.

The C datapath (host.datapath, guest.datapath) runs programs in its own loops and loads
them with `load_xdp(program, maps, engine)`: interpreted, or compiled by the `jit` engine
and attached, so that the datapath's runs call the compiled code.
"""

from __future__ import annotations

from collections.abc import Sequence

from vxdp import native
from vxdp.bpf import isa
from vxdp.bpf.coremaps import CoreMap
from vxdp.bpf.engine import Engine, XdpResult, engine_class
from vxdp.bpf.maps import Map, fill_slots
from vxdp.bpf.program import Program, ProgType
from vxdp.errors import InvalidProgram, UsageError

#: The engines the C datapath can run a program on (the kernel engine runs in the kernel).
CORE_ENGINES = ("interp", "jit")


def load_xdp(program: Program, maps: Sequence[CoreMap], engine: str = "interp"
             ) -> native.ProgHandle:
    """`program` loaded into the core over `maps` for XDP runs on `engine` (interp, or jit:
    compiled, cached by digest, and attached to the loaded program)."""
    if program.prog_type != ProgType.XDP:
        raise UsageError(f"program {program.name!r} is {program.prog_type.name}, not xdp")
    if engine not in CORE_ENGINES:
        raise UsageError(f"the C datapath runs programs on {' or '.join(CORE_ENGINES)}, "
                         f"not {engine!r}")
    handles = [m.handle for m in maps]
    if engine == "jit":
        engine_class("jit")  # a UsageError saying why, where nothing compiles
        from vxdp.bpf import jit
        return jit.load(program.insns, native.MODE_XDP, handles)
    return native.prog_load(program.insns, native.MODE_XDP, handles)


def run_raw(insns: bytes, mem: bytes = b"") -> int:
    """Run `insns` as the bpf_conformance harness does and return r0 as a u64.

    r1 points at a writable copy of `mem` (0 when it is empty), r2 is len(mem), r10 the top
    of a 512-byte stack; the harness helpers 0-5 of ubpf are callable (helper 5 unwinds the
    program when it returns 0).  Raises InvalidProgram at load and ProgramFault at run time.
    """
    prog = native.prog_load(insns, native.MODE_RAW)
    ret, _ = native.run_raw(prog, mem)
    return ret


def run_raw_mem(insns: bytes, mem: bytes = b"") -> tuple[int, bytes]:
    """As run_raw, also returning the memory as the program left it."""
    prog = native.prog_load(insns, native.MODE_RAW)
    return native.run_raw(prog, mem)


class InterpEngine(Engine):
    """XDP programs on the C interpreter, over CoreMaps."""

    name = "interp"

    def __init__(self, program: Program, maps: Sequence[Map] | None = None, *, cpu: int = 0,
                 seed: int = 0) -> None:
        if maps is not None and not all(isinstance(m, CoreMap) for m in maps):
            raise UsageError("the interp engine shares only core maps (CoreMap)")
        super().__init__(program, maps)
        self._owned = maps is None
        if maps is None:
            self.maps = [CoreMap(spec) for spec in program.maps]
            fill_slots(program.maps, self.maps)
        self._env = native.env_new(seed)
        native.env_set_cpu(self._env, cpu)
        self._cpu = cpu
        self._targets: list[native.ProgHandle] = []
        self._trace = b""
        self._prog = self._load(program)

    def _load(self, program: Program) -> native.ProgHandle:
        if program.prog_type != ProgType.XDP:
            raise UsageError(f"program {program.name!r} is {program.prog_type.name}, not xdp")
        if len(program.maps) > len(self.maps):
            raise InvalidProgram(f"program {program.name!r} needs {len(program.maps)} maps, "
                                 f"the engine has {len(self.maps)}")
        handles = [m.handle for m in self.maps if isinstance(m, CoreMap)]
        try:
            # the kernel's wording first (vxdp.bpf.isa); the core checks again, as it must
            isa.check_program(isa.decode(program.insns))
            return native.prog_load(program.insns, native.MODE_XDP, handles)
        except InvalidProgram as exc:
            raise InvalidProgram(f"program {program.name!r}: {exc}") from None

    @property
    def cpu(self) -> int:
        return self._cpu

    @cpu.setter
    def cpu(self, cpu: int) -> None:
        native.env_set_cpu(self._env, cpu)
        self._cpu = cpu

    def seed(self, seed: int) -> None:
        """Restart get_prandom_u32's sequence from `seed`."""
        native.env_set_seed(self._env, seed)

    def run_xdp(self, packets: Sequence[bytes], *, ingress_ifindex: int = 1,
                rx_queue_index: int = 0) -> list[XdpResult]:
        runs = native.run_xdp(self._prog, self._env, list(packets), ingress_ifindex,
                              rx_queue_index)
        return [XdpResult(ret, data, redirect) for ret, data, redirect in runs]

    def cpu_ns_per_packet(self, packets: Sequence[bytes], repeat: int, *,
                          ingress_ifindex: int = 1, rx_queue_index: int = 0) -> float:
        """Benchmarks: the batch run `repeat` times inside the core (one FFI crossing); the
        thread's CPU time per packet, which leaves out time given to other processes, as
        BPF_PROG_TEST_RUN's own timer does.  Map state carries over, as in run_xdp."""
        ns = native.run_xdp_cpu_ns(self._prog, self._env, list(packets), repeat,
                                   ingress_ifindex, rx_queue_index)
        return ns / (repeat * len(packets))

    def load_tail_target(self, program: Program) -> int:
        handle = self._load(program)
        self._targets.append(handle)
        return native.prog_id(handle)

    def trace_lines(self) -> list[str]:
        """The trace_printk lines written since the last call, oldest first."""
        self._trace += native.env_trace_read(self._env)
        *lines, self._trace = self._trace.split(b"\n")
        return [line.decode(errors="replace") for line in lines]

    def close(self) -> None:
        if self._owned:
            super().close()
