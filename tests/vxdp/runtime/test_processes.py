"""`vxdp host` and `vxdp guest` as real processes: traffic through host XDP both ways,
the stats file on SIGTERM, kill -9 of a guest, the host killed and restarted."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from vxdp.bpf.clang import clang_unavailable
from vxdp.cli import main
from vxdp.packets import TrafficGenerator

from .conftest import core_unavailable, mix_object, until
from .procs import frames_in, load_json, processes

pytestmark = pytest.mark.skipif(core_unavailable() is not None,
                                reason=str(core_unavailable()))


def expected_action(frame: bytes) -> str:
    """What xdp_runtime_mix.c does with `frame`, worked out independently."""
    at, ethertype = 14, int.from_bytes(frame[12:14], "big")
    for _ in range(2):
        if ethertype not in (0x8100, 0x88A8) or len(frame) < at + 4:
            break
        ethertype = int.from_bytes(frame[at + 2:at + 4], "big")
        at += 4
    if ethertype != 0x0800 or len(frame) < at + 20 or frame[at] >> 4 != 4 \
            or frame[at] & 15 < 5:
        return "pass"
    ihl = (frame[at] & 15) * 4
    proto = frame[at + 9]
    if len(frame) < at + ihl:
        return "pass"
    if proto == 6:
        return "tx"
    if proto != 17 or len(frame) < at + ihl + 8:
        return "pass"
    dport = int.from_bytes(frame[at + ihl + 2:at + ihl + 4], "big")
    return "drop" if dport & 1 else "pass"


async def test_traffic_both_ways_and_stats_on_sigterm(tmp_path: Path) -> None:
    obj = mix_object()
    sock, wire_out, guest_out = tmp_path / "g0.sock", tmp_path / "wire.pcap", tmp_path / "g.pcap"
    host_stats, guest_stats = tmp_path / "host.json", tmp_path / "guest.json"
    inbound = TrafficGenerator(5, sizes=(128,)).packets(200)
    outbound = TrafficGenerator(6, sizes=(100,)).packets(50)
    actions = [expected_action(f) for f in inbound]
    passed = [f for f, a in zip(inbound, actions) if a == "pass"]
    tx = [f for f, a in zip(inbound, actions) if a == "tx"]
    assert passed and tx and "drop" in actions  # the traffic exercises every branch
    with trio.fail_after(40):
        async with processes(tmp_path) as procs:
            host = await procs.host("--socket", str(sock), "--xdp", str(obj), "--wire",
                                    f"gen:count=200,seed=5,size=128,out={wire_out}",
                                    "--stats-json", str(host_stats))
            guest = await procs.guest("--socket", str(sock), "--wire",
                                      f"gen:count=50,seed=6,size=100,out={guest_out}",
                                      "--stats-json", str(guest_stats))
            await until(lambda: len(frames_in(guest_out)) == len(passed)
                        and len(frames_in(wire_out)) == len(tx) + 50,
                        "traffic to settle", timeout=20)
            assert await guest.stop() == 0
            assert await host.stop() == 0
    assert frames_in(guest_out) == passed  # wire -> host XDP -> guest, in order
    on_wire = frames_in(wire_out)
    assert [f for f in on_wire if f in outbound] == outbound  # guest -> wire, in order
    swapped = [f[6:12] + f[:6] + f[12:] for f in tx]
    assert sorted(f for f in on_wire if f not in outbound) == sorted(swapped)  # XDP_TX
    h = load_json(host_stats)
    assert h["xdp"]["actions"] == {"aborted": 0, "drop": actions.count("drop"),
                                   "pass": len(passed), "tx": len(tx), "redirect": 0}
    q = h["guests"][0]["queues"]
    assert q["receiveq1"] == {"packets": len(passed), "bytes": sum(map(len, passed))}
    assert q["transmitq1"] == {"packets": 50, "bytes": 5000}
    assert h["wire"]["rx_packets"] == 200 and h["wire"]["tx_packets"] == len(tx) + 50
    g = load_json(guest_stats)
    assert g["rx"]["receiveq1"]["packets"] == len(passed)
    assert g["tx"]["transmitq1"] == {"packets": 50, "bytes": 5000}


async def _driver_mode_run(tmp_path: Path, datapath: str, n_pass: int,
                           n_tx: int) -> tuple[list[bytes], list[bytes], dict]:
    """Host on C without a program, the mix program in the guest's driver."""
    sock, wire_out, guest_out = (tmp_path / f"{datapath}.sock", tmp_path / f"{datapath}-w.pcap",
                                 tmp_path / f"{datapath}-g.pcap")
    stats = tmp_path / f"{datapath}-guest.json"
    async with processes(tmp_path) as procs:
        host = await procs.host("--socket", str(sock), "--datapath", "c", "--wire",
                                f"gen:count=300,seed=8,size=128,out={wire_out}")
        guest = await procs.guest("--socket", str(sock), "--datapath", datapath, "--xdp",
                                  str(mix_object()), "--wire", f"pcap:out={guest_out}",
                                  "--stats-json", str(stats))
        await until(lambda: len(frames_in(guest_out)) == n_pass
                    and len(frames_in(wire_out)) == n_tx, "traffic to settle", timeout=20)
        assert await guest.stop() == 0
        assert await host.stop() == 0
    return frames_in(guest_out), frames_in(wire_out), load_json(stats)


