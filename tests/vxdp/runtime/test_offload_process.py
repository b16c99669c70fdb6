"""The offload between real processes: `vxdp guest --mode offload` hands its program and
maps to `vxdp host` over the control virtqueue; `vxdp prog` and `vxdp map` look at it
from both sides (the host's control socket and the guest's)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import trio

from vxdp.bpf.elf import load_object
from vxdp.control import ControlClient

from .conftest import core_unavailable
from .procs import processes
from .test_control import obj
from .test_control_process import vxdp

pytestmark = pytest.mark.skipif(core_unavailable() is not None,
                                reason=str(core_unavailable()))


async def stats(path: Path) -> dict:  # type: ignore[type-arg]
    def go() -> dict:  # type: ignore[type-arg]
        with ControlClient(path, timeout=20) as client:
            return client.call("stats")  # type: ignore[no-any-return]
    return await trio.to_thread.run_sync(go)


async def counted_and_passed(guest_ctl: Path, host_ctl: Path, frames: int
                             ) -> tuple[int, int]:
    """Once the guest's stack has `frames` frames: the packets the xdp_array_counter
    program counted in its offloaded map (`vxdp map dump --guest`: read from the guest),
    and the frames the host's datapath says the offloaded program passed."""
    while (await stats(guest_ctl))["stack"]["packets"] != frames:
        await trio.sleep(0.1)
    rc, out, err = await vxdp("map", "dump", "proto_stats", "--guest", guest_ctl, "-j")
    assert rc == 0, err
    entries = json.loads(out)["proto_stats"]["entries"]
    counted = sum(struct.unpack("<QQ", bytes.fromhex(e["value"]))[0] for e in entries)
    host = await stats(host_ctl)
    return counted, host["guests"][0]["offload"]["actions"]["pass"]


async def test_offload_seen_from_the_host_and_from_the_guest(tmp_path: Path) -> None:
    counter = obj("xdp_array_counter")
    (program,) = load_object(counter).programs.values()
    sock, host_ctl, guest_ctl = tmp_path / "g0.sock", tmp_path / "h.ctl", tmp_path / "g.ctl"
    with trio.fail_after(90):
        async with processes(tmp_path) as procs:
            await procs.host("--socket", str(sock), "--profile", "host", "--control",
                             str(host_ctl), "--wire", "gen:count=300,rate=150,seed=5,size=128")  # 2 s: most after the offload
            guest = await procs.guest("--socket", str(sock), "--xdp", str(counter),
                                      "--mode", "offload", "--control", str(guest_ctl))
            await guest.wait_for("offload: program xdp_count_proto")
            # the host lists the program the guest offloaded, with the guest that owns it
            rc, out, err = await vxdp("prog", "show", "--host", host_ctl, "-j")
            assert rc == 0, err
            (shown,) = json.loads(out)
            assert shown["dev"]["guest"] == 0 and shown["offloaded"] is True
            assert shown["tag"] == program.tag and shown["name"] == "offloaded"
            rc, out, _ = await vxdp("prog", "show", "--host", host_ctl)
            assert "offloaded to dev guest 0" in out
            # the guest shows its program, and the device's own view of it (QUERY)
            rc, out, err = await vxdp("prog", "show", "--guest", guest_ctl, "-j")
            assert rc == 0, err
            (mine,) = json.loads(out)
            assert mine["mode"] == "offload" and mine["name"] == "xdp_count_proto"
            assert mine["device"]["state"] == "loaded" and mine["device"]["tag"] == program.tag
            rc, out, _ = await vxdp("prog", "show", "--guest", guest_ctl)
            assert "device: loaded on engine interp" in out

            # the guest dumps its map over the control queue: what the host's program
            # counted is what the host's datapath says the offloaded program passed
            counted, passed = await counted_and_passed(guest_ctl, host_ctl, 300)
            assert counted == passed > 0
            # the host sees the same map, named by the device (the guest's names stay in
            # the guest), and the guest can write it over the control queue
            rc, out, _ = await vxdp("map", "show", "--host", host_ctl, "-j")
            (dev_map,) = json.loads(out)
            assert dev_map["dev"] == {"guest": 0, "ifindex": 2, "handle": 1}
            zero = "00" * 16
            assert await vxdp("map", "update", "proto_stats", "key", "11000000", "value",
                              zero, "--guest", guest_ctl) == (0, "", "")
            rc, out, _ = await vxdp("map", "lookup", "id", str(dev_map["id"]), "key",
                                    "11000000", "--host", host_ctl, "-j")
            assert json.loads(out)["value"] == zero
            rc, out, err = await vxdp("map", "delete", "proto_stats", "key", "11000000",
                                      "--guest", guest_ctl)
            assert rc == 1 and "EINVAL" in err  # arrays refuse deletes, as in the kernel
