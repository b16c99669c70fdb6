"""The .data suite: every bpf_conformance file through the interpreter, the schema, the
runner's verdicts and `vxdp isa-test`."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest

from vxdp.bpf.datatest import (
    DataFileError,
    FileResult,
    Outcome,
    RunRaw,
    data_files,
    parse_file,
    parse_text,
    run_test,
    summary,
)
from vxdp.cli import main
from vxdp.errors import ProgramFault, UsageError, VxdpError

SUITE = Path(os.environ.get("VXDP_CONFORMANCE_DIR")
             or Path(__file__).parents[3] / "shared/testdata/bpf_conformance")
SUITE_FILES = sorted(SUITE.glob("*.data")) if SUITE.is_dir() else []


@functools.cache
def _interp_unavailable() -> str | None:
    try:
        from vxdp.bpf.interp import run_raw
        run_raw(bytes.fromhex("b7000000070000009500000000000000"), b"")
    except (ImportError, VxdpError, OSError) as exc:
        return f"the interp engine is not available: {exc}"
    return None


def _interp() -> RunRaw:
    if reason := _interp_unavailable():
        pytest.skip(reason)
    from vxdp.bpf.interp import run_raw
    return run_raw


@pytest.mark.skipif(not SUITE_FILES, reason=f"no conformance suite at {SUITE} "
                    "(set VXDP_CONFORMANCE_DIR)")
@pytest.mark.parametrize("path", SUITE_FILES, ids=[p.name for p in SUITE_FILES])
def test_conformance_file(path: Path) -> None:
    test = parse_file(path)
    result = run_test(test, _interp())
    assert result.outcome is Outcome.PASS, result.line()


@pytest.mark.skipif(not SUITE_FILES, reason=f"no conformance suite at {SUITE}")
def test_the_whole_suite_is_there() -> None:
    assert len(SUITE_FILES) == 313
    lddw = parse_file(SUITE / "lddw.data")
    assert lddw.raw is not None and lddw.assembled() == lddw.raw
    assert parse_file(SUITE / "callx.data").no_register_offset == "call instruction"
    assert parse_file(SUITE / "mem-len.data").mem == bytes([0, 0, 0, 1, 0, 0, 0, 2])
    prime = parse_file(SUITE / "prime.data")
    assert prime.c_source is not None and "entry(uint64_t arg)" in prime.c_source


# -- the schema ---------------------------------------------------------------------------------

P = Path("t.data")
GOOD = "# about\n-- asm\nmov %r0, 3\nexit\n-- result\n0x3\n"


def test_parse_good_file() -> None:
    t = parse_text(P, "# a test\n-- asm\nmov %r0, %r2\nexit\n-- mem\n00 01\nff\n"
                      "-- no register offset\nreads r2\n-- result\n2\n")
    assert t.description == ("a test",)
    assert t.mem == b"\x00\x01\xff" and t.result == 2
    assert t.no_register_offset == "reads r2"
    assert t.program() == bytes.fromhex("bf200000000000009500000000000000")
    assert not t.expects_error and not t.reload


@pytest.mark.parametrize(("text", "message"), [
    ("-- asm\nexit\n-- result\n0\n-- stuff\n", "t.data:5: unknown section '-- stuff'"),
    ("-- asm\nexit\n-- asm\nexit\n-- result\n0\n", "t.data:3: section '-- asm' appears twice"),
    ("mov %r0, 1\n-- asm\nexit\n-- result\n0\n", "t.data:1: text before the first"),
    ("-- asm\nexit\n", "t.data:1: needs '-- result', '-- error' or '-- error pattern'"),
    ("-- result\n1\n", "t.data:1: has no program"),
    ("-- asm\nexit\n-- mem\n00 zz\n-- result\n0\n", "t.data:4: expected hex bytes, got 'zz'"),
    ("-- asm\nexit\n-- result\n0x1g\n", "t.data:4: expected a number, got '0x1g'"),
    ("-- asm\nexit\n-- result\n1\n2\n", "t.data:3: '-- result' takes exactly one number"),
    ("-- raw\n0x95\nnope\n-- result\n0\n", "t.data:3: expected a number, got 'nope'"),
])
def test_broken_files_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(DataFileError) as info:
        parse_text(P, text)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, UsageError)


def test_assembler_errors_point_into_the_file() -> None:
    t = parse_text(P, "# header\n-- asm\nmov %r0, 1\nfrob %r0\nexit\n-- result\n1\n")
    with pytest.raises(DataFileError, match=r"^t\.data:4: line 2: unknown mnemonic 'frob'"):
        t.program()


def test_raw_runs_and_must_match_asm() -> None:
    t = parse_text(Path("m.data"), "-- asm\nmov %r0, 1\nexit\n-- raw\n0x00000001000000b7\n"
                                   "0x0000000000000096\n-- result\n1\n")
    assert t.program() == bytes.fromhex("b700000001000000" "9600000000000000")
    assert run_test(t, lambda c, m: 1).line() == (
        "FAIL m: the asm assembles to other words than -- raw holds (first at slot 1)")
    raw_only = parse_text(P, "-- raw\n0x00000001000000b7\n0x0000000000000095\n-- result\n1\n")
    assert raw_only.program() == bytes.fromhex("b7000000010000009500000000000000")


def test_ubpf_sections() -> None:
    t = parse_text(P, "-- asm\nexit\n-- error pattern\nunknown opcode 0x[0-9a-f]+\n"
                      "-- reload\n-- unload\n")
    assert t.expects_error and t.reload and t.unload
    assert t.error_pattern == "unknown opcode 0x[0-9a-f]+"
    both = parse_text(P, "-- asm\nexit\n-- result\n0\n-- error\nnoise\n")
    assert run_test(both, lambda c, m: 0).outcome is Outcome.PASS  # the result decides


# -- verdicts (with stand-in engines, so they do not depend on the interpreter) ---------------------


def test_verdicts() -> None:
    good = parse_text(Path("good.data"), GOOD)
    assert run_test(good, lambda code, mem: 3) == FileResult("good", Outcome.PASS)
    assert run_test(good, lambda code, mem: 4).line() == "FAIL good: expected 0x3 got 0x4"
    assert run_test(good, lambda code, mem: -1).line() == (
        "FAIL good: expected 0x3 got 0xffffffffffffffff")

    def fault(code: bytes, mem: bytes) -> int:
        raise ProgramFault("division by zero at pc 1", 22)

    assert run_test(good, fault).line() == (
        "FAIL good: expected 0x3 got error: division by zero at pc 1")
    bad = parse_text(Path("bad.data"), "-- asm\nexit\n-- error\nsomething\n")
    assert run_test(bad, fault).outcome is Outcome.PASS
    assert run_test(bad, lambda c, m: 0).line() == "FAIL bad: expected an error got 0x0"
    c_only = parse_text(Path("c.data"), "-- c\nint f(void) { return 1; }\n-- result\n1\n")
    skipped = run_test(c_only, lambda c, m: 1)
    assert skipped.outcome is Outcome.SKIP
    assert summary([skipped, run_test(good, lambda c, m: 3)]) == "1 passed, 0 failed, 1 skipped"
    assert summary([run_test(good, lambda c, m: 3)]) == "1 passed, 0 failed"


def test_isa_rules_hold_before_any_engine_runs() -> None:
    reserved = parse_text(Path("r.data"), "-- asm\nmov %r0, 1\n.insn 0x07, 1, 2, 0, 1\nexit\n"
                                          "-- result\n1\n")
    assert run_test(reserved, lambda c, m: 1).line() == (
        "FAIL r: expected 0x1 got error: BPF_ALU uses reserved fields at pc 1")
    past_end = parse_text(Path("p.data"), "-- raw\n0x00000001000000b7\n-- error\nx\n")
    assert run_test(past_end, lambda c, m: 1).outcome is Outcome.PASS
    assert run_test(parse_text(Path("p.data"), "-- raw\n0x00000001000000b7\n-- result\n1\n"),
                    lambda c, m: 1).line() == (
        "FAIL p: expected 0x1 got error: last insn is not an exit or jmp at pc 0")


def test_the_engine_sees_program_and_memory() -> None:
    seen = []

    def engine(code: bytes, mem: bytes) -> int:
        seen.append((code, mem))
        return 0

    run_test(parse_text(P, "-- asm\nexit\n-- mem\nde ad\n-- result\n0\n"), engine)
    assert seen == [(bytes.fromhex("9500000000000000"), b"\xde\xad")]


def test_data_files_of_a_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no \.data files"):
        data_files(tmp_path)
    (tmp_path / "b.data").write_text(GOOD)
    (tmp_path / "a.data").write_text(GOOD)
    assert [p.name for p in data_files(tmp_path)] == ["a.data", "b.data"]


# -- vxdp isa-test ------------------------------------------------------------------------------------


def test_cli_all_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _interp()
    (tmp_path / "three.data").write_text(GOOD)
    (tmp_path / "len.data").write_text("-- asm\nmov %r0, %r2\nexit\n-- mem\n01 02 03\n"
                                       "-- result\n3\n")
    assert main(["isa-test", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == ["PASS len", "PASS three",
                                                    "2 passed, 0 failed"]


def test_cli_failure_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _interp()
    (tmp_path / "ok.data").write_text(GOOD)
    (tmp_path / "wrong.data").write_text(GOOD.replace("0x3", "0x4"))
    (tmp_path / "c.data").write_text("-- c\nint x;\n-- result\n0\n")
    assert main(["isa-test", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == ["SKIP c: only C source; no compiler harness here", "PASS ok",
                   "FAIL wrong: expected 0x4 got 0x3", "1 passed, 1 failed, 1 skipped"]
    assert main(["isa-test", "-j", str(tmp_path / "wrong.data")]) == 1
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines == [{"name": "wrong", "result": "fail", "detail": "expected 0x4 got 0x3"},
                     {"passed": 0, "failed": 1, "skipped": 0}]


def test_cli_unusable_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ok.data").write_text(GOOD)
    (tmp_path / "broken.data").write_text("-- asm\nmov %r0, 1\nexit\n")
    assert main(["isa-test", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing runs before every file is known to be usable
    assert "broken.data:1: needs '-- result', '-- error' or '-- error pattern'" in captured.err
    assert main(["isa-test", str(tmp_path / "missing")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
