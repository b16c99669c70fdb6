"""`vxdp exec` end to end: object + pcap in, per-packet JSON, pcap and map JSON out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vxdp.bpf.clang import clang_unavailable, compile_c
from vxdp.bpf.kernel import kernel_unavailable
from vxdp.cli import main
from vxdp.pcap import Packet, read_pcap, write_pcap

SRC = Path(__file__).parent / "elf_src"
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.clang

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
IPV4 = MAC_A + MAC_B + bytes.fromhex("0800") + bytes(range(46))
ARP = MAC_A + MAC_B + bytes.fromhex("0806") + bytes(28)
IPV6 = MAC_A + MAC_B + bytes.fromhex("86dd") + bytes(54)
SHORT = bytes(14)  # a bare Ethernet header: the program's bounds check passes


def _compiled(name: str) -> Path:
    if reason := clang_unavailable():
        pytest.skip(reason)
    return compile_c(SRC / f"{name}.c")


@pytest.fixture
def files(tmp_path):
    obj = tmp_path / "exec_swap.o"
    obj.write_bytes(_compiled("exec_swap").read_bytes())
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, [Packet(IPV4, 1_000_000_000), Packet(ARP, 2_000_000_000),
                      Packet(IPV6, 3_000_000_000)])
    return obj, pcap, tmp_path


def _engine(name: str) -> str:
    if name == "kernel":
        if reason := kernel_unavailable():
            pytest.skip(reason)
    elif name == "interp":
        try:
            from vxdp.bpf.interp import InterpEngine  # noqa: F401
        except ImportError:
            pytest.skip("interp engine (vxdp.bpf.interp.InterpEngine) not available yet")
    return name


def run_json(capsys, *argv: str) -> tuple[list[dict], dict]:
    assert main(["exec", *argv, "-j"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return lines[:-1], lines[-1]["maps"]


@pytest.mark.parametrize("engine", ["kernel", "interp"])
def test_json_per_packet_then_maps(files, capsys, engine):
    obj, pcap, _ = files
    packets, maps = run_json(capsys, str(obj), "--pcap", str(pcap), "--engine", _engine(engine))
    assert [(p["index"], p["retval"], p["action"], p["len"]) for p in packets] == [
        (0, 3, "XDP_TX", len(IPV4)), (1, 2, "XDP_PASS", len(ARP)), (2, 2, "XDP_PASS", len(IPV6))]
    assert bytes.fromhex(packets[0]["data_hex"]) == MAC_B + MAC_A + IPV4[12:]  # swapped
    assert bytes.fromhex(packets[1]["data_hex"]) == ARP
    assert set(maps) == {"blocked", "actions"}
    actions = {e["key"]: e["value"] for e in maps["actions"]["entries"]}
    assert actions["02000000"] == (2).to_bytes(8, "little").hex()  # PASS twice
    assert actions["03000000"] == (1).to_bytes(8, "little").hex()  # TX once
    assert maps["blocked"] == {"type": "hash", "key_size": 2, "value_size": 4,
                               "max_entries": 16, "entries": []}


@pytest.mark.parametrize("engine", ["kernel", "interp"])
def test_maps_in_out_and_out_pcap(files, capsys, engine):
    obj, pcap, tmp = files
    seed = tmp / "seed.json"
    seed.write_text(json.dumps({"blocked": {"entries": [{"key": "86dd", "value": "01000000"}]}}))
    out, maps_out = tmp / "out.pcap", tmp / "maps.json"
    packets, maps = run_json(capsys, str(obj), "--pcap", str(pcap), "--engine", _engine(engine),
                             "--maps-in", str(seed), "--out", str(out),
                             "--maps-out", str(maps_out))
    assert [p["action"] for p in packets] == ["XDP_TX", "XDP_PASS", "XDP_DROP"]
    left = read_pcap(out)  # the dropped IPv6 frame is not in --out
    assert [p.data for p in left] == [MAC_B + MAC_A + IPV4[12:], ARP]
    assert [p.timestamp_ns for p in left] == [1_000_000_000, 2_000_000_000]
    assert json.loads(maps_out.read_text()) == maps
    assert maps["blocked"]["entries"] == [{"key": "86dd", "value": "01000000"}]


def test_engines_agree(files, capsys):
    obj, pcap, _ = files
    write_pcap(pcap, [IPV4, ARP, IPV6, SHORT, IPV4[:20]])
    kernel = run_json(capsys, str(obj), "--pcap", str(pcap), "--engine", _engine("kernel"))
    interp = run_json(capsys, str(obj), "--pcap", str(pcap), "--engine", _engine("interp"))
    assert interp == kernel


def test_table_output(files, capsys):
    obj, pcap, _ = files
    assert main(["exec", str(obj), "--pcap", str(pcap), "--engine", _engine("kernel")]) == 0
    out = capsys.readouterr().out
    assert "index" in out.splitlines()[0]
    assert "XDP_TX" in out and "02 00 00 00 00 02 02 00 00 00 00 01" in out
    assert "3 packets through swap (kernel): 2 XDP_PASS, 1 XDP_TX" in out
    assert "map actions: array, 5 of 5 entries" in out


def test_empty_pcap_and_empty_maps_in(files, capsys):
    obj, pcap, tmp = files
    write_pcap(pcap, [])
    seed = tmp / "empty.json"
    seed.write_text("{}")
    packets, maps = run_json(capsys, str(obj), "--pcap", str(pcap), "--maps-in", str(seed),
                             "--engine", _engine("kernel"))
    assert packets == [] and "actions" in maps


@pytest.mark.parametrize(("extra", "message"), [
    (["--program", "nope"], "has no program 'nope'"),
    (["--maps-in", "{tmp}/bad.json"], "map json: no map named 'missing'"),
    (["--pcap", "{tmp}/none.pcap"], "cannot read"),
    (["--engine", "kernel", "--section", "tc"], "has no section 'tc'"),
])
def test_unusable_input_exits_2(files, capsys, extra, message):
    obj, pcap, tmp = files
    (tmp / "bad.json").write_text(json.dumps({"missing": {}}))
    argv = ["exec", str(obj), "--pcap", str(pcap), "--engine", "kernel"]
    argv += [a.format(tmp=tmp) for a in extra]
    if "--engine" in extra or "--maps-in" in extra:
        _engine("kernel")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vxdp: error: ") and message in err


def test_several_programs_need_program_and_tc_is_refused(tmp_path, capsys):
    obj = tmp_path / "multi.o"
    obj.write_bytes(_compiled("multi").read_bytes())
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, [IPV4])
    assert main(["exec", str(obj), "--pcap", str(pcap)]) == 2
    assert "holds 4 programs; choose one with --program" in capsys.readouterr().err
    assert main(["exec", str(obj), "--pcap", str(pcap), "--program", "tc_pass"]) == 2
    assert "is sched_cls, not xdp" in capsys.readouterr().err


def test_real_entry_point(files):
    obj, pcap, _ = files
    _engine("kernel")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "vxdp", "exec", str(obj), "--pcap", str(pcap),
                           "--engine", "kernel", "-j"], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[0])["action"] == "XDP_TX"


def test_out_keeps_nanosecond_timestamps(files, capsys):
    obj, pcap, tmp = files
    write_pcap(pcap, [Packet(IPV4, 1_000_000_007), Packet(ARP, 2_000_000_009)], nsec=True)
    out = tmp / "out.pcap"
    run_json(capsys, str(obj), "--pcap", str(pcap), "--engine", _engine("kernel"),
             "--out", str(out))
    assert [p.timestamp_ns for p in read_pcap(out)] == [1_000_000_007, 2_000_000_009]


class CountingStdout:
    """Stands in for sys.stdout: what was written, and in how many writes."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_output_streams_in_chunks_with_the_records_json_dumps_gives(files, monkeypatch,
                                                                    as_json):
    """A large run is written a chunk of lines at a time (one write call each, not one
    per packet: stdout may be unbuffered), and each -j line is json.dumps of the record."""
    from vxdp.bpf.engine import XdpResult
    from vxdp.commands import exec as cmd
    obj, _, tmp = files
    n = 2 * cmd.CHUNK + 5
    pcap = tmp / "many.pcap"
    write_pcap(pcap, [Packet((IPV4, ARP, IPV6)[i % 3], i * 1000) for i in range(n)])
    out = CountingStdout()
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["exec", str(obj), "--pcap", str(pcap), *(["-j"] if as_json else [])]) == 0
    lines = "".join(out.parts).splitlines()
    assert len(out.parts) <= 4  # header and rows, summary and maps: a few chunks
    if not as_json:  # header, a row a packet, the summary, a line a map
        assert lines[0].startswith("index") and lines[n + 1].startswith(f"{n} packets")
        assert sorted(line.split(":")[0] for line in lines[n + 2:]) == ["map actions",
                                                                 "map blocked"]
        return
    assert len(lines) == n + 1 and set(json.loads(lines[-1])["maps"]) == {"actions", "blocked"}
    records = [json.loads(line) for line in lines[:-1]]
    assert [r["index"] for r in records] == list(range(n))
    for line, rec in zip(lines[:3], records):
        result = XdpResult(rec["retval"], bytes.fromhex(rec["data_hex"]))
        assert line == json.dumps(cmd.packet_record(rec["index"], result))
    for retval in (2, 3, 7):  # 7 is no XDP action: null
        r = XdpResult(retval, b"\x01\x02")
        assert cmd.packet_json(5, r) == json.dumps(cmd.packet_record(5, r))


