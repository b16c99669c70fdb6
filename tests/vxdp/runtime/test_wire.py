"""Wire ports: spec parsing, bursts in and out, pcap captures tshark reads, pacing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio
import trio.testing

from vxdp.errors import UsageError
from vxdp.packets import TrafficGenerator, udp_packet
from vxdp.pcap import read_pcap, write_pcap
from vxdp.runtime.wire import GenPort, NullPort, PcapPort, TapPort, open_port, parse_spec

GOOD = [
    ("null", "null", None, None, {}),
    ("pcap:in.pcap", "pcap", "in.pcap", None, {}),
    ("pcap:in.pcap,out=o.pcap", "pcap", "in.pcap", "o.pcap", {}),
    ("pcap:out=o.pcap", "pcap", None, "o.pcap", {}),
    ("gen:flows=4,size=128,rate=1000,count=10,seed=7", "gen", None, None,
     {"flows": 4, "size": 128, "rate": 1000, "count": 10, "seed": 7}),
    ("gen:proto=udp4,out=g.pcap", "gen", None, "g.pcap", {"proto": "udp4"}),
    ("gen:", "gen", None, None, {}),
    ("tap:vx0", "tap", "vx0", None, {}),
]

BAD = [
    ("ether:x", "unknown port kind 'ether'"),
    ("null:x", "null takes no options"),
    ("pcap:", "pcap needs an input file"),
    ("pcap:a.pcap,b.pcap", "'b.pcap' is not key=value"),
    ("pcap:a.pcap,rate=3", "unknown option 'rate'"),
    ("gen:flows=0", "flows=0 is below 1"),
    ("gen:size=10", "size=10 is below 60"),
    ("gen:size=70000", "size 70000 is above 65535"),
    ("gen:count=lots", "count='lots' is not an integer"),
    ("gen:colour=red", "unknown option 'colour'"),
    ("gen:proto=sctp", "proto 'sctp' is not one of"),
    ("gen:out=", "out= has no value"),
    ("gen:5", "'5' is not key=value"),
    ("tap:", "tap needs a device name"),
]


@pytest.mark.parametrize(("text", "kind", "path", "out", "options"), GOOD)
def test_parse_good(text: str, kind: str, path: str | None, out: str | None,
                    options: dict[str, object]) -> None:
    spec = parse_spec(text)
    assert (spec.kind, spec.path, spec.out, spec.options) == (kind, path, out, options)
    assert parse_spec(spec.describe()) == spec


@pytest.mark.parametrize(("text", "message"), BAD)
def test_parse_bad(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        parse_spec(text)


def test_missing_pcap_input(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        open_port(f"pcap:{tmp_path / 'absent.pcap'}")


async def test_pcap_replay_in_bursts_and_capture(tmp_path: Path) -> None:
    frames = TrafficGenerator(5, flows=3).packets(70)
    write_pcap(tmp_path / "in.pcap", frames)
    out = tmp_path / "out.pcap"
    with trio.fail_after(5):
        port = open_port(f"pcap:{tmp_path / 'in.pcap'},out={out}")
        assert isinstance(port, PcapPort)
        got: list[bytes] = []
        sizes = []
        while (burst := await port.receive(32)) is not None:
            sizes.append(len(burst))
            got.extend(burst)
            port.send(burst[:5])
        port.close()
    assert got == frames and sizes == [32, 32, 6]
    assert port.rx_packets == 70 and port.rx_bytes == sum(map(len, frames))
    assert port.tx_packets == 15
    captured = [p.data for p in read_pcap(out)]
    assert captured == frames[:5] + frames[32:37] + frames[64:69]


async def test_capture_is_readable_while_open(tmp_path: Path) -> None:
    out = tmp_path / "live.pcap"
    port = open_port(f"pcap:out={out}")
    try:
        port.send([udp_packet("10.0.0.1", "10.0.0.2", 1, 2, b"x" * 20)])
        # flushed per burst: a reader sees the frame before the port is closed
        assert len(read_pcap(out)) == 1
    finally:
        port.close()
    with trio.fail_after(1):
        assert await port.receive(4) is None


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_reads_the_capture(tmp_path: Path) -> None:
    out = tmp_path / "cap.pcap"
    port = open_port(f"gen:count=3,proto=udp4,seed=2,out={out}")
    frames = TrafficGenerator(2, mix={"udp4": 1.0}).packets(3)
    port.send(frames)
    port.close()
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.len",
                           "-e", "udp.dstport"], capture_output=True, text=True, timeout=30,
                          env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [int(r[0]) for r in rows] == [len(f) for f in frames]
    assert [int(r[1]) for r in rows] == [int.from_bytes(f[36:38], "big") for f in frames]


async def test_generator_is_seeded_and_counted() -> None:
    with trio.fail_after(5):
        a, b = open_port("gen:count=50,seed=9,size=100"), open_port("gen:count=50,seed=9,size=100")
        assert isinstance(a, GenPort)
        got_a: list[bytes] = []
        while (burst := await a.receive(16)) is not None:
            got_a.extend(burst)
        got_b: list[bytes] = []
        while (burst := await b.receive(50)) is not None:
            got_b.extend(burst)
    assert got_a == got_b and len(got_a) == 50
    assert {len(f) for f in got_a} == {100}


async def test_generator_paces_to_rate(autojump_clock: trio.testing.MockClock) -> None:
    port = open_port("gen:count=100,rate=1000,seed=1")
    start = trio.current_time()
    with trio.fail_after(60):
        total = 0
        while (burst := await port.receive(32)) is not None:
            total += len(burst)
            # never ahead of the schedule: frame n is due at n / rate seconds
            assert total <= (trio.current_time() - start) * 1000 + 1
    elapsed = trio.current_time() - start
    assert total == 100
    assert 0.098 <= elapsed <= 0.2


async def test_null_port_counts_what_it_is_sent() -> None:
    port = open_port("null")
    assert isinstance(port, NullPort)
    port.send([b"\x00" * 60, b"\x01" * 64])
    with trio.fail_after(1):
        assert await port.receive(8) is None
    assert port.stats()["tx_packets"] == 2 and port.stats()["tx_bytes"] == 124
    with pytest.raises(UsageError, match="burst limit 0"):
        await port.receive(0)


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                    reason="TAP ports need root and /dev/net/tun")
async def test_tap_port_opens_and_sends() -> None:
    try:
        port = open_port("tap:vxdptst0")
    except UsageError as exc:
        pytest.skip(f"TAP not usable here: {exc}")
    assert isinstance(port, TapPort)
    try:
        port.send([udp_packet("10.9.0.1", "10.9.0.2", 1, 2, b"tap")])
        assert port.tx_packets == 1
    finally:
        port.close()


def test_tap_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(UsageError, match="needs root"):
        open_port("tap:vx0")


async def test_generator_cycles_its_first_pool_of_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GenPort, "POOL", 100)
    port = open_port("gen:count=350,seed=3,size=80")
    out: list[bytes] = []
    while (burst := await port.receive(32)) is not None:
        out += burst
    first = TrafficGenerator(3, sizes=(80,)).packets(100)
    assert len(out) == 350 and port.rx_packets == 350 and port.rx_bytes == 350 * 80
    assert out[:100] == first and out[100:200] == first and out[300:] == first[:50]
