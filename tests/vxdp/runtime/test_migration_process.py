"""Live migration between real processes: one `vxdp guest` with an offloaded program moves
from one `vxdp host` to another with `vxdp migrate`; a host that cannot take the device
is refused and the guest stays."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import trio

from .conftest import core_unavailable
from .procs import processes
from .test_control import obj
from .test_control_process import vxdp
from .test_offload_process import stats

pytestmark = pytest.mark.skipif(core_unavailable() is not None,
                                reason=str(core_unavailable()))


async def counted(guest_ctl: Path) -> int:
    rc, out, err = await vxdp("map", "dump", "proto_stats", "--guest", guest_ctl, "-j")
    assert rc == 0, err
    entries = json.loads(out)["proto_stats"]["entries"]
    return sum(struct.unpack("<QQ", bytes.fromhex(e["value"]))[0] for e in entries)


async def received(guest_ctl: Path, n: int) -> None:
    while (await stats(guest_ctl))["stack"]["packets"] < n:
        await trio.sleep(0.1)


async def test_vxdp_migrate_moves_the_offload_between_host_processes(tmp_path: Path) -> None:
    counter = obj("xdp_array_counter")
    a, b, c = (tmp_path / f"{n}.sock" for n in "abc")
    a_ctl, b_ctl, g_ctl = tmp_path / "a.ctl", tmp_path / "b.ctl", tmp_path / "g.ctl"
    with trio.fail_after(120):
        async with processes(tmp_path) as procs:
            await procs.host("--socket", str(a), "--profile", "rfc2019", "--control",
                             str(a_ctl), "--wire", "gen:count=200,rate=5000,seed=1,size=128")
            await procs.host("--socket", str(b), "--profile", "host", "--control", str(b_ctl),
                             "--wire", "gen:count=100,rate=5000,seed=2,size=128")
            await procs.host("--socket", str(c), "--profile", "default")
            guest = await procs.guest("--socket", str(a), "--xdp", str(counter), "--mode",
                                      "offload", "--control", str(g_ctl))
            await guest.wait_for("offload: program xdp_count_proto")
            await received(g_ctl, 200)
            # what the program counted on the source (frames before it was in place
            # passed uncounted)
            before = await counted(g_ctl)
            assert before == (await stats(a_ctl))["guests"][0]["offload"]["actions"]["pass"]
            # a host without the offload: refused, the guest stays on its host
            rc, out, err = await vxdp("migrate", "--guest", g_ctl, "--to", c)
            assert rc == 1, err
            assert "not migrated to" in out and "VIRTIO_NET_F_XDP_OFFLOAD" in out
            assert await counted(g_ctl) == before  # the device still answers: the source
            rc, out, err = await vxdp("migrate", "--guest", g_ctl, "--to", b, "-j")
            assert rc == 0, err
            report = json.loads(out)
            await received(g_ctl, 300)  # the destination's generator, through its program
            total = await counted(g_ctl)  # over the control queue, to the destination
            host_a, host_b = await stats(a_ctl), await stats(b_ctl)
    assert report["outcome"] == "migrated" and report["frames_lost"] == 0
    assert report["maps"] == 1 and report["map_entries"] == 256
    assert report["downtime_ms"] > 0 and report["program"]["insns"] > 0
    assert total == before + 100  # what the source counted, then the destination's 100
    restored = host_b["guests"][0]["migration"]["restored"]
    assert restored["map_entries"] == 256 and restored["program"]["profile"] == "rfc2019"
    assert host_b["guests"][0]["offload"]["actions"]["pass"] == 100
    assert host_a["guests"][0]["migration"]["saved"] == 2  # the state, then its last count
    assert host_a["guests"][0]["offload"]["program"] is None  # left with the guest
    assert "migration: migrated to" in guest.out
