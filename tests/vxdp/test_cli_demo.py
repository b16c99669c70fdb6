"""`vxdp demo`: the printed trace comes from the models running, in text and JSON."""

from __future__ import annotations

import json

import pytest

from vxdp.cli import main
from vxdp.pair import Pair


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(["demo", *argv])
    return status, capsys.readouterr().out


def test_text_trace_shows_negotiation_traffic_and_the_filter(capsys):
    status, out = run_cli(capsys)
    assert status == 0
    reference = Pair.create("host")
    reference.negotiate()
    names = [line for line in out.splitlines() if "negotiated" in line and "demo" in line]
    (line,) = names
    for name in ("VIRTIO_NET_F_MRG_RXBUF", "VIRTIO_NET_F_CTRL_VQ", "VIRTIO_F_EVENT_IDX"):
        assert name in line
    assert f"negotiated {bin(reference.driver.negotiated).count('1')} features" in line
    assert "write status 0x0b (ACKNOWLEDGE|DRIVER|FEATURES_OK)" in out
    assert "ctrl RX_PROMISC (class 0, command 0) -> OK" in out
    assert "unicast 02:00:00:00:00:77 not in the mac table" in out
    assert "interrupt SENT: EVENT_IDX: used_event=" in out
    assert "result: as expected" in out


def test_json_lines_are_consistent_with_the_summary(capsys):
    status, out = run_cli(capsys, "-j", "--path-frames", "0")
    assert status == 0
    rows = [json.loads(line) for line in out.splitlines()]
    tx_frames = [bytes.fromhex(r["frame"]) for r in rows if r["kind"] == "tx_frame"]
    (tx,) = [r["tx"] for r in rows if r["kind"] == "summary" and "tx" in r]
    assert tx["frames"] == len(tx_frames) == 3
    assert tx["bytes"] == sum(map(len, tx_frames))
    sections = [i for i, r in enumerate(rows) if r["kind"] == "section"]
    receive = next(i for i in sections if rows[i]["text"].startswith("receive:"))
    after = next(i for i in sections if i > receive)
    rx_lens = [len(bytes.fromhex(r["frame"])) for r in rows[receive:after] if r["kind"] == "rx"]
    (rx,) = [r["rx"] for r in rows if r["kind"] == "summary" and "rx" in r]
    assert rx["bytes"] == sum(rx_lens) and rx["received"] == len(rx_lens) == 3
    buffers = [r["buffers"] for r in rows[receive:after] if r["kind"] == "rx_frame"]
    assert rx["buffers_per_frame"] == buffers and max(buffers) > 1  # mergeable rx happened
    status_writes = [r["value"] for r in rows if r["kind"] == "write_status"]
    assert status_writes == [0, 1, 3, 11, 15]


def test_profile_changes_what_is_printed(capsys):
    status, out = run_cli(capsys, "--profile", "minimal")
    assert status == 0
    assert "VIRTIO_NET_F_CTRL_VQ" not in out and "ctrl RX_PROMISC" not in out
    assert "rx: 4 of 4 frames received" in out
    status, out = run_cli(capsys, "--profile", "packed")
    assert status == 0 and "VIRTIO_F_RING_PACKED" in out and "driver event flags=" in out


def test_out_dir_holds_the_same_trace(capsys, tmp_path):
    status, out = run_cli(capsys, "--out", str(tmp_path / "run"), "--path-frames", "512",
                          "--runs", "1")
    assert status == 0
    assert (tmp_path / "run" / "trace.txt").read_text() == out
    rows = (tmp_path / "run" / "trace.jsonl").read_text().splitlines()
    assert len(rows) == len([line for line in out.splitlines() if line.strip()])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["ok"] and summary["tx"]["intact"] and summary["rx"]["intact"]


def test_bad_queue_size_is_a_usage_error(capsys):
    assert main(["demo", "--queue-size", "0"]) == 2
    assert "queue-size" in capsys.readouterr().err
