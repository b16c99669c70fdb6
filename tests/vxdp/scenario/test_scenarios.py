"""Every scenario in scenarios/ runs (hosts and guests as processes) and passes; a
failing expectation fails the run naming its step and line; `vxdp run` exit codes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import trio

from vxdp.bpf.clang import clang_unavailable
from vxdp.scenario import load, run_scenario

ROOT = Path(__file__).resolve().parents[3]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


@pytest.fixture(autouse=True)
def needs_clang() -> None:
    if (why := clang_unavailable()) is not None:
        pytest.skip(f"the scenarios' programs are C: {why}")


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
async def test_scenario_passes(path: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    with trio.fail_after(180):
        result = await run_scenario(load(path), progress=lines.append, workdir=tmp_path)
    assert result.ok, "\n".join([result.error, *lines])
    assert all(s.ok for s in result.steps) and len(result.steps) == len(load(path)["steps"])


async def test_a_failed_expectation_ends_the_run_naming_step_and_line(tmp_path: Path) -> None:
    path = tmp_path / "wrong.yaml"
    path.write_text(f"""\
name: wrong
hosts: {{h1: {{profile: host}}}}
guests: {{g0: {{host: h1, xdp: {ROOT}/scenarios/progs/mix.c, mode: offload}}}}
steps:
  - traffic: {{host: h1, guest: g0, count: 300, seed: 5, mix: "udp4:0.5,tcp4:0.3,icmp4:0.2"}}
  - wait: {{node: h1, path: guests.0.offload.actions.drop, equals: 51, timeout: 1}}
  - sleep: 5
""")
    with trio.fail_after(60):
        result = await run_scenario(load(path), workdir=tmp_path)
    assert not result.ok and len(result.steps) == 2
    assert result.error == ("step 1 (wait, line 6): h1: not within 1 s: "
                            "guests.0.offload.actions.drop is 50 (equals 51: no)")


async def test_a_migration_refused_unexpectedly_fails_the_run_saying_why(
        tmp_path: Path) -> None:
    """A destination without the offload: the move is refused before the source stops;
    a step that did not expect it fails with the reason, and the guest is still on h1."""
    path = tmp_path / "refused.yaml"
    path.write_text(f"""\
name: refused
hosts: {{h1: {{profile: host}}, h2: {{profile: default}}}}
guests: {{g0: {{host: h1, xdp: {ROOT}/scenarios/progs/mix.c, mode: offload}}}}
steps:
  - migrate: {{guest: g0, to: h2}}
""")
    with trio.fail_after(60):
        result = await run_scenario(load(path), workdir=tmp_path)
    assert not result.ok and len(result.steps) == 1
    assert result.error.startswith("step 0 (migrate, line 5): g0: migration to h2 refused: ")
    assert "VIRTIO_NET_F_XDP_OFFLOAD" in result.error


async def _vxdp(*args: str) -> tuple[int, str, str]:
    env = {**os.environ}
    env.pop("LD_PRELOAD", None)
    done = await trio.run_process([sys.executable, "-m", "vxdp", *args], capture_stdout=True,
                                  capture_stderr=True, check=False, cwd=ROOT, env=env)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_vxdp_run_exit_codes_and_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nhosts: {h1: {}}\nsteps:\n  - link: {guest: h1, up: maybe}\n")
    with trio.fail_after(120):
        rc, out, err = await _vxdp("run", str(bad))
        assert rc == 2 and out == ""
        assert f"{bad}:4:" in err and "at steps[0].link.up: 'maybe' is not of type" in err
        rc, out, err = await _vxdp("run", "scenarios/auto-fallback.yaml", "-j")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["ok"] and doc["name"] == "auto-fallback" and len(doc["steps"]) == 9
    assert "step 0 expect" in err  # progress on stderr
