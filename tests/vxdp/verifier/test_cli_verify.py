"""`vxdp verify` as a user runs it: exit statuses, the log, JSON, selection, profiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vxdp.bpf.clang import clang_unavailable, compile_c
from vxdp.cli import main

C = Path(__file__).parent / "c"
pytestmark = pytest.mark.clang


def obj(name: str) -> str:
    reason = clang_unavailable()
    if reason:
        pytest.skip(reason)
    return str(compile_c(C / name))


def test_accepted_program_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", obj("parse_ok.c")]) == 0
    assert "parse_ok: accepted" in capsys.readouterr().out


def test_rejected_program_exits_1_with_pc_insn_and_reason(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", obj("parse_off_by_one.c")]) == 1
    out = capsys.readouterr().out
    assert "rejected at pc 5: R2 offset is outside of the packet" in out
    assert "5: (71) r1 = *(u8 *)(r2 +0)" in out
    assert "invalid access to packet, off=14 size=1, R2(id=0,off=14,r=14)" in out


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", obj("lookup_no_null.c"), "-j"]) == 1
    doc = json.loads(capsys.readouterr().out.splitlines()[0])
    assert doc["accepted"] is False and doc["program"] == "lookup_no_null"
    assert "map_value_or_null" in doc["errors"][0]["message"]


def test_profile_restricts_helpers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", obj("ringbuf_ok.c")]) == 0
    assert main(["verify", obj("ringbuf_ok.c"), "--profile", "rfc2019"]) == 1
    assert "not offered by device profile rfc2019" in capsys.readouterr().out


def test_selection_and_unusable_input(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    o = obj("parse_ok.c")
    assert main(["verify", o, "--program", "parse_ok", "--section", "xdp"]) == 0
    assert main(["verify", o, "--program", "nope"]) == 2
    assert "no program 'nope'" in capsys.readouterr().err
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"not an elf")
    assert main(["verify", str(junk)]) == 2


def test_verbose_log_has_register_state(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", obj("parse_ok.c"), "--log-level", "2"]) == 0
    out = capsys.readouterr().out
    assert "R1=ctx() R10=fp0" in out and "pkt_end()" in out


@pytest.mark.kernel
def test_kernel_beside_ours(capsys: pytest.CaptureFixture[str]) -> None:
    from vxdp.bpf.kernel import kernel_unavailable
    if kernel_unavailable():
        pytest.skip(str(kernel_unavailable()))
    assert main(["verify", obj("lookup_no_null.c"), "--kernel"]) == 1
    assert "kernel: rejected" in capsys.readouterr().out
    assert main(["verify", obj("parse_ok.c"), "--kernel", "-j"]) == 0
    doc = json.loads(capsys.readouterr().out.splitlines()[0])
    assert doc["kernel"]["agrees"] is True and doc["kernel"]["kernel_accepted"] is True
