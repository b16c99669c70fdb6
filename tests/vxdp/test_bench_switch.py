"""The switch suite runs end to end (a short window, 1 and 2 guest processes) and reports
both switches for every guest count; no rate is asserted."""

from __future__ import annotations

import pytest

from vxdp import bench_switch
from vxdp.bpf.clang import clang_unavailable


@pytest.mark.skipif(clang_unavailable() is not None, reason="needs clang")
async def test_the_switch_suite_reports_both_switches_for_each_guest_count() -> None:
    report = await bench_switch.measure(0.2, warmup=0.05, guests=(1, 2))
    assert report.skipped is None
    assert [(f.guests, f.switch) for f in report.figures] == [
        (1, "c"), (1, "python"), (2, "c"), (2, "python")]
    assert all(f.frames > 0 for f in report.figures)  # every window dropped frames
    assert report.ratio("c") is not None and "2 guest(s)" in report.text()
    assert set(report.to_dict()["ratio_4_1"]) == {"c", "python"}  # type: ignore[arg-type]
