"""What a verification returns: the verdict, the reasons, the log and the effort spent.

The verifier never raises for a program it rejects; it hands back a `VerifierReport` and
the caller decides (`report.raise_for_rejection()` for those who want an exception).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
