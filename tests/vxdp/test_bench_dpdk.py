"""vxdp.bench_dpdk's accounting of where a window's CPU went (no testpmd needed; the
windows themselves: tests/vxdp/interop/test_dpdk_helper.py).  Nothing is timed."""

from __future__ import annotations

import json
import os
import time

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
    assert "1 of 1 round(s) on different vCPU placements (xcpu 470 vs 110 ns)" in text
    assert text.count("different vCPU placements") == 1
    assert report.to_dict()["pass_placements_apart"] == [(470.0, 110.0)]
