"""The verifier's two builds: compiled (mypyc, setup.py) and its Python modules.

The Python modules are the reference: the compiled build must say exactly what they say
(verdicts, errors, counts and logs) on every program of the digest set, it must be the
one a process runs unless VXDP_VERIFIER=python chooses the other, and it must not be
older than the sources it was compiled from (a stale build would test old code).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import vxdp.bpf.verifier as verifier

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = Path(verifier.__file__).parent
SOURCES = sorted([PACKAGE.parent / "isa.py", *(p for p in PACKAGE.glob("*.py")
                                               if p.name != "__init__.py")])
FUZZ = 1000  # generated programs compared here (docs/verifier.md's run: 4,000)
# suites that instrument the verifier's modules by monkeypatching (compiled callers do
# not see it): they skip themselves under the compiled build and run here on the other
INSTRUMENTING = ["tests/vxdp/verifier/test_prune_compare.py"]


def compiled() -> list[Path]:
    """The compiled modules beside the sources (none in a pure-Python install)."""
    return sorted([*PACKAGE.glob("*.so"), *PACKAGE.parent.glob("isa.*.so")])




def run(code: str, **env: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, **env}, check=True, timeout=120)
    return out.stdout.strip()


def test_the_build_in_use_is_the_compiled_one_when_there_is_one() -> None:
    chosen = os.environ.get("VXDP_VERIFIER") == "python"
    assert verifier.BUILD == ("mypyc" if compiled() and not chosen else "python")


def test_the_python_modules_can_be_chosen() -> None:
    out = run("import vxdp.bpf.verifier as v, vxdp.bpf.verifier.analyzer as a, "
              "vxdp.bpf.verifier.tnum as t, vxdp.bpf.isa as i; "
              "print(v.BUILD, a.__file__, t.__file__, i.__file__)", VXDP_VERIFIER="python")
    build, *files = out.split()
    assert build == "python"
    assert files == [str(PACKAGE / "analyzer.py"), str(PACKAGE / "tnum.py"),
                     str(PACKAGE.parent / "isa.py")]


@pytest.mark.skipif(not compiled(), reason="the verifier is not compiled here (no mypyc at "
                    "build time, or VXDP_MYPYC=0): there is no second build to check")
def test_the_compiled_modules_are_built_from_these_sources() -> None:
    record = PACKAGE.parent / "verifier__mypyc.sources"
    assert record.exists(), f"no {record.name} beside the compiled verifier: run `make build`"
    built = json.loads(record.read_text())
    here = {str(py.relative_to(ROOT)): hashlib.sha256(py.read_bytes()).hexdigest()
            for py in SOURCES}
    stale = sorted(p for p in here if built.get(p) != here[p])
    assert not stale, f"the compiled verifier was built from other {stale}: run `make build`"


@pytest.mark.skipif(not compiled(), reason="the verifier is not compiled here (no mypyc at "
                    "build time, or VXDP_MYPYC=0): there is no second build to compare")
def test_compiled_and_python_builds_say_the_same() -> None:
    cmd = [sys.executable, "-m", "tests.vxdp.verifier.digest", "--fuzz", str(FUZZ)]
    env = {k: v for k, v in os.environ.items() if k != "VXDP_VERIFIER"}
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=e)
             for e in (env, {**env, "VXDP_VERIFIER": "python"})]
    outs = [p.communicate(timeout=600)[0].splitlines() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    (head_c, *comp), (head_p, *pure) = outs
    assert (json.loads(head_c), json.loads(head_p)) == ({"build": "mypyc"}, {"build": "python"})
    assert len(comp) == len(pure) > FUZZ + 200  # the corpus, the objects, the fuzz
    for a, b in zip(comp, pure, strict=True):
        assert a == b, f"compiled: {a}\npython:   {b}"


@pytest.mark.skipif(verifier.BUILD == "python", reason="the Python build is this process's: "
                    "the instrumenting suites run in it directly")
def test_the_instrumenting_suites_pass_on_the_python_build() -> None:
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          *INSTRUMENTING], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "VXDP_VERIFIER": "python"}, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    assert " passed" in out.stdout and "skipped" not in out.stdout.splitlines()[-1]
