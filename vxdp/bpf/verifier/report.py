"""What a verification returns: the verdict, the reasons, the log and the effort spent.

The verifier never raises for a program it rejects; it hands back a `VerifierReport` and
the caller decides (`report.raise_for_rejection()` for those who want an exception).

The log follows the kernel's format.  Level 0 keeps only what explains a rejection: the
instruction at the failing pc in verifier-log syntax (`12: (61) r0 = *(u32 *)(r2 +0)`) and
the reason in the kernel's words.  Level 1 adds every processed instruction, level 2 the
register and stack state before each one (`R1=ctx() R2=pkt(r=14) R10=fp0 fp-8=mmmm0000`).
The summary line is the kernel's: `processed N insns (limit 1000000) max_states_per_insn M
total_states T peak_states P mark_read 0`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from vxdp.bpf.disasm import format_insn
from vxdp.bpf.isa import Insn
from vxdp.bpf.program import MapSpec
from vxdp.bpf.verifier.state import SLOT, State, T
from vxdp.errors import InvalidProgram


class ProgramRejected(InvalidProgram):
    """The verifier rejected a program; `report` says where and why."""

    def __init__(self, report: VerifierReport) -> None:
        pc, message = report.errors[0]
        super().__init__(f"program {report.program!r} rejected at pc {pc}: "
                         f"{message.splitlines()[-1]}")
        self.report = report


@dataclass
class VerifierReport:
    program: str
    accepted: bool
    errors: list[tuple[int, str]] = field(default_factory=list)
    log: str = ""
    insns_processed: int = 0
    states: int = 0  # states remembered for pruning (the kernel's total_states)
    peak_states: int = 0
    max_states_per_insn: int = 0
    stack_depth: int = 0  # the deepest chain of call frames, in bytes
    seconds: float = 0.0
    profile: str = "host"
    privileged: bool = True

    @property
    def reason(self) -> str:
        """The last line of the first error (the kernel's final word), or ''."""
        return self.errors[0][1].splitlines()[-1] if self.errors else ""

    def raise_for_rejection(self) -> None:
        if not self.accepted:
            raise ProgramRejected(self)

    def to_json(self) -> dict[str, object]:
        return {"program": self.program, "accepted": self.accepted,
                "errors": [{"pc": pc, "message": m} for pc, m in self.errors],
                "insns_processed": self.insns_processed, "states": self.states,
                "peak_states": self.peak_states, "stack_depth": self.stack_depth,
                "seconds": round(self.seconds, 6), "profile": self.profile,
                "privileged": self.privileged, "log": self.log}


# -- the log ----------------------------------------------------------------------------


def format_state(state: State, maps: Sequence[MapSpec] = ()) -> str:
    parts: list[str] = []
    for fi, f in enumerate(state.frames):
        prefix = f"frame{fi}: " if len(state.frames) > 1 else ""
        items = [f"R{i}={r.text(maps)}" for i, r in enumerate(f.regs)
                 if r.type is not T.NOT_INIT]
        for si in sorted(f.stack):
            s = f.stack[si]
            if any(b.value != "?" for b in s.bytes):
                items.append(f"fp{-(si + 1) * SLOT}={s.text(maps)}")
        parts.append(prefix + " ".join(items))
    return " ".join(parts)


class Log:
    def __init__(self, insns: Sequence[Insn], level: int, maps: Sequence[MapSpec] = ()
                 ) -> None:
        self.insns = insns
        self.maps = maps
        self.level = level
        self.lines: list[str] = []

    def insn(self, pc: int, state: State) -> None:
        if self.level >= 2:
            self.lines.append(f"{pc}: {format_state(state, self.maps)}")
        if self.level >= 1:
            self.lines.append(self.text(pc))

    def text(self, pc: int) -> str:
        if 0 <= pc < len(self.insns):
            try:
                return format_insn(self.insns, pc)
            except (KeyError, ValueError, IndexError):
                return f"{pc}: ({self.insns[pc].opcode:02x}) <unprintable>"
        return f"{pc}: <out of program>"

    def note(self, line: str) -> None:
        if self.level >= 1:
            self.lines.append(line)

    def reject(self, pc: int, message: str, with_insn: bool) -> None:
        if with_insn and (self.level == 0 or not self.lines or
                          not self.lines[-1].startswith(f"{pc}: (")):
            self.lines.append(self.text(pc))
        self.lines.extend(message.splitlines())

    def summary(self, processed: int, limit: int, max_per_insn: int, total: int,
                peak: int) -> None:
        self.lines.append(f"processed {processed} insns (limit {limit}) max_states_per_insn "
                          f"{max_per_insn} total_states {total} peak_states {peak} mark_read 0")

    def render(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")
