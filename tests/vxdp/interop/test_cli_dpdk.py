"""The commands users run, against DPDK: `vxdp host` with testpmd's virtio_user as its
guest, `vxdp guest` against testpmd's net_vhost port.  Counts come from the processes'
own stats files (written on SIGTERM) and testpmd's port statistics."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import trio

from vxdp import dpdk
from vxdp.pcap import read_pcap

from .conftest import until


async def _stop(proc: trio.Process) -> int:
    with trio.CancelScope(shield=True):
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(10):
                return await proc.wait()
            proc.kill()
        return await proc.wait()


async def test_vxdp_host_process_with_testpmd_guest(testpmd: str, sock_dir: Path) -> None:
    sock, wire, stats = sock_dir / "h.sock", sock_dir / "wire.pcap", sock_dir / "host.json"
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "vxdp", "host", "--socket", str(sock), "--wire",
         f"pcap:out={wire}", "--stats-json", str(stats)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with trio.fail_after(40):
            await until(sock.exists, "vxdp host's socket", timeout=15)
            async with dpdk.open_testpmd([f"virtio_user0,path={sock},queues=1"],
                                         binary=testpmd) as pmd:
                await pmd.forward("txonly")
                await trio.sleep(0.5)
                await pmd.halt()
                sent = await pmd.port_stats(0)
                assert sent.tx_packets > 0

                def captured() -> int:
                    return len(read_pcap(wire)) if wire.stat().st_size > 24 else 0
                await until(lambda: captured() == sent.tx_packets,
                            f"{sent.tx_packets} frames in the host's wire capture")
            assert await _stop(proc) == 0
    finally:
        await _stop(proc)
    g = json.loads(stats.read_text())["guests"][0]
    assert g["queues"]["transmitq1"]["packets"] == sent.tx_packets
    assert g["queues"]["transmitq1"]["bytes"] == sent.tx_bytes
    assert g["sessions"] == 1 and g["last_disconnect"]  # testpmd quit: the session ended


async def test_vxdp_guest_process_against_testpmd_vhost(testpmd: str, sock_dir: Path) -> None:
    sock, stats = sock_dir / "v.sock", sock_dir / "guest.json"
    async with dpdk.open_testpmd([f"net_vhost0,iface={sock},queues=1"],
                                 binary=testpmd) as pmd:
        await pmd.forward("rxonly")
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "vxdp", "guest", "--socket", str(sock), "--wire",
             "gen:count=150,size=80,seed=2", "--stats-json", str(stats)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            with trio.fail_after(30):
                got: list[dpdk.PortStats] = []

                async def counted() -> bool:
                    got.append(await pmd.port_stats(0))
                    return got[-1].rx_packets >= 150
                while not await counted():
                    await trio.sleep(0.05)
                assert got[-1].rx_packets == 150 and got[-1].rx_bytes == 150 * 80
                await pmd.halt()
                assert await _stop(proc) == 0
        finally:
            await _stop(proc)
            assert proc.stdout is not None
            out = (await proc.stdout.receive_some(65536)).decode()
            await proc.stdout.aclose()
    s = json.loads(stats.read_text())
    assert s["state"] == "LIVE" and s["tx"]["transmitq1"]["packets"] == 150
    assert "device_ready" in out and "frontend_state" in out
