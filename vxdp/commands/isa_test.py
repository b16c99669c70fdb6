"""`vxdp isa-test DIR`: run ubpf / bpf_conformance `.data` files through an engine.

Every file is parsed and assembled first (a broken file is unusable input: exit 2, naming
the file and line, before anything runs).  Then one line per file, `PASS name`, `FAIL name:
expected X got Y` or `SKIP name: reason`, and last the summary `N passed, M failed` (with
`, K skipped` when any were).  Exit 0 when nothing failed, 1 otherwise.  With `-j`, one JSON
object per file and a final {"passed", "failed", "skipped"} object.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from vxdp.errors import UsageError

if TYPE_CHECKING:
    from vxdp.bpf.datatest import DataTest, RunRaw

NAME = "isa-test"
HELP = "run .data ISA conformance files (ubpf/bpf_conformance format) through an engine"

# engine name -> module:function with the signature run_raw(insns, mem) -> r0
RAW_RUNNERS = {"interp": "vxdp.bpf.interp:run_raw", "jit": "vxdp.bpf.jit:run_raw"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, metavar="DIR",
                        help="folder of .data files (or a single .data file)")
    parser.add_argument("--engine", default="interp", choices=sorted(RAW_RUNNERS),
                        help="engine to run the programs on (default: interp)")
    parser.add_argument("-j", "--json", action="store_true", help="JSON lines output")


def raw_runner(engine: str) -> RunRaw:
    module, _, func = RAW_RUNNERS[engine].partition(":")
    try:
        return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"engine {engine!r} is not available: {exc}") from exc


def load_tests(path: Path) -> list[DataTest]:
    """Parse and assemble every file up front, so a broken file stops the run early."""
    from vxdp.bpf.datatest import data_files, parse_file
    if path.is_file():
        paths = [path]
    elif path.exists():
        paths = data_files(path)
    else:
        raise UsageError(f"{path}: no such file or directory")
    tests = [parse_file(p) for p in paths]
    for t in tests:
        t.assembled()
    return tests


def run(args: argparse.Namespace) -> int:
    from vxdp.bpf.datatest import FileResult, Outcome, run_test, summary
    tests = load_tests(args.path)
    run_raw = raw_runner(args.engine)
    results: list[FileResult] = []
    for test in tests:
        result = run_test(test, run_raw)
        results.append(result)
        if args.json:
            print(json.dumps({"name": result.name, "result": result.outcome.value.lower(),
                              "detail": result.detail}), flush=True)
        else:
            print(result.line(), flush=True)
    if args.json:
        counts = {key: sum(r.outcome is o for r in results) for key, o in
                  (("passed", Outcome.PASS), ("failed", Outcome.FAIL), ("skipped", Outcome.SKIP))}
        print(json.dumps(counts))
    else:
        print(summary(results))
    return 1 if any(r.outcome is Outcome.FAIL for r in results) else 0
