"""The verifier: kernel-compatible safety checking of XDP programs, with a useful log.

    report = verify(program, profile=virtio_spec.offload.RFC2019)   # or a Profile
    if not report.accepted:
        pc, message = report.errors[0]

A pipeline in the manner of PREVAIL: decode -> structural and control-flow checks (cfg) ->
abstract interpretation over every path in the kernel's model (analyzer, with the domain in
tnum/scalar/arith/state and the rules in memory/alu/branch/calls) -> a `VerifierReport`.
Platform knowledge (helper prototypes, allowed helpers and map types, size limits) comes
from vxdp.bpf.helpers and the device profile (vxdp.bpf.profiles), never from code here.
Privileged mode, as the kernel for root, is the default.  See docs/verifier.md.

Two builds of the same modules: compiled with mypyc when the package was built with it
(`make build`; setup.py), else, or with VXDP_VERIFIER=python in the environment, the
Python modules themselves, the reference the compiled ones are tested against (the
choice is made in vxdp/bpf/__init__.py).  `BUILD` says which one this process runs.
"""

from __future__ import annotations

import sys

from vxdp.bpf.profiles import COMPLEXITY_LIMIT, Capabilities, Profile, get_profile
from vxdp.bpf.program import Program
from vxdp.bpf.verifier.analyzer import Analyzer
from vxdp.bpf.verifier.compare import Comparison, compare_with_kernel
from vxdp.bpf.verifier.report import ProgramRejected, VerifierReport

#: "mypyc" when the analysis runs compiled, "python" when it runs these modules' source.
BUILD = "python" if (getattr(sys.modules[Analyzer.__module__], "__file__", None) or ""
                     ).endswith(".py") else "mypyc"


def verify(program: Program, *, profile: Profile | Capabilities | str | None = None, privileged: bool = True,
           log_level: int = 0, complexity_limit: int = COMPLEXITY_LIMIT) -> VerifierReport:
    """Verify `program`; the report says whether it is accepted and, if not, why."""
    prof = get_profile(profile)
    return Analyzer(program, prof, privileged, log_level, complexity_limit).run()


__all__ = ["BUILD", "Comparison", "ProgramRejected", "VerifierReport", "compare_with_kernel", "verify"]