async def test_driver_mode_xdp_in_c_matches_the_python_driver(tmp_path: Path) -> None:
    inbound = TrafficGenerator(8, sizes=(128,)).packets(300)
    actions = [expected_action(f) for f in inbound]
    passed = [f for f, a in zip(inbound, actions) if a == "pass"]
    tx = [f[6:12] + f[:6] + f[12:] for f, a in zip(inbound, actions) if a == "tx"]
    want = {"aborted": 0, "drop": actions.count("drop"), "pass": len(passed),
            "tx": len(tx), "redirect": 0}
    assert want["drop"] and want["pass"] and want["tx"]  # every branch is exercised
    runs = {}
    with trio.fail_after(60):
        for datapath in ("c", "python"):
            runs[datapath] = await _driver_mode_run(tmp_path, datapath, len(passed), len(tx))
    for datapath, (in_guest, on_wire, g) in runs.items():
        assert in_guest == passed, datapath  # PASS reaches the stack, in order
        assert on_wire == tx, datapath  # XDP_TX goes back out through the device
        assert g["xdp"]["actions"] == want, datapath
        assert g["dropped"]["xdp"] == want["drop"], datapath
        assert g["rx"]["receiveq1"] == {"packets": 300, "bytes": 300 * 128}, datapath
        assert g["tx"]["transmitq1"]["packets"] == len(tx), datapath
        assert g["stack"] == {"packets": len(passed), "bytes": 128 * len(passed)}, datapath
        assert g["datapath"]["kind"] == datapath, datapath
    c = runs["c"][2]["datapath"]["c_counters"]
    assert c["xdp_drop"] == want["drop"] and c["xdp_tx"] == want["tx"]
    assert runs["python"][2]["datapath"]["c_counters"] == {}
    shape = lambda d: {k: sorted(v) if isinstance(v, dict) else None  # noqa: E731
                       for k, v in d.items() if k != "datapath"}
    assert shape(runs["c"][2]) == shape(runs["python"][2])  # the stats file keeps its shape


async def test_kill_one_guest_the_host_serves_the_other(tmp_path: Path) -> None:
    socks = [tmp_path / "a.sock", tmp_path / "b.sock"]
    caps = [tmp_path / "a.pcap", tmp_path / "b.pcap"]
    stats = tmp_path / "host.json"
    with trio.fail_after(40):
        async with processes(tmp_path) as procs:
            host = await procs.host("--socket", str(socks[0]), "--socket", str(socks[1]),
                                    "--wire", "gen:rate=400,size=90,seed=2",
                                    "--stats-json", str(stats))
            guests = [await procs.start("guest", "guest", "--socket", str(s), "--wire",
                                        f"pcap:out={c}") for s, c in zip(socks, caps)]
            await until(lambda: all(len(frames_in(c)) > 10 for c in caps), "both receive",
                        timeout=15)
            guests[1].signal(signal.SIGKILL)
            await guests[1].process.wait()
            seen = len(frames_in(caps[0]))
            await until(lambda: len(frames_in(caps[0])) > seen + 40,
                        "guest a keeps receiving", timeout=15)
            later = len(frames_in(caps[0]))
            assert host.process.poll() is None
            host.signal(signal.SIGUSR1)  # stats now, and the host goes on
            await until(stats.exists, "the stats file")
            assert load_json(stats)["guests"][0]["live"] and host.process.poll() is None
            assert await host.stop() == 0
            await guests[0].stop()
    h = load_json(stats)
    a, b = h["guests"]
    assert a["sessions"] == 1 and a["connected"] and a["live"]
    assert b["sessions"] == 1 and not b["connected"] and b["last_disconnect"]
    assert a["queues"]["receiveq1"]["packets"] >= later > seen + 40


