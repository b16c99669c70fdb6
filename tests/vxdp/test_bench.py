"""`vxdp bench` machinery: calibration programs, report shape, CLI.  Nothing here is timed:
figures are only checked to exist and be positive, never against a speed."""

from __future__ import annotations

import json

import pytest

from vxdp import packets as P
from vxdp.bench import (
    BENCH_PACKET,
    CAL_LONG,
    CAL_SHORT,
    WORKLOADS,
    Bench,
    calibration_program,
    report_json,
    report_text,
)
from vxdp.bpf.clang import clang_unavailable
from vxdp.bpf.engine import create_engine
from vxdp.cli import main
from vxdp.errors import UsageError

QUICK = {"batch": 4, "rounds": 1, "min_seconds": 0.005, "kernel_repeat": 10}


def _kernel_reason() -> str | None:
    from vxdp.bpf.kernel import kernel_unavailable
    return kernel_unavailable()


def test_bench_packet_is_a_minimum_udp_frame():
    assert len(BENCH_PACKET) == P.ETH_ZLEN  # 64 bytes on the wire with the FCS
    assert BENCH_PACKET[23] == P.IPPROTO_UDP


@pytest.mark.parametrize("n", [CAL_SHORT, CAL_SHORT + 3, CAL_SHORT + 4, CAL_LONG])
def test_calibration_programs_have_the_stated_length_and_drop(n):
    prog = calibration_program(n)
    assert prog.insn_count == n
    with create_engine("interp", prog) as eng:
        (res,) = eng.run_xdp([BENCH_PACKET])
        (other_queue,) = eng.run_xdp([BENCH_PACKET], rx_queue_index=3)
    assert res.retval == 1 and res.data == BENCH_PACKET
    assert other_queue.retval == 1  # the ALU body keeps the low bits whatever r4 is


@pytest.mark.kernel
def test_kernel_accepts_the_calibration_programs():
    if (why := _kernel_reason()) is not None:
        pytest.skip(f"kernel oracle unavailable: {why}")
    from vxdp.bpf.kernel import test_run
    for n in (CAL_SHORT, CAL_LONG):
        retval, data, _ = test_run(calibration_program(n), BENCH_PACKET, 1)
        assert (retval, data) == (1, BENCH_PACKET)


def test_bad_settings_are_usage_errors(tmp_path):
    for n in (1, CAL_SHORT + 1, CAL_SHORT + 2):
        with pytest.raises(UsageError):
            calibration_program(n)
    with pytest.raises(UsageError):
        Bench(workloads=["warp drive"])
    with pytest.raises(UsageError):
        Bench(batch=0)
    with pytest.raises(UsageError):
        Bench(progs_dir=tmp_path / "missing")


@pytest.mark.clang
def test_report_covers_every_workload():
    if (why := clang_unavailable()) is not None:
        pytest.skip(why)
    report = Bench(**QUICK).run()
    assert [m.name for m in report.workloads] == [w.name for w in WORKLOADS]
    kernel = _kernel_reason() is None
    for m in report.workloads:
        assert not m.notes, m.notes
        assert m.interp_ns_per_pkt and m.interp_ns_per_pkt > 0
        assert (m.kernel_ns_per_pkt is not None) == kernel
    assert set(report.calibration) == {f"{w}_{k}" for w in ("interp", "core", "jit", "kernel")
                                       for k in ("ns_per_insn", "fixed_ns")}
    if report.jit is None:
        assert all(m.jit_ns_per_pkt and m.jit_ns_per_pkt > 0 for m in report.workloads)
    text = report_text(report)
    for w in WORKLOADS:
        assert w.name in text
    assert "targets (core)" in text and "target (jit)" in text
    judged = report.jit is None and kernel
    assert (report.targets["jit_met"] is not None) == judged
    if judged:
        worst = max(report.workloads, key=lambda m: m.jit_ratio or 0)
        assert report.targets["jit_worst"] == worst.name
    assert json.loads(json.dumps(report_json(report)))["batch"] == QUICK["batch"]


@pytest.mark.clang
def test_cli_json(capsys):
    if (why := clang_unavailable()) is not None:
        pytest.skip(why)
    rc = main(["bench", "-j", "--suite", "xdp", "--workload", "drop", "--rounds", "1",
               "--seconds", "0.005", "--repeat", "10", "--batch", "4", "--no-jit"])
    assert rc == 0
    suites = json.loads(capsys.readouterr().out)
    assert list(suites) == ["xdp"]
    out = suites["xdp"]
    assert out["jit"] == "not asked for (--no-jit)"
    assert out["workloads"][0]["jit_ns_per_pkt"] is None
    assert [w["name"] for w in out["workloads"]] == ["drop"]
    assert out["targets"]["ns_per_insn_max"] == 2.5 and out["targets"]["fixed_ns_max"] == 20.0


