"""Our verifier beside the kernel's, on the same program: verdicts, effort, time.

    c = compare_with_kernel(program)
    c.ours.accepted, c.kernel_accepted          # the verdicts
    c.ours.seconds, c.kernel_seconds            # wall time here, the kernel's own figure
    c.agrees                                    # same verdict (None without a kernel)

For `vxdp bench` (verification time per program beside the kernel's) and for anyone
checking a disagreement.  The kernel's time is what it reports itself ("verification time
N usec", log level BPF_LOG_STATS), so the syscall's overhead is not counted against it.
It is taken twice: `kernel_seconds` with the instruction log on (BPF_LOG_LEVEL1, which
also gives `kernel_log`; the kernel then prints every instruction it processes, several
times slower) and `kernel_seconds_quiet` with the statistics alone (its speed when nobody
asks for a log, as libbpf loads by default).  Ours never builds a log it is not asked for.
Where bpf() is not permitted the kernel fields are None and `kernel_unavailable` says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from vxdp.bpf.profiles import Capabilities, Profile
from vxdp.bpf.program import Program
from vxdp.bpf.verifier.analyzer import Analyzer
from vxdp.bpf.verifier.report import VerifierReport

BPF_LOG_LEVEL1: Final = 1
BPF_LOG_STATS: Final = 4
_TIME: Final = re.compile(r"verification time (\d+) usec")
_PROCESSED: Final = re.compile(r"processed (\d+) insns")


@dataclass(frozen=True)
class Comparison:
    program: str
    ours: VerifierReport
    kernel_accepted: bool | None = None
    kernel_seconds: float | None = None
    kernel_insns: int | None = None
    kernel_log: str = ""
    kernel_unavailable: str | None = None
    kernel_seconds_quiet: float | None = None

    def ratio(self, quiet: bool = False) -> float | None:
        """Our time over the kernel's (with its log, or `quiet`: without)."""
        k = self.kernel_seconds_quiet if quiet else self.kernel_seconds
        return self.ours.seconds / k if k else None

    @property
    def agrees(self) -> bool | None:
        if self.kernel_accepted is None:
            return None
        return self.kernel_accepted == self.ours.accepted

    def to_json(self) -> dict[str, object]:
        return {"program": self.program, "ours_accepted": self.ours.accepted,
                "ours_seconds": round(self.ours.seconds, 6),
                "ours_insns": self.ours.insns_processed,
                "kernel_accepted": self.kernel_accepted,
                "kernel_seconds": self.kernel_seconds, "kernel_insns": self.kernel_insns,
                "kernel_seconds_quiet": self.kernel_seconds_quiet,
                "agrees": self.agrees, "kernel_unavailable": self.kernel_unavailable}


def _parse_kernel_log(log: str) -> tuple[float | None, int | None]:
    t = _TIME.search(log)
    n = _PROCESSED.search(log)
    return (int(t.group(1)) / 1e6 if t else None), (int(n.group(1)) if n else None)


def compare_with_kernel(program: Program, profile: Profile | Capabilities | str | None = None
                        ) -> Comparison:
    """Verify with ours (privileged, as the kernel for root) and, if permitted, the kernel."""
    from vxdp.bpf.kernel import kernel_unavailable, verify_in_kernel
    from vxdp.bpf.profiles import get_profile

    prof = get_profile(profile)
    ours = Analyzer(program, prof, True, 0).run()
    why = kernel_unavailable()
    if why is not None:
        return Comparison(program.name, ours, kernel_unavailable=why)
    ok, log = verify_in_kernel(program, log_level=BPF_LOG_LEVEL1 | BPF_LOG_STATS)
    seconds, insns = _parse_kernel_log(log)
    _, quiet_log = verify_in_kernel(program, log_level=BPF_LOG_STATS)
    quiet, _ = _parse_kernel_log(quiet_log)
    return Comparison(program.name, ours, ok, seconds, insns, log, kernel_seconds_quiet=quiet)
