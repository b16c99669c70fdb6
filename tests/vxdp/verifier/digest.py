"""Everything the verifier says about a fixed set of programs, one JSON line each.

    python -m tests.vxdp.verifier.digest [--fuzz N] [--no-c]

Run once with the compiled verifier and once with VXDP_VERIFIER=python, the two outputs
must be the same line for line (tests/vxdp/verifier/test_build.py): verdict, errors,
instructions processed, states and stack depth, with the whole log at level 2 for the
corpus (corpus.yaml) and `--fuzz N` generated programs (tests.fuzz.gen, seeds from
100000), and as a loader without a log asks (level 0; the level the bench times) for the
C programs of tests/vxdp/progs and the stock xdp-tools objects when installed (the
largest walks: a level-2 log of them would double the time and say little more).  The
first line names the build that produced the rest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FUZZ_SEED = 100000


def programs(fuzz: int, c: bool) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(label, program, verify() options) for every program of the set."""
    from tests.fuzz.gen import MAPS, generate
    from tests.vxdp.verifier.test_corpus import build, corpus
    from vxdp.bench_verifier import CORPUS_DIR, STOCK_DIR, STOCK_GLOBS
    from vxdp.bpf.asm import assemble
    from vxdp.bpf.clang import clang_unavailable, compile_c
    from vxdp.bpf.elf import load_object
    from vxdp.bpf.isa import encode
    from vxdp.bpf.profiles import COMPLEXITY_LIMIT
    from vxdp.bpf.program import Program
    from vxdp.errors import VxdpError
    from vxdp.offload_profiles import verifier_profile

    c = c and clang_unavailable() is None
    for case in corpus()["cases"]:
        if "c" in case and not c:
            continue
        yield (f"corpus:{case['name']}", build(case),
               {"profile": verifier_profile(case.get("profile")),
                "privileged": case.get("privileged", True),
                "complexity_limit": case.get("limit", COMPLEXITY_LIMIT), "log_level": 2})
    objects: list[Path | bytes] = []
    if c:
        objects += [compile_c(src) for src in sorted(CORPUS_DIR.glob("*.c"))]
    objects += sorted(p for g in STOCK_GLOBS for p in STOCK_DIR.glob(g))
    for i, obj in enumerate(objects):  # labelled by position: a compiled one's name
        try:                            # carries a hash of the path it was built from
            loaded = load_object(obj)
        except VxdpError:
            continue  # an object the loader refuses (the bench leaves the same out)
        for name, prog in loaded.programs.items():
            yield f"object:{i}:{name}", prog, {"log_level": 0}
    for seed in range(FUZZ_SEED, FUZZ_SEED + fuzz):
        prog = Program(f"fuzz{seed}", "xdp", encode(assemble(generate(seed))), MAPS)
        yield f"fuzz:{seed}", prog, {"log_level": 2}


def digest(fuzz: int = 0, c: bool = True) -> Iterator[dict[str, Any]]:
    from vxdp.bpf.verifier import BUILD, verify
    yield {"build": BUILD}
    for label, prog, options in programs(fuzz, c):
        r = verify(prog, **options)
        yield {"program": label, "accepted": r.accepted, "errors": r.errors,
               "insns": r.insns_processed, "states": r.states, "peak": r.peak_states,
               "per_insn": r.max_states_per_insn, "stack": r.stack_depth,
               "log": hashlib.sha256(r.log.encode()).hexdigest(), "log_lines": r.log.count("\n")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fuzz", type=int, default=0, help="generated programs (default 0)")
    ap.add_argument("--no-c", action="store_true", help="leave out what needs clang")
    args = ap.parse_args(argv)
    for line in digest(args.fuzz, not args.no_c):
        sys.stdout.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
