"""`vxdp demo`'s control queue vs agents section: the table in the trace, the summary,
and the PNG plots it writes with --out (tests/vxdp/runtime/test_paths.py tests the
measurements themselves).  Here, not beside them: matplotlib keeps its font files open
for the life of the process, which the runtime tests' fd check would count as leaks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vxdp.cli import main
from vxdp.runtime.paths import SCENARIOS

from .runtime.conftest import core_unavailable

pytestmark = pytest.mark.skipif(core_unavailable() is not None,
                                reason=str(core_unavailable()))

PNG = b"\x89PNG\r\n\x1a\n"


def test_the_demo_compares_the_paths_and_draws_them(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["demo", "--frames", "0", "--path-frames", "128", "--runs", "2",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "the two paths of the RFC's review: control queue vs agents" in text
    assert "forwarding runs on the same datapath either way" in text
    assert "migration           agent     migrated: 2/2 moves: program, map entries and " \
        "counters on the destination, counting on; downtime " in text
    assert "agent channel re-bound to the destination's host agent in " in text
    assert "migration, no agent agent     driver: moved without the offload: " in text
    summary = json.loads((out / "summary.json").read_text())
    paths = summary["paths"]
    assert paths["agree"] and len(paths["runs"]) == 4 and paths["frames"] == 128
    assert {s["scenario"] for s in paths["survival"]} == set(SCENARIOS)
    moved = {s["via"]: s for s in paths["survival"] if s["scenario"] == "migration"}
    assert moved["agent"]["downtime_ms"]["median"] > 0 and moved["agent"]["rebind_ms"]
    assert moved["controlq"]["frames_lost"] is not None and moved["controlq"]["runs"] == 2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for name in ("paths.png", "survival.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG and len(data) > 10_000
        height, width, _ = plt.imread(out / name).shape
        assert width > 600 and height > 300
    # without --out nothing is drawn, and --path-frames 0 leaves the comparison out
    assert main(["demo", "--frames", "0", "--path-frames", "0"]) == 0
    assert "control queue vs agents" not in capsys.readouterr().out
    assert main(["demo", "--runs", "0"]) == 2
    assert "--runs 0 is outside" in capsys.readouterr().err
