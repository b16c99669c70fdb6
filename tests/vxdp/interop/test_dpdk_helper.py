"""vxdp.dpdk's parsers on testpmd's own words, and the launcher's lifecycle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
import trio.testing

from vxdp import bench_dpdk, dpdk

# `show port stats 0` as testpmd 22.11 prints it (its trailing blanks kept)
STATS = """
  ######################## NIC statistics for port 0  ########################
  RX-packets: 300        RX-missed: 2          RX-bytes:  26550
  RX-errors: 1
  RX-nombuf:  4\x20\x20\x20\x20\x20\x20\x20\x20\x20
  TX-packets: 85312      TX-errors: 0          TX-bytes:  5459968

  Throughput (since last show)
  Rx-pps:            7          Rx-bps:         4200
  Tx-pps:        83793          Tx-bps:     42902352
  ############################################################################
"""

VHOST_LOG = """\
VHOST_CONFIG: (/tmp/v.sock) read message VHOST_USER_GET_FEATURES
VHOST_CONFIG: (/tmp/v.sock) read message VHOST_USER_SET_PROTOCOL_FEATURES
VHOST_CONFIG: (/tmp/v.sock) negotiated Vhost-user protocol features: 0x10009
VHOST_CONFIG: (/tmp/v.sock) read message VHOST_USER_SET_FEATURES
VHOST_CONFIG: (/tmp/v.sock) negotiated Virtio features: 0x570008002
VHOST_CONFIG: (/tmp/v.sock) read message VHOST_USER_SET_STATUS
"""


def test_parse_port_stats() -> None:
    stats = dpdk.parse_port_stats("noise\n" + STATS + "testpmd> ")
    assert stats == {0: dpdk.PortStats(0, rx_packets=300, rx_bytes=26550, rx_missed=2,
                                       rx_errors=1, rx_nombuf=4, tx_packets=85312,
                                       tx_bytes=5459968, tx_errors=0, rx_pps=7,
                                       tx_pps=83793)}
    assert dpdk.parse_port_stats("testpmd> ") == {}
    with pytest.raises(dpdk.DpdkError, match="tx-packets"):
        dpdk.parse_port_stats(STATS.replace("TX-packets", "TX-pockets"))


def test_vhost_log() -> None:
    assert dpdk.vhost_log(VHOST_LOG) == {
        "messages": ["VHOST_USER_GET_FEATURES", "VHOST_USER_SET_PROTOCOL_FEATURES",
                     "VHOST_USER_SET_FEATURES", "VHOST_USER_SET_STATUS"],
        "features": 0x570008002, "protocol_features": 0x10009}
    assert dpdk.vhost_log("") == {"messages": [], "features": None,
                                  "protocol_features": None}


def test_lcores_and_eal_args() -> None:
    args = dpdk.eal_args(["net_null0", "net_null1"], prefix="p", lcores="0@0,1@0")
    assert args[:2] == ["--lcores", "0@0,1@0"]
    assert {"--no-huge", "--no-pci"} <= set(args)
    assert args[args.index("--file-prefix") + 1] == "p"
    assert [args[i + 1] for i, a in enumerate(args) if a == "--vdev"] == ["net_null0",
                                                                           "net_null1"]
    if dpdk.cpu_count() >= 2:  # two instances forward on different CPUs
        fwd = {dpdk.lcores_for(i).split(",")[1] for i in (0, 1)}
        assert fwd == {"1@1", "1@0"}
    assert dpdk.unique_prefix("x") != dpdk.unique_prefix("x")


def test_missing_testpmd_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VXDP_TESTPMD", "/nonexistent/dpdk-testpmd")
    assert dpdk.find_testpmd() is None
    monkeypatch.setattr(dpdk, "_probe", False)
    reason = dpdk.unavailable()
    assert reason is not None and "not found" in reason
    report = bench_dpdk.run(0.1)
    assert report.skipped == reason and report.figures == []
    assert report.vhost_enqueue_mpps is None
    assert "not measured" in report.text()


async def test_testpmd_lifecycle(testpmd: str) -> None:
    """Prompt, a command's output, stats that move, and a clean stop (runtime directory
    gone, process reaped) even when the body raises."""
    with trio.fail_after(30):
        with pytest.raises(RuntimeError, match="body failed"):
            async with dpdk.open_testpmd(["net_null0"], binary=testpmd) as pmd:
                assert dpdk.run_dir(pmd.prefix).is_dir()
                assert "net_null" in await pmd.command("show port info 0")
                await pmd.forward("txonly")
                await trio.sleep(0.2)
                await pmd.halt()
                assert (await pmd.port_stats(0)).tx_packets > 0
                raise RuntimeError("body failed")
    assert pmd.process.returncode == 0  # it quit when asked
    assert not dpdk.run_dir(pmd.prefix).exists()


async def test_testpmd_that_dies_is_reported(testpmd: str, sock_dir: Path) -> None:
    """virtio_user dialing a socket nobody serves: testpmd gives up on the port; a
    command to a port that is not there is answered, and nothing hangs."""
    with trio.fail_after(30):
        async with dpdk.open_testpmd([f"virtio_user0,path={sock_dir / 'none.sock'}"],
                                     binary=testpmd) as pmd:
            assert "Invalid port" in await pmd.command("show port info 0")
            with pytest.raises(dpdk.DpdkError, match="no statistics"):
                await pmd.port_stats(0)


@pytest.mark.slow
async def test_bench_dpdk_measures_both_directions(testpmd: str) -> None:
    with trio.fail_after(45):
        report = await bench_dpdk.measure(0.3, warmup=0.1)
    assert report.skipped is None
    assert [f.direction for f in report.figures] == list(bench_dpdk.DIRECTIONS)
    for f in report.figures:
        assert f.frames > 0 and f.mpps > 0 and f.sender_mpps > 0
    assert report.vhost_enqueue_mpps == report.figures[1].mpps
    assert "vhost -> virtio_user" in report.text()


@pytest.mark.slow
async def test_bench_dpdk_against_vxdp_host(testpmd: str) -> None:
    """Both set-ups up at once, two rounds taking turns: ours first, then DPDK's first;
    the set-up not forwarding idles; each of our windows paired with its neighbour."""
    with trio.fail_after(60):
        report = await bench_dpdk.measure(0.3, warmup=0.1, vxdp_host=True, rounds=2,
                                          directions=bench_dpdk.DIRECTIONS[1:])
    wire, pass_, drop = bench_dpdk.VXDP_DIRECTIONS
    enq = bench_dpdk.ENQUEUE
    assert [f.direction for f in report.figures] == [wire, pass_, enq, drop,
                                                     wire, enq, pass_, drop]
    for f in report.figures:
        assert f.frames > 0 and f.mpps > 0
        # where its CPU went: the forwarding testpmd threads ran, and in vxdp's windows
        # this process's thread (the host) too
        assert f.cpu is not None
        ours = f.direction in bench_dpdk.VXDP_DIRECTIONS
        forwarding = "testpmd-guest:" if ours else "testpmd-user:"
        assert any(k.startswith(forwarding) for k in f.cpu.threads)
        assert not ours or "vxdp" in f.cpu.threads
        # the other set-up idles: DPDK's testpmds after `stop`, our host and guests
        # while nothing arrives (in DPDK's windows this thread only asks for its stats)
        assert f.idle_pct is not None and f.idle_pct < 10, f
        assert set(f.cpu.procs) == {"vxdp", "vxdp-guest1", "testpmd-guest",
                                    "testpmd-vhost", "testpmd-user"}
        probed = bench_dpdk._forwarding_cpus() is not None
        assert (f.cpu.xcpu_ns is not None) == probed
        assert (f.cpu.xcpu_after_ns is not None) == probed
        assert f.started is not None and f.ended is not None and f.started < f.ended
    starts = [f.started for f in report.figures]
    assert starts == sorted(starts)
    pairs = report.pairs(pass_, enq)
    assert [p.to_dict()["ours_first"] for p in pairs] == [True, False]
    assert [(p.ours, p.theirs) for p in pairs] == [(report.figures[1], report.figures[2]),
                                                   (report.figures[6], report.figures[5])]
    assert report.pairs(drop, bench_dpdk.DEQUEUE) == []  # DPDK's dequeue not asked for
    ratio = report.vxdp_pass_ratio
    best_ours, best_theirs = report.mpps(pass_), report.mpps(enq)
    assert best_ours is not None and best_theirs is not None
    assert ratio == best_ours / best_theirs
    assert "target 0.8x" in report.text()
    d = report.to_dict()
    assert d["vxdp_pass_ratio"] == ratio
    summary = d["pass_comparable"]
    assert isinstance(summary, dict) and summary["pairs"] == 2
    assert summary["comparable"] == sum(p.comparable for p in pairs)
    assert d["pass_ratios"] == [p.ratio for p in pairs]


@pytest.mark.slow
def test_bench_command_runs_the_dpdk_suite_taking_turns(
        testpmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    from vxdp.cli import main
    assert main(["bench", "-j", "--suite", "dpdk", "--dpdk-window", "0.2",
                 "--dpdk-rounds", "2"]) == 0
    out = json.loads(capsys.readouterr().out)["dpdk"]
    assert out["skipped"] is None
    directions = [f["direction"] for f in out["figures"]]
    assert directions.count(bench_dpdk.DEQUEUE) == directions.count(bench_dpdk.ENQUEUE) == 2
    for name in ("pass", "guest_drop"):
        assert len(out[f"{name}_pairs"]) == 2
        assert out[f"{name}_comparable"]["pairs"] == 2
        assert len(out[f"{name}_ratios"]) == 2
    assert out["vxdp_pass_ratio"] is not None and out["guest_drop_ratio"] is not None
