"""`make fuzz`: programs the verifier accepts must run on the sanitizer build without a
memory error.

    python -m tests.fuzz.run [--count N] [--seconds S] [--seed K] [--kernel] [--no-asan]

Each program comes from tests.fuzz.gen (realistic fragments with mistakes drawn in); the
verifier judges it; an accepted one runs on the C interpreter (vxdp.bpf.interp) over
packets of every length from 14 (the least a test run takes) to 96 bytes plus random ones.  The process re-executes
itself on the ASan + UBSan build of the core (`vxdp._vxdp_core_asan`, built by
`make test-asan`) when it exists, so an out-of-bounds access aborts with a report; the
seed of the program being run is printed before it runs.  `--kernel` also asks the live
kernel about every program and counts the programs we accept and it rejects (there must
be none).  The summary line says how many programs were tried.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import subprocess
import sys
import time

from tests.fuzz.gen import MAPS, generate
from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.program import Program
from vxdp.bpf.verifier import verify


def _asan_env() -> dict[str, str] | None:
    """The environment that runs this process on the sanitizer build, if it is built."""
    if os.environ.get("VXDP_CORE") == "asan":
        return None
    if importlib.util.find_spec("vxdp._vxdp_core_asan") is None:
        return None
    libs = []
    for lib in ("libasan.so", "libubsan.so"):
        out = subprocess.run(["gcc", f"-print-file-name={lib}"], capture_output=True,
                             text=True, check=False).stdout.strip()
        if not out or out == lib:
            return None
        libs.append(out)
    env = dict(os.environ, VXDP_CORE="asan", ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1", LD_PRELOAD=" ".join(libs))
    return env


def packets(rng: random.Random) -> list[bytes]:
    out = [bytes(rng.randrange(256) for _ in range(n)) for n in range(14, 97)]
    out += [bytes(rng.randrange(256) for _ in range(rng.randrange(97, 1500)))
            for _ in range(8)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=500, help="programs to try (default 500)")
    ap.add_argument("--seconds", type=float, help="stop after this long instead")
    ap.add_argument("--seed", type=int, default=0, help="first program seed")
    ap.add_argument("--kernel", action="store_true", help="compare verdicts with bpf()")
    ap.add_argument("--no-asan", action="store_true", help="stay on the optimised core")
    args = ap.parse_args(argv)
    env = None if args.no_asan else _asan_env()
    if env is not None:
        return subprocess.call([sys.executable, "-m", "tests.fuzz.run", *sys.argv[1:]],
                               env=env)
    from vxdp.bpf.interp import InterpEngine

    core = "asan" if os.environ.get("VXDP_CORE") == "asan" else "optimised (no sanitizer)"
    verify_in_kernel = None
    if args.kernel:
        from vxdp.bpf.kernel import kernel_unavailable
        from vxdp.bpf.kernel import verify_in_kernel as vik
        why = kernel_unavailable()
        if why:
            print(f"fuzz: --kernel ignored: {why}")
        else:
            verify_in_kernel = vik
    deadline = time.monotonic() + args.seconds if args.seconds else None
    tried = accepted = runs = unsound = stricter = 0
    seed = args.seed
    while (deadline is None and tried < args.count) or (
            deadline is not None and time.monotonic() < deadline):
        text = generate(seed)
        program = Program(f"fuzz{seed}", "xdp", encode(assemble(text)), MAPS)
        report = verify(program)
        tried += 1
        if any("internal verifier error" in m for _, m in report.errors):
            unsound += 1
            print(f"fuzz: seed {seed}: {report.errors[0][1]}\n{text}")
        if verify_in_kernel is not None:
            ok, _ = verify_in_kernel(program)
            stricter += ok and not report.accepted
            if report.accepted and not ok:
                unsound += 1
                print(f"fuzz: seed {seed}: we accept what the kernel rejects\n{text}")
        if report.accepted:
            accepted += 1
            # named before it runs: if the sanitizer aborts, the last line says which
            print(f"fuzz: running seed {seed}", end="\r", flush=True)
            with InterpEngine(program) as engine:
                engine.run_xdp(packets(random.Random(seed)))
            runs += 1
        seed += 1
    print(f"fuzz: tried {tried} programs (seeds {args.seed}..{seed - 1}), verifier accepted "
          f"{accepted}, ran {runs} on the {core} core with no memory error"
          + (f"; kernel: {unsound} accepted that it rejects, {stricter} rejected that it "
             f"accepts" if verify_in_kernel else ""))
    return 1 if unsound else 0  # an internal error counts as a failure too


if __name__ == "__main__":
    sys.exit(main())
