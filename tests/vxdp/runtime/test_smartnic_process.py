"""Passthrough between real processes: `vxdp guest` dials `vxdp smartnic`'s virtual
function directly and offloads to the NIC over its control virtqueue; `vxdp prog dump
jited` shows the NIC's image; what the NIC refuses, `--mode auto` runs in the driver."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import trio

from vxdp.bpf.elf import load_object
from vxdp.bpf.isa import decode, iter_insns

from .conftest import core_unavailable
from .procs import Proc, Processes, processes
from .test_control import obj
from .test_control_process import vxdp
from .test_offload_process import stats

pytestmark = pytest.mark.skipif(core_unavailable() is not None,
                                reason=str(core_unavailable()))


async def smartnic(procs: Processes, *args: str | Path) -> Proc:
    nic = await procs.start("smartnic", "smartnic", *map(str, args))
    await nic.wait_for("vxdp smartnic: serving")
    return nic


async def test_a_guest_offloads_to_the_smartnic_directly(tmp_path: Path) -> None:
    counter = obj("xdp_array_counter")
    (program,) = load_object(counter).programs.values()
    sock, nic_ctl, guest_ctl = tmp_path / "vf0.sock", tmp_path / "nic.ctl", tmp_path / "g.ctl"
    with trio.fail_after(90):
        async with processes(tmp_path) as procs:
            nic = await smartnic(procs, "--socket", sock, "--control", nic_ctl, "--wire",
                                 "gen:count=300,rate=150,seed=5,size=128")
            assert "machine vxme-32 (code store 8192 insns" in nic.out
            guest = await procs.guest("--socket", str(sock), "--xdp", str(counter), "--mode",
                                      "offload", "--control", str(guest_ctl))
            await guest.wait_for("offload: program xdp_count_proto")
            await guest.wait_for("translated for vxme-32")
            # the NIC's image: its machine, then each BPF insn and the words it became
            rc, out, err = await vxdp("prog", "dump", "jited", "--host", nic_ctl)
            assert rc == 0, err
            lines = out.splitlines()
            assert lines[1].startswith("; machine vxme-32, ")
            at = lines.index("; 0: (bf) r6 = r1")
            assert lines[at + 1].split()[2:] == ["mov", "r6l,", "r1l"]
            rc, out, err = await vxdp("prog", "dump", "jited", "--host", nic_ctl, "-j")
            dump = json.loads(out)
            words = [w for span in dump["insns"] for w in span["words"]]
            assert dump["machine"] == "vxme-32" and 8 * len(words) == dump["bytes_jited"]
            assert {s["pc"] for s in dump["insns"]} >= set(iter_insns(decode(program.insns)))
            # the host-side view and the guest's QUERY agree on the image
            rc, out, _ = await vxdp("prog", "show", "--host", nic_ctl)
            assert f"jited {dump['bytes_jited']}B  machine vxme-32" in out
            rc, out, _ = await vxdp("prog", "show", "--guest", guest_ctl, "-j")
            (mine,) = json.loads(out)
            assert mine["device"]["engine"] == "smartnic"
            assert mine["device"]["image_len"] == dump["bytes_jited"]
            # a NIC runs only what its guest offloads
            rc, _, err = await vxdp("prog", "attach", counter, "--host", nic_ctl)
            assert rc == 1 and "not served by a SmartNIC" in err and "EOPNOTSUPP" in err

            async def all_in() -> bool:
                s = await stats(guest_ctl)
                return bool(s["stack"]["packets"] == 300)
            while not await all_in():
                await trio.sleep(0.1)
            # what the NIC's program counted, read over the control queue, is what the
            # NIC's datapath says it passed
            rc, out, err = await vxdp("map", "dump", "proto_stats", "--guest", guest_ctl, "-j")
            assert rc == 0, err
            entries = json.loads(out)["proto_stats"]["entries"]
            counted = sum(struct.unpack("<QQ", bytes.fromhex(e["value"]))[0] for e in entries)
            view = await stats(nic_ctl)
            assert view["machine"]["type"] == "vxme-32"
            assert counted == view["guests"][0]["offload"]["actions"]["pass"] > 0


async def test_the_guest_falls_back_when_the_smartnic_refuses(tmp_path: Path) -> None:
    """xdp_flow_hash passes the NIC's advertised capabilities and its verifier, and
    writes a map value, which the NIC's translator has no mapping for: `auto` places it
    in the driver, `offload` runs nothing; both say the NIC's errno and line."""
    flow = obj("xdp_flow_hash")
    vf0, vf1, nic_ctl = tmp_path / "vf0.sock", tmp_path / "vf1.sock", tmp_path / "nic.ctl"
    refusal = "EOPNOTSUPP: [smartnic] program of 103 insns refused by the vxme-32 " \
              "translator: pc 81: (63) *(u32 *)(r0 +4) = r1: map writes not supported"
    with trio.fail_after(90):
        async with processes(tmp_path) as procs:
            await smartnic(procs, "--socket", vf0, "--socket", vf1, "--control", nic_ctl,
                           "--wire", "gen:count=400,rate=200,seed=3,size=128")
            auto = await procs.guest("--socket", str(vf0), "--xdp", str(flow), "--mode",
                                     "auto", "--control", str(tmp_path / "g0.ctl"))
            await auto.wait_for(f"falling back to driver mode: {refusal}")
            off = await procs.guest("--socket", str(vf1), "--xdp", str(flow), "--mode",
                                    "offload")
            await off.wait_for(f"refused: {refusal}")
            await off.wait_for("no program runs")
            rc, out, _ = await vxdp("prog", "show", "--host", nic_ctl, "-j")
            assert rc == 0 and json.loads(out) == []  # nothing stayed on the NIC

            async def in_driver() -> int:
                s = await stats(tmp_path / "g0.ctl")
                return sum(s["xdp"]["actions"].values())  # type: ignore[no-any-return]
            while await in_driver() < 50:  # the wire's frames meet the driver's program
                await trio.sleep(0.1)
            view = await stats(nic_ctl)
            assert [g["offload"]["counts"]["rejected"] for g in view["guests"]] == [1, 1]
            assert [g["offload"]["maps"] for g in view["guests"]] == [[], []]