async def test_host_killed_guest_reports_gone_and_reconnects(tmp_path: Path) -> None:
    sock, cap, wire = tmp_path / "g.sock", tmp_path / "g.pcap", tmp_path / "w.pcap"
    stats = tmp_path / "guest.json"
    with trio.fail_after(40):
        async with processes(tmp_path) as procs:
            host = await procs.host("--socket", str(sock), "--wire", "gen:count=20,seed=1")
            guest = await procs.guest("--socket", str(sock), "--wire",
                                      f"gen:rate=200,size=100,seed=3,out={cap}",
                                      "--stats-json", str(stats))
            await until(lambda: len(frames_in(cap)) == 20, "first host's 20 frames")
            host.signal(signal.SIGKILL)
            await host.process.wait()
            gone = await guest.wait_for("device_gone: device gone")
            assert "keeping driver state" in guest.out
            await trio.sleep(0.3)  # the guest keeps queueing frames meanwhile
            await procs.host("--socket", str(sock), "--wire",
                             f"gen:count=30,seed=4,out={wire}")
            await guest.wait_for("reconnected", after=gone)
            await until(lambda: len(frames_in(cap)) == 50, "second host's 30 frames")
            await until(lambda: len(frames_in(wire)) > 60, "the guest's frames flow again")
            assert await guest.stop() == 0
    assert "rings resumed" in guest.out
    g = load_json(stats)  # the C datapath kept the rings across the restart
    assert g["datapath"]["kind"] == "c" and g["connects"] >= 2
    assert g["rx"]["receiveq1"]["packets"] == 50 == g["stack"]["packets"]


@pytest.mark.parametrize(("argv", "message"), [
    (["host", "--socket", "x.sock", "--wire", "bogus:1"], "unknown port kind 'bogus'"),
    (["host", "--socket", "x.sock", "--xdp", "/nonexistent.o"], "cannot read /nonexistent.o"),
    (["guest", "--socket", "x.sock", "--queue-size", "0"], "--queue-size 0 is outside"),
    (["guest", "--socket", "x.sock", "--wire", "gen:rate=x"], "rate='x' is not an integer"),
])
def test_unusable_input_exits_2(argv: list[str], message: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["host", "guest"])
def test_an_xdp_program_the_verifier_rejects_is_never_attached(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`--xdp` is verified before the process serves anything (the host under its device
    profile, the guest as its kernel would): the log is printed, the pc and the reason
    end the command with 2."""
    from vxdp.bpf.clang import compile_c
    if (reason := clang_unavailable()) is not None:
        pytest.skip(reason)
    src = Path(__file__).parents[1] / "verifier" / "c" / "parse_no_check.c"
    obj = compile_c(src)
    assert main([command, "--socket", "never.sock", "--xdp", str(obj)]) == 2
    err = capsys.readouterr().err
    assert "invalid access to packet" in err  # the kernel's words, in the log
    assert "program 'parse_no_check' rejected at pc" in err
    assert not Path("never.sock").exists()


async def test_bench_process_measures_every_workload() -> None:
    """The end-to-end offload/driver-mode bench moves frames in each of its nine
    workloads, the offload over the control queue and over the agent path (a smoke run:
    short windows; nothing is asserted about the rates)."""
    from vxdp import bench_process
    if (reason := clang_unavailable()) is not None:
        pytest.skip(reason)
    with trio.fail_after(90):
        report = await bench_process.measure(0.2, warmup=0.05)
    assert report.skipped is None
    assert [f.workload for f in report.figures] == list(bench_process.WORKLOADS)
    for f in report.figures:
        assert f.frames > 0, f
    assert set(report.ratios()) == {"drop", "tx"}
    assert set(report.ratios(bench_process.VIA_PAIRS)) == {"drop", "tx"}
    assert "offload/driver-mode DROP end to end" in report.text()
    assert "agent/controlq offload TX: " in report.text()