@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_ringbuf_and_perf_records_are_shown(tmp_path, capsys, engine):
    # a ringbuf map has no elements to dump: exec used to fail on it ("get_next_key");
    # its records, and a perf event array's, come with the final maps object
    if reason := clang_unavailable():
        pytest.skip(reason)
    obj = compile_c(ROOT / "tests" / "vxdp" / "progs" / "xdp_ringbuf.c")
    perf = compile_c(ROOT / "tests" / "vxdp" / "verifier" / "c" / "perf_fib_ok.c")
    pcap = tmp_path / "in.pcap"
    big = IPV4 + bytes(range(14))  # 74 bytes: the sample copies the first 64
    write_pcap(pcap, [Packet(big, 1_000_000_000), Packet(ARP, 2_000_000_000)])
    _, maps = run_json(capsys, str(obj), "--pcap", str(pcap), "--engine", _engine(engine))
    samples = maps["samples"]
    assert samples["type"] == "ringbuf" and samples["entries"] == []
    first = bytes.fromhex(samples["records"][0])  # struct sample {len, ifindex, head[64]}
    assert first[:8] == len(big).to_bytes(4, "little") + (1).to_bytes(4, "little")
    assert first[8:72] == big[:64]
    _, maps = run_json(capsys, str(perf), "--pcap", str(pcap), "--engine", _engine(engine))
    tag = (0x1122334455667788).to_bytes(8, "little")
    assert maps["events"]["records"] == [{"cpu": 0, "data": (tag + big[:14]).hex()},
                                         {"cpu": 0, "data": (tag + ARP[:14]).hex()}]
    assert main(["exec", str(perf), "--pcap", str(pcap)]) == 0
    assert "map events: perf_event_array, 2 records" in capsys.readouterr().out


@pytest.mark.parametrize("size", [0, 70_000])
@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_a_frame_no_xdp_run_can_take_exits_2_naming_it(files, capsys, size, engine):
    """0 bytes, or more than a page: a usage error naming the file and the packet, not a
    traceback."""
    if engine == "jit":
        from vxdp.bpf.jit import unavailable
        if unavailable():
            pytest.skip(str(unavailable()))
    obj, _, tmp = files
    pcap = tmp / "odd.pcap"
    write_pcap(pcap, [Packet(IPV4), Packet(bytes(size))])
    assert main(["exec", str(obj), "--pcap", str(pcap), "--engine", _engine(engine)]) == 2
    err = capsys.readouterr().err
    assert err == (f"vxdp: error: {pcap}: packet 1: {size} bytes, an XDP test run takes 14 "
                   f"to 3520 (engine {engine})\n")
