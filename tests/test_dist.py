"""Packaging: sdist -> wheel -> a fresh venv outside the source tree, where vxdp still works.

`python -m build` makes the sdist and builds the wheel from it (pip's build isolation, as
a user's `pip install vxdp-*.tar.gz` does); the wheel goes into a new venv, and from a
folder that is not the source tree `vxdp verify`, `vxdp exec --engine jit`, `vxdp bench
--suite xdp` and the pytest plugin run there.  Run by `make dist-check`, not by `make
test`: it builds the C core twice and installs the dependencies from the package index
into the new venv (half a minute with a warm pip cache).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from virtio_spec.conformance import CLAUSES
from vxdp import packets as P
from vxdp.bench import PROGS_DIR, WORKLOADS
from vxdp.bpf import jit
from vxdp.bpf.clang import clang_unavailable, compile_c
from vxdp.pcap import write_pcap

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL = {"vxdp", "virtio_spec", "guest", "host"}  # docs/architecture.md, "Packaging"
#: In git, left out of the sdist (MANIFEST.in).
NOT_SHIPPED = {".ci/run", ".gitignore"}
#: Written by setuptools into the sdist.
GENERATED = {"PKG-INFO", "setup.cfg"}
BUILD_TIMEOUT = 900.0
RUN_TIMEOUT = 300.0

pytestmark = pytest.mark.skipif(
    not os.environ.get("VXDP_DIST_CHECK"),
    reason="`make dist-check` runs it (builds the sdist and wheel, installs into a new venv)")


def run(args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = RUN_TIMEOUT) -> str:
    """Run a command; its stdout, or a failure showing what it printed."""
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, (f"{' '.join(map(str, args))} exited {proc.returncode}\n"
                                  f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", out, ROOT], cwd=out, timeout=BUILD_TIMEOUT)
    (sdist,), (wheel,) = out.glob("*.tar.gz"), out.glob("*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def installed(dist: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, Path, dict[str, str]]:
    """(the venv, a work folder outside the source tree, the environment to run in)."""
    base = tmp_path_factory.mktemp("installed")
    venv, work = base / "venv", base / "work"
    work.mkdir()
    run([sys.executable, "-m", "venv", venv], cwd=base)
    run([venv / "bin" / "pip", "install", "-q", dist[1], "pytest"], cwd=base,
        timeout=BUILD_TIMEOUT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"VXDP_CACHE": str(base / "cache"), "VXDP_JIT_CACHE": str(base / "jit"),
            "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
    return venv, work, env


def _git_files() -> set[str]:
    out = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    return set(out.split("\n")) - {""}


def test_the_sdist_is_the_source_tree(dist: tuple[Path, Path]) -> None:
    with tarfile.open(dist[0]) as tar:
        names = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}
    egg_info = {n for n in names if n.startswith("vxdp.egg-info/")}
    assert names - egg_info == (_git_files() - NOT_SHIPPED) | GENERATED
    assert "csrc/build_core.py" in names  # setup.py's cffi_modules builds the wheel with it


def test_the_wheel_ships_the_packages_and_their_data(dist: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(dist[1]) as whl:
        names = set(whl.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        assert {n.split("/")[0] for n in names} == TOP_LEVEL | {info}
        # the jit's ABI header and the bench's programs are package data
        assert whl.read("vxdp/bpf/vxdp_jit.h") == (ROOT / "csrc" / "vxdp_jit.h").read_bytes()
        for w in WORKLOADS:
            assert whl.read(f"vxdp/bench_progs/{w.source}") == (PROGS_DIR / w.source).read_bytes()
        assert [n for n in names if n.startswith("vxdp/_vxdp_core")] != []
        # the verifier compiled (mypy is a build requirement), its Python modules beside
        assert [n for n in names if n.startswith("vxdp/bpf/verifier__mypyc")] != []
        assert {"vxdp/bpf/isa.py", "vxdp/bpf/verifier/analyzer.py"} <= names
        assert not [n for n in names if "_vxdp_core_asan" in n]
        assert whl.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
        assert "License-Expression: Apache-2.0" in whl.read(f"{info}/METADATA").decode()
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
    assert "[pytest11]\nvirtio_spec = virtio_spec.pytest_plugin" in entry_points
    assert "[console_scripts]\nvxdp = vxdp.cli:main" in entry_points


def test_imports_come_from_the_venv(installed: tuple[Path, Path, dict[str, str]]) -> None:
    venv, work, env = installed
    out = run([venv / "bin" / "python", "-c",
               "import guest, host, virtio_spec, vxdp, vxdp.native, vxdp.bpf.verifier as v\n"
               "for m in (guest, host, virtio_spec, vxdp, vxdp.native): print(m.__file__)\n"
               "print(v.BUILD)"],
              cwd=work, env=env)
    *files, build = out.splitlines()
    site = str(venv / "lib")
    assert all(line.startswith(site) for line in files), out
    assert build == "mypyc"


def test_verify_exec_jit_and_bench_run_from_the_install(
        installed: tuple[Path, Path, dict[str, str]]) -> None:
    if (why := clang_unavailable()) is not None:
        pytest.skip(why)
    if (why := jit.unavailable()) is not None:
        pytest.skip(f"jit: {why}")
    venv, work, env = installed
    vxdp = venv / "bin" / "vxdp"
    obj = work / "flow.o"
    obj.write_bytes(compile_c(PROGS_DIR / "xdp_flow_hash.c").read_bytes())
    verdict = json.loads(run([vxdp, "verify", obj, "-j"], cwd=work, env=env))
    assert verdict["accepted"] is True, verdict

    write_pcap(work / "in.pcap", P.TrafficGenerator(7).packets(40))
    runs = {engine: run([vxdp, "exec", obj, "--pcap", "in.pcap", "--engine", engine, "-j"],
                        cwd=work, env=env) for engine in ("interp", "jit")}
    assert runs["jit"] == runs["interp"]
    assert len(runs["jit"].splitlines()) == 41  # one line a packet, then the maps
    # compiled here, from the header the wheel carries (no source tree to find it in)
    assert list(Path(env["VXDP_JIT_CACHE"]).glob("*/prog.so")) != []

    bench = json.loads(run([vxdp, "bench", "--suite", "xdp", "-j", "--rounds", "1",
                            "--seconds", "0.01", "--repeat", "10", "--batch", "4"],
                           cwd=work, env=env))["xdp"]
    assert [m["name"] for m in bench["workloads"]] == [w.name for w in WORKLOADS]
    for m in bench["workloads"]:
        assert m["notes"] == [] and m["core_ns_per_pkt"] > 0 and m["jit_ns_per_pkt"] > 0, m


def test_the_pytest_plugin_runs_from_the_install(
        installed: tuple[Path, Path, dict[str, str]]) -> None:
    venv, work, env = installed
    suite = work / "plugin"
    suite.mkdir()
    (suite / "conftest.py").write_text(
        "from vxdp.conformance_adapters import device_factory, driver_factory\n\n"
        "def pytest_virtio_device_factory(config):\n    return device_factory('host')\n\n"
        "def pytest_virtio_driver_factory(config):\n    return driver_factory()\n")
    (suite / "test_virtio.py").write_text(
        "def test_virtio(virtio_clause):\n    virtio_clause.check()\n")
    out = run([venv / "bin" / "python", "-m", "pytest", "-p", "no:cacheprovider", "-q",
               "-W", "error"], cwd=suite, env=env)
    summary = out.strip().splitlines()[-1]
    counts = {word: int(n) for n, word in
              (part.split()[:2] for part in summary.split(" in ")[0].split(", "))}
    assert set(counts) == {"passed", "skipped"}, out
    assert counts["passed"] + counts["skipped"] == len(CLAUSES)
