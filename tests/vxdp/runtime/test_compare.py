"""The placement comparison behind `vxdp demo`: measured, never canned."""

from __future__ import annotations

import json

import pytest

from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.program import Program
from vxdp.cli import main
from vxdp.runtime.compare import PLACEMENTS, compare, table

from .conftest import core_unavailable

pytestmark = pytest.mark.skipif(core_unavailable() is not None,
                                reason=str(core_unavailable()))


def test_every_placement_reproduces_the_reference() -> None:
    expected, rows = compare(count=96, seed=3)
    assert sum(expected.values()) == 96 and expected["drop"] and expected["tx"]
    assert [(r.placement, r.datapath) for r in rows] == list(PLACEMENTS)
    for r in rows:
        assert r.complete and r.actions == expected
        assert r.in_guest == expected["pass"] and r.wire_tx == expected["tx"]
        assert r.elapsed_s > 0 and r.mpps > 0
    lines = table(rows)
    assert lines[0].split()[:3] == ["placement", "datapath", "frames"]
    assert len(lines) == 1 + len(rows)


def test_another_program_gives_other_numbers() -> None:
    pass_all = Program("pass_all", "xdp", encode(assemble("mov %r0, 2\nexit")))
    expected, rows = compare(pass_all, count=40, seed=5)
    assert expected == {"aborted": 0, "drop": 0, "pass": 40, "tx": 0, "redirect": 0}
    assert all(r.in_guest == 40 and r.wire_tx == 0 for r in rows)
    # seeds change the traffic, hence the verdicts of the demo program
    a, _ = compare(count=64, seed=1)
    b, _ = compare(count=64, seed=2)
    assert a != b


def test_demo_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "-j", "--frames", "64", "--path-frames", "0"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    placed = [r for r in rows if r["kind"] == "placement"]
    assert [(r["placement"], r["datapath"]) for r in placed] == list(PLACEMENTS)
    assert all(r["frames"] == 64 and r["complete"] and r["us_per_burst"] > 0 for r in placed)
    (ref,) = [r["reference"] for r in rows if "reference" in r]
    assert all(r["actions"] == ref for r in placed)
    assert main(["demo", "--frames", "0", "--path-frames", "0"]) == 0
    assert "offloaded vs host-attached vs driver mode" not in capsys.readouterr().out


def test_a_profile_without_the_offload_leaves_its_rows_out() -> None:
    expected, rows = compare(count=32, seed=3, profile="default")
    assert [r.placement for r in rows] == ["host-attached", "driver"]
    assert all(r.actions == expected for r in rows)
