"""vxdp.bench_dpdk's accounting of where a window's CPU went, and how windows taking
turns are paired and judged comparable, on synthetic figures (no testpmd needed; the
windows themselves: tests/vxdp/interop/test_dpdk_helper.py).  Nothing is timed."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict

from vxdp import bench_dpdk
from vxdp.bench_dpdk import DpdkFigure, DpdkReport, WindowCpu


def test_a_window_accounts_the_threads_that_ran() -> None:
    watch = bench_dpdk._CpuWatch({"vxdp": os.getpid()}, None)
    watch.start()
    until = time.perf_counter() + 0.3
    while time.perf_counter() < until:
        pass
    cpu = watch.stop()
    assert cpu.xcpu_ns is None  # no placement probe asked
    run, wait = cpu.threads["vxdp"]  # this thread, by the process's label
    # it spun the whole window: accounted, whatever share a loaded machine gave it
    assert run > 0 and wait >= 0
    assert cpu.others_pct >= 0 and cpu.steal_pct >= 0
    assert cpu.text().startswith("xcpu - ns; run/wait % vxdp ")


def test_a_process_gone_before_the_window_ends_is_left_out() -> None:
    watch = bench_dpdk._CpuWatch({"vxdp": os.getpid(), "gone": 2 ** 22 + 1}, None)
    watch.start()
    assert not any(k.startswith("gone") for k in watch.stop().threads)


def test_the_report_carries_each_windows_cpu() -> None:
    cpu = WindowCpu(480.0, {"vxdp": (99.0, 0.5), "testpmd-guest:rte-worker-1": (99.5, 0.2),
                            "testpmd-guest:eal-intr-thread": (1.0, 0.0)}, 2.5, 0.0)
    report = DpdkReport([DpdkFigure("vhost -> virtio_user", 10.0, 10.0, 100, 2.0, cpu)],
                        cpus=2)
    got = json.loads(report.to_json())["figures"][0]["cpu"]
    assert got["xcpu_ns"] == 480.0 and got["threads"]["vxdp"] == [99.0, 0.5]
    text = report.text()
    assert ("xcpu 480 ns; run/wait % testpmd-guest:rte-worker-1 100/0, vxdp 99/0; "
            "others 2%, steal 0%") in text
    assert "eal-intr-thread" not in text  # under 5%: in the JSON only


def test_a_ratio_across_vcpu_placements_says_so() -> None:
    def fig(direction: str, mpps: float, xcpu: float | None) -> DpdkFigure:
        return DpdkFigure(direction, mpps, mpps, 1, 1.0, WindowCpu(xcpu, {}, 0.0, 0.0))
    report = DpdkReport([fig(bench_dpdk.VXDP_DIRECTIONS[1], 8.8, 470.0),
                         fig(bench_dpdk.VXDP_DIRECTIONS[2], 15.0, 110.0),
                         fig(bench_dpdk.DEQUEUE, 17.0, 105.0),
                         fig(bench_dpdk.ENQUEUE, 16.5, 110.0)], cpus=2)
    assert report.placements_apart(bench_dpdk.VXDP_DIRECTIONS[1], bench_dpdk.ENQUEUE) \
        == [(470.0, 110.0)]
    assert report.placements_apart(bench_dpdk.VXDP_DIRECTIONS[2], bench_dpdk.DEQUEUE) == []
    text = report.text()
    assert "1 of 1 pair(s) on different vCPU placements (xcpu 470 vs 110 ns)" in text
    assert text.count("different vCPU placements") == 1
    assert report.to_dict()["pass_placements_apart"] == [(470.0, 110.0)]


# -- taking turns: classes, pairs, comparability, the summary (synthetic figures) -----------

PASS, DROP, WIRE = bench_dpdk.VXDP_DIRECTIONS[1], bench_dpdk.VXDP_DIRECTIONS[2], \
    bench_dpdk.VXDP_DIRECTIONS[0]
ENQ, DEQ = bench_dpdk.ENQUEUE, bench_dpdk.DEQUEUE


def win(direction: str, mpps: float, before: float | None = 110.0,
        after: float | None = 110.0, at: float = 0.0, others: float = 0.0) -> DpdkFigure:
    """A window of `direction` at `mpps`, probed `before` and `after`, started at `at`,
    `others` % of a CPU taken by other processes."""
    return DpdkFigure(direction, mpps, mpps, 1, 0.5,
                      WindowCpu(before, {}, others, 0.0, xcpu_after_ns=after),
                      started=at, ended=at + 0.8)


def test_a_probe_is_classed_by_its_round_trip() -> None:
    got = [bench_dpdk.placement(x) for x in (None, 24.0, 49.9, 50.0, 120.0, 199.9, 200.0,
                                             299.0, 300.0, 500.0, 1250.0)]
    assert got == [None, "core", "core", "near", "near", "near", "unclear", "unclear",
                   "far", "far", "far"]


def test_each_window_is_paired_with_its_neighbour_of_the_other_side() -> None:
    # two rounds as the bench takes them: wire, then ours/theirs, ABBA across rounds
    figs = [win(WIRE, 14.0, at=0), win(PASS, 18.0, at=1), win(ENQ, 16.0, at=2),
            win(DROP, 15.0, at=3), win(DEQ, 17.0, at=4),
            win(WIRE, 14.1, at=5), win(ENQ, 15.0, at=6), win(PASS, 12.0, at=7),
            win(DEQ, 10.0, at=8), win(DROP, 9.0, at=9)]
    pairs = bench_dpdk.pair_windows(figs, PASS, ENQ)
    assert [(p.ours.mpps, p.theirs.mpps) for p in pairs] == [(18.0, 16.0), (12.0, 15.0)]
    assert [p.to_dict()["ours_first"] for p in pairs] == [True, False]
    assert [round(p.gap or 0, 3) for p in pairs] == [0.2, 0.2]
    drops = bench_dpdk.pair_windows(figs, DROP, DEQ)
    assert [(p.ours.mpps, p.theirs.mpps) for p in drops] == [(15.0, 17.0), (9.0, 10.0)]


def test_a_window_without_a_neighbour_of_the_other_side_stays_unpaired() -> None:
    figs = [win(PASS, 1.0), win(PASS, 2.0), win(ENQ, 4.0), win(ENQ, 8.0), win(ENQ, 16.0),
            win(PASS, 32.0)]
    pairs = bench_dpdk.pair_windows(figs, PASS, ENQ)
    # ours 1.0 has ours 2.0 beside it; 2.0 takes 4.0; 8.0 has no free neighbour of ours;
    # 16.0 and 32.0 make the last pair
    assert [(p.ours.mpps, p.theirs.mpps) for p in pairs] == [(2.0, 4.0), (32.0, 16.0)]
    assert bench_dpdk.pair_windows([win(PASS, 1.0)], PASS, ENQ) == []
    # a DPDK window between two of ours is paired once, with the first
    pairs = bench_dpdk.pair_windows([win(PASS, 1.0), win(ENQ, 2.0), win(PASS, 4.0)],
                                    PASS, ENQ)
    assert [(p.ours.mpps, p.theirs.mpps) for p in pairs] == [(1.0, 2.0)]


def test_a_pair_is_comparable_only_when_all_four_probes_agree() -> None:
    def pair(ours: tuple[float | None, float | None],
             theirs: tuple[float | None, float | None]) -> bench_dpdk.WindowPair:
        (p,) = bench_dpdk.pair_windows([win(PASS, 8.0, *ours), win(ENQ, 10.0, *theirs)],
                                       PASS, ENQ)
        return p
    assert pair((105.0, 118.0), (99.0, 120.0)).placement == "near"
    assert pair((480.0, 1200.0), (520.0, 470.0)).placement == "far"
    assert pair((24.0, 25.0), (24.0, 26.0)).placement == "core"
    for ours, theirs in (((110.0, 480.0), (110.0, 110.0)),  # ours ended far
                         ((110.0, 110.0), (480.0, 110.0)),  # theirs began far
                         ((110.0, 110.0), (24.0, 110.0)),  # near and one core
                         ((250.0, 250.0), (250.0, 250.0)),  # all unclear
                         ((110.0, None), (110.0, 110.0)),  # a probe missing
                         ((None, None), (None, None))):  # one CPU: nothing probed
        p = pair(ours, theirs)
        assert p.placement is None and not p.comparable, (ours, theirs)
    assert pair((110.0, 110.0), (110.0, 110.0)).ratio == 0.8


def test_the_summary_counts_comparable_pairs_by_placement() -> None:
    figs = [win(PASS, 9.0, 110, 110), win(ENQ, 10.0, 110, 110),  # near 0.9
            win(ENQ, 10.0, 500, 500), win(PASS, 7.0, 500, 480),  # far 0.7
            win(PASS, 30.0, 110, 110), win(ENQ, 10.0, 500, 110),  # apart: 3.0, left out
            win(ENQ, 10.0, 110, 110), win(PASS, 11.0, 110, 105, others=12),  # near 1.1
            win(PASS, 5.0, 1200, 1100), win(ENQ, 10.0, 460, 480)]  # far 0.5
    report = DpdkReport(figs, cpus=2)
    s = report.summary("pass")
    assert (s.pairs, s.comparable, s.at_or_over) == (5, 4, 2)
    assert s.ratios == (0.9, 0.7, 1.1, 0.5)
    assert s.by_placement == {"near": (0.9, 1.1), "far": (0.7, 0.5)}
    assert s.met is False  # near's median is 1.0, far's 0.6
    assert s.quiet == (0.9, 0.7, 0.5)  # near 1.1's window had a neighbour
    d = report.to_dict()["pass_comparable"]
    assert d["pairs"] == 5 and d["comparable"] == 4 and d["met"] is False
    assert (d["min"], d["median"], d["max"]) == (0.5, 0.8, 1.1)
    assert d["by_placement"]["far"] == {"count": 2, "min": 0.5, "median": 0.6, "max": 0.7}
    assert d["quiet"] == {"count": 3, "min": 0.5, "median": 0.7, "max": 0.9}
    assert report.round_ratios(PASS, ENQ) == [0.9, 0.7, 3.0, 1.1, 0.5]  # all pairs
    assert len(report.to_dict()["pass_pairs"]) == 5
    assert report.to_dict()["pass_pairs"][2]["comparable"] is False
    json.loads(report.to_json())
    text = report.text()
    assert ("4 of 5 pairs comparable: min / median / max 0.50 / 0.80 / 1.10x "
            "(far/far 2: 0.50 / 0.60 / 0.70; near/near 2: 0.90 / 1.00 / 1.10; "
            "3 quiet: 0.50 / 0.70 / 0.90x); "
            "2 of 4 at or over 0.8x: failed") in text


def test_a_target_is_met_only_when_every_placements_median_is() -> None:
    near = [win(PASS, 9.0), win(ENQ, 10.0), win(ENQ, 10.0), win(PASS, 7.0),
            win(PASS, 8.5), win(ENQ, 10.0)]
    s = DpdkReport(near, cpus=2).summary("pass")
    assert s.by_placement == {"near": (0.9, 0.7, 0.85)} and s.met is True
    assert s.at_or_over == 2
    far = [win(PASS, 3.0, 500, 500), win(ENQ, 10.0, 500, 500)]
    assert DpdkReport(near + far, cpus=2).summary("pass").met is False
    apart = [win(PASS, 9.0, 110, 500), win(ENQ, 10.0)]
    none = DpdkReport(apart, cpus=2).summary("pass")
    assert none.met is None and none.comparable == 0 and none.pairs == 1
    assert DpdkReport(apart, cpus=2).to_dict()["pass_comparable"]["median"] is None
    assert "no comparable pair of 1" in DpdkReport(apart, cpus=2).text()


def test_the_schedule_takes_turns_abba() -> None:
    def turn(name: str) -> bench_dpdk._Turn:
        async def nothing() -> None:
            return None

        async def counters() -> tuple[int, int]:
            return 0, 0
        return bench_dpdk._Turn(name, nothing, counters, nothing)
    w, p, e, d, q = (turn(x) for x in ("w", "p", "e", "d", "q"))
    order = [t.direction for t in bench_dpdk.schedule(3, [(p, e), (d, q)], [w])]
    assert order == ["w", "p", "e", "d", "q",
                     "w", "e", "p", "q", "d",
                     "w", "p", "e", "d", "q"]
    assert [t.direction for t in bench_dpdk.schedule(2, [(p, None)])] == ["p", "p"]


def test_a_window_says_how_much_the_other_set_up_ran() -> None:
    watch = bench_dpdk._CpuWatch({"vxdp": os.getpid(), "other": os.getppid()}, None)
    watch.start()
    until = time.perf_counter() + 0.1
    while time.perf_counter() < until:
        pass
    cpu = watch.stop()
    assert set(cpu.procs) == {"vxdp", "other"} and cpu.procs["vxdp"] > 0
    assert json.loads(json.dumps(asdict(cpu)))["procs"]["vxdp"] == cpu.procs["vxdp"]