def test_cli_rejects_unknown_workload(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--workload", "nope"])
    assert exc.value.code == 2


def test_verifier_suite_reports_ours_beside_the_kernel():
    if (why := clang_unavailable()) is not None:
        pytest.skip(why)
    from vxdp import bench_verifier
    bench = bench_verifier.run(sources=["xdp_drop.c", "xdp_flow_hash.c", "xdp_helper_edges.c"],
                               repeat=2)
    # xdp_helper_edges.c, once left out (562k insns without precision tracking), is in
    assert [c.program for c in bench.rows] == ["xdp_drop_all", "xdp_flow_lookup",
                                               "xdp_helper_edges"]
    assert all(c.ours.accepted and c.ours.seconds > 0 for c in bench.rows)
    assert not bench.skipped
    text = bench.text()
    assert "xdp_flow_lookup" in text
    if _kernel_reason() is None:
        assert all(c.agrees and c.kernel_insns for c in bench.rows)
        assert all(c.kernel_seconds_quiet and c.ratio(True) for c in bench.rows)
        assert "median ours/kernel" in text and bench.to_dict()["median_ratio_quiet"]
    assert f"per program of {bench_verifier.CORPUS_DIR}" in text  # the source tree's corpus


@pytest.mark.clang
def test_startup_and_exec_suites_time_whole_runs_beside_their_references(capsys):
    """Both suites run the real commands (each must exit 0, or the suite raises) and give
    min/median/max with the ratios to their references; nothing is judged here."""
    if (why := clang_unavailable()) is not None:
        pytest.skip(why)
    assert main(["bench", "-j", "--suite", "startup", "--suite", "exec", "--startup-runs",
                 "2", "--exec-packets", "300"]) == 0
    out = json.loads(capsys.readouterr().out)
    startup = {c["name"]: c for c in out["startup"]["commands"]}
    assert {"python -c pass", "vxdp --help", "vxdp verify xdp_drop.o"} <= set(startup)
    assert all(c["runs"] == 2 and 0 < c["min_s"] <= c["median_s"] <= c["max_s"]
               and c["cpu_median_s"] >= 0 for c in startup.values())
    assert startup["python -c pass"]["reference"] and not startup["vxdp --help"]["reference"]
    assert out["startup"]["target_s"] == 0.15 and isinstance(out["startup"]["met"], bool)
    ex = {c["name"]: c for c in out["exec"]["commands"]}
    assert {"vxdp exec -j", "vxdp exec (table)"} <= set(ex) and out["exec"]["packets"] == 300

    from vxdp import bench_startup
    cmds = [bench_startup.Command("ref", ["true"], reference=True, times=[0.002, 0.001],
                                  cpu=[0.001, 0.001]),
            bench_startup.Command("ours", ["true"], times=[0.01, 0.02, 0.03],
                                  cpu=[0.005, 0.004, 0.006])]
    rows = bench_startup.format_rows(cmds)
    assert "/ref" in rows[0] and rows[2].split()[1:] == ["10.0", "20.0", "30.0", "5.0", "13.3x"]


@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_cpu_time_of_repeated_batches_runs_each_batch_repeat_times(engine):
    """The core/jit columns: the core runs the batch `repeat` times in one call (the map
    counter sees every run) and reports the thread's CPU time; a fault still raises."""
    if engine == "jit":
        pytest.importorskip("vxdp.bpf.jit", exc_type=ImportError)
    from vxdp.bpf.asm import assemble
    from vxdp.bpf.isa import encode
    from vxdp.bpf.program import MapSpec, MapType, Program
    from vxdp.errors import ProgramFault
    count = ("stw [%r10-4], 0\nlddw %r1, map_fd(0)\nmov %r2, %r10\nadd %r2, -4\ncall 1\n"
             "jeq %r0, 0, +2\nmov %r1, 1\nlock add [%r0+0], %r1\nmov %r0, 1\nexit")
    prog = Program("count", "xdp", encode(assemble(count)),
                   maps=(MapSpec("n", MapType.ARRAY, 4, 8, 1),))
    with create_engine(engine, prog) as eng:
        ns = eng.cpu_ns_per_packet([BENCH_PACKET] * 3, 7)
        assert ns > 0
        assert eng.maps[0].lookup(bytes(4)) == (3 * 7).to_bytes(8, "little")
    bad = Program("bad", "xdp", encode(assemble("ldxw %r0, [%r1+4096]\nexit")))
    with create_engine(engine, bad) as eng, pytest.raises(ProgramFault, match="pc 0"):
        eng.cpu_ns_per_packet([BENCH_PACKET], 2)


def test_verifier_suite_without_the_source_tree_measures_the_bench_programs(monkeypatch,
                                                                             tmp_path):
    """An installed vxdp has no tests/: the verifier suite falls back on vxdp/bench_progs."""
    if (why := clang_unavailable()) is not None:
        pytest.skip(why)
    from vxdp import bench_verifier
    from vxdp.bench import PROGS_DIR
    monkeypatch.setattr(bench_verifier, "CORPUS_DIR", tmp_path / "no-tests")
    bench = bench_verifier.run(sources=["xdp_drop.c"], repeat=1)
    assert bench.corpus == PROGS_DIR
    assert [c.program for c in bench.rows] == ["xdp_drop_all"]
    assert bench.to_dict()["corpus"] == str(PROGS_DIR)
