"""What one verification run knows besides the state: the program, the injected platform
profile, the mode, the id generator, and the way to reject.

`Reject` is internal: a check raises it with the kernel's wording and the interpreter turns
it into a `(pc, message)` entry of the report.  Nothing outside the package sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vxdp.bpf.isa import Insn
from vxdp.bpf.profiles import Profile
from vxdp.bpf.program import MapSpec, Program

BPF_MAX_VAR_OFF = 1 << 29
BPF_MAX_VAR_SIZ = 1 << 29
MAX_PACKET_OFF = 0xFFFF


class Reject(Exception):
    """A rule was broken; the message is the kernel's wording for it."""


@dataclass
class Env:
    program: Program
    insns: list[Insn]
    profile: Profile
    privileged: bool = True
    next_id: int = 0
    subprog_starts: list[int] = field(default_factory=lambda: [0])
    max_depth: dict[int, int] = field(default_factory=dict)  # subprog entry -> stack bytes
    callees: dict[int, set[int]] = field(default_factory=dict)  # subprog -> called subprogs
    pc: int = 0  # the instruction being checked (for references' alloc_insn)
    frames_alive: int = 1  # call frames of the current state (stack pointers beyond: stale)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def map_spec(self, index: int) -> MapSpec:
        return self.program.maps[index]

    @property
    def allow_ptr_leaks(self) -> bool:
        return self.privileged

    @property
    def allow_uninit_stack(self) -> bool:
        return self.privileged

    def subprog_of(self, pc: int) -> int:
        """Entry pc of the function that holds `pc`."""
        best = 0
        for s in self.subprog_starts:
            if s <= pc:
                best = s
        return best
