"""vxdp.dpdk's parsers on testpmd's own words, and the launcher's lifecycle."""

from __future__ import annotations

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
    with trio.fail_after(45):
        report = await bench_dpdk.measure(0.3, warmup=0.1, vxdp_host=True,
                                          directions=bench_dpdk.DIRECTIONS[1:])
    assert [f.direction for f in report.figures] == [*bench_dpdk.VXDP_DIRECTIONS,
                                                     bench_dpdk.ENQUEUE]
    for f in report.figures:
        assert f.frames > 0 and f.mpps > 0
        # where its CPU went: testpmd's forwarding thread ran, and in vxdp's windows this
        # process's thread (the host) too (in DPDK's own it may idle below the 1% shown)
        assert f.cpu is not None
        assert any(k.startswith("testpmd-guest:") for k in f.cpu.threads)
        assert f.direction not in bench_dpdk.VXDP_DIRECTIONS or "vxdp" in f.cpu.threads
        assert (f.cpu.xcpu_ns is None) == (bench_dpdk._forwarding_cpus() is None)
    ratio = report.vxdp_pass_ratio
    assert ratio is not None and ratio == report.figures[1].mpps / report.figures[3].mpps
    assert "target 0.8x" in report.text()
    assert report.to_dict()["vxdp_pass_ratio"] == ratio
    assert report.guest_drop_ratio is None  # DPDK's dequeue was not measured


def test_testpmd_that_cannot_start_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VXDP_TESTPMD", "/bin/false")
    monkeypatch.setattr(dpdk, "_probe", False)
    reason = dpdk.unavailable()
    assert reason is not None and "cannot start here (exit 1)" in reason


async def test_a_lost_show_command_is_typed_again(
        autojump_clock: trio.testing.MockClock) -> None:
    # testpmd's line editor can drop a line typed while its event thread prints; a
    # read-only command is typed again after `retype_after`, a state change never is.
    typed: list[bytes] = []

    class Stdin:
        async def send_all(self, data: bytes) -> None:
            typed.append(data)
            if len(typed) > 1:  # the first line is lost
                pmd._received(STATS + "testpmd> ")

    class Process:
        stdin = Stdin()

    pmd = dpdk.Testpmd(Process(), -1, "test", [])  # type: ignore[arg-type]
    stats = await pmd.port_stats(0)
    assert typed == [b"show port stats 0\n"] * 2
    assert stats.rx_packets == 300 and stats.rx_bytes == 26550
    typed.clear()
    with pytest.raises(dpdk.DpdkError, match="within"):
        await pmd.command("start", timeout=5)  # not idempotent: typed once, then an error
    assert typed == [b"start\n"]
