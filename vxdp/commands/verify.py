"""`vxdp verify`: run the verifier on the programs of an object file.

    vxdp verify prog.o [--section S] [--program NAME] [--profile P] [--unprivileged]
                [--log-level N] [--kernel] [-j]

Exit status: 0 every selected program accepted, 1 one was rejected, 2 unusable input (a
file that is not a BPF object, a section or program that is not there, an unknown
profile).  With neither --section nor --program every program in the object is verified.

Output: per program a line `NAME: accepted (N insns processed, S states)` or
`NAME: rejected at pc N: reason`, followed for rejections by the log (the instruction in
verifier-log syntax and the kernel's wording).  `-j` prints one JSON object per program
(VerifierReport.to_json), with a `kernel` member under `--kernel`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vxdp.bpf.elf import load_object
from vxdp.bpf.program import Program
from vxdp.bpf.verifier import VerifierReport, verify
from vxdp.bpf.verifier.compare import compare_with_kernel
from vxdp.errors import InvalidProgram, UsageError
from vxdp.offload_profiles import PROFILE_NAMES, verifier_profile

NAME = "verify"
HELP = "verify the XDP programs of an object file (kernel rules, device profiles)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("object", metavar="OBJ.o", type=Path, help="BPF object file (clang)")
    parser.add_argument("--section", metavar="S", help="only the programs of this section")
    parser.add_argument("--program", metavar="NAME", help="only the program of this name")
    parser.add_argument("--profile", choices=PROFILE_NAMES, default=PROFILE_NAMES[0],
                        help="native: what the C core runs, as the kernel verifies a program "
                             "for no device (the default); rfc2019, host, smartnic: a "
                             "device's offload capabilities")
    parser.add_argument("--unprivileged", action="store_true",
                        help="the rules for a loader without CAP_BPF (no pointer leaks, no "
                             "uninitialised stack reads)")
    parser.add_argument("--log-level", type=int, choices=(0, 1, 2), default=0,
                        help="1: every processed instruction; 2: and the register state")
    parser.add_argument("--kernel", action="store_true",
                        help="also load each program into the live kernel and print its "
                             "verdict and verification time beside ours")
    parser.add_argument("-j", "--json", action="store_true", help="one JSON object a program")


def select(programs: dict[str, Program], section: str | None, name: str | None
           ) -> list[Program]:
    chosen = [p for p in programs.values()
              if (section is None or p.section == section) and (name is None or p.name == name)]
    if not chosen:
        what = " and ".join(x for x in (section and f"section {section!r}",
                                        name and f"program {name!r}") if x) or "program"
        have = ", ".join(f"{p.name} (section {p.section})" for p in programs.values())
        raise UsageError(f"no {what} in the object (programs: {have or 'none'})")
    return chosen


def _text(report: VerifierReport, log_level: int) -> str:
    if report.accepted:
        head = (f"{report.program}: accepted ({report.insns_processed} insns processed, "
                f"{report.states} states, {report.seconds * 1000:.1f} ms)")
        return head + ("\n" + report.log.rstrip() if log_level else "")
    pc, _ = report.errors[0]
    return f"{report.program}: rejected at pc {pc}: {report.reason}\n{report.log.rstrip()}"


def _kernel_text(k: dict[str, object]) -> str:
    if k["kernel_accepted"] is None:
        return f"  kernel: not asked ({k['kernel_unavailable']})"
    verdict = "accepted" if k["kernel_accepted"] else "rejected"
    secs = k["kernel_seconds"]
    took = f", {float(secs) * 1000:.3f} ms" if isinstance(secs, float) else ""
    same = "same verdict" if k["agrees"] else "DIFFERENT verdict"
    return f"  kernel: {verdict} ({k['kernel_insns']} insns processed{took}); {same}"


def run(args: argparse.Namespace) -> int:
    try:
        obj = load_object(args.object)
    except InvalidProgram as exc:
        raise UsageError(f"{args.object}: {exc}") from None
    programs = select(obj.programs, args.section, args.program)
    profile = verifier_profile(args.profile)
    status = 0
    for program in programs:
        report = verify(program, profile=profile, privileged=not args.unprivileged,
                        log_level=args.log_level)
        kernel = compare_with_kernel(program, profile).to_json() if args.kernel else None
        if args.json:
            doc = report.to_json()
            if kernel is not None:
                doc["kernel"] = kernel
            print(json.dumps(doc))
        else:
            print(_text(report, args.log_level))
            if kernel is not None:
                print(_kernel_text(kernel))
        if not report.accepted:
            status = 1
    return status
