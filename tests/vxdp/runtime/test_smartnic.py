"""Passthrough to the SmartNIC in one process: a GuestRuntime offloads straight to a NIC's
device (the `smartnic` profile and engine) over vhost-user on socketpairs.  What the NIC
takes runs on both datapaths (C: the core's interpreter; Python: the image on the
micro-engine's simulator) with the same verdicts; what it refuses, by the guest's check
of its capabilities or by its own translator or limits, `auto` places in the driver."""

from __future__ import annotations

from collections.abc import Callable

import trio

from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.program import MapSpec, MapType, Program
from vxdp.packets import TrafficGenerator
from vxdp.runtime import open_port
from vxdp.runtime.compare import DEMO_MAP, DEMO_PROGRAM_ASM, demo_program, reference_actions

from .conftest import Rig, until
from .test_offload import send_from_wire

RigFactory = Callable[..., Rig]
#: The demo program with its counter bumped by an atomic add, which the NIC can run
#: (the demo's own read-modify-write is a map write it has no mapping for).
NIC_ASM = DEMO_PROGRAM_ASM.replace("ldxdw %r1, [%r0+0]\nadd %r1, 1\nstxdw [%r0+0], %r1",
                                   "mov %r1, 1\nlock add [%r0+0], %r1")


def frames(n: int = 300) -> list[bytes]:
    return TrafficGenerator(11, mix={"udp4": 0.5, "tcp4": 0.3, "udp6": 0.2},
                            vlan_share=0.0).packets(n)


def nic(rig_factory: RigFactory) -> Rig:
    return rig_factory(profile="smartnic", engine="smartnic", wire=open_port("null"))


async def test_the_nic_runs_what_the_guest_offloads(rig_factory: RigFactory,
                                                    datapath: str) -> None:
    program = Program("xdp_nic_count", "xdp", encode(assemble(NIC_ASM)), (DEMO_MAP,))
    assert NIC_ASM != DEMO_PROGRAM_ASM
    traffic = frames()
    want = reference_actions(program, traffic)
    with trio.fail_after(30):
        rig = nic(rig_factory)
        guest = await rig.add_guest(port=open_port("null"), offload=program, mode="offload")
        await until(lambda: guest.offload.state == "offloaded", "the program on the NIC")
        await send_from_wire(rig, traffic)
        port = rig.host.guests[0]
        await until(lambda: sum(port.offload_actions().values()) == len(traffic),
                    "every frame through the NIC's program")
        info = await guest.offload.run(guest.offload.client.query())  # type: ignore[union-attr]
    assert port.offload_actions() == want
    assert rig.host.wire.tx_packets == want["tx"]
    assert guest.actions() == dict.fromkeys(want, 0)  # nothing ran in the guest's driver
    view = rig.host.stats()["guests"][0]["offload"]
    assert view["engine"] == "smartnic" and view["program"]["machine"] == "vxme-32"
    assert info is not None and info.engine.name == "SMARTNIC"
    assert info.image_len == view["program"]["image_len"] > 0
    assert "translated for vxme-32" in guest.offload.log.strip().splitlines()[-1]


async def test_auto_falls_back_when_the_nic_refuses(rig_factory: RigFactory) -> None:
    """The capabilities admit the demo program, the device's verifier takes it, the
    NIC's translator does not (a map write): driver mode, with the NIC's errno and
    line; nothing stays on the NIC."""
    traffic = frames(100)
    want = reference_actions(demo_program(), traffic)
    with trio.fail_after(30):
        rig = nic(rig_factory)
        guest = await rig.add_guest(port=open_port("null"), offload=demo_program(), mode="auto")
        await until(lambda: guest.offload.state == "driver", "the fallback to driver mode")
        await send_from_wire(rig, traffic)
        await until(lambda: sum(guest.actions().values()) == len(traffic),
                    "every frame through the driver-mode program")
    assert guest.actions() == want
    assert guest.offload.reason.startswith(
        f"EOPNOTSUPP: [smartnic] program of {demo_program().insn_count} insns refused by the "
        f"vxme-32 translator: pc 36: (7b) *(u64 *)(r0 +0) = r1: map writes not supported")
    assert any("falling back to driver mode: EOPNOTSUPP: [smartnic]" in text
               for _, text in guest.reports)
    offload = rig.host.guests[0].device.offload  # type: ignore[union-attr]
    assert offload.maps == {} and offload.program is None
    assert offload.counts["rejected"] == 1


async def test_the_guest_filters_by_the_nics_capabilities(rig_factory: RigFactory) -> None:
    """A helper the NIC does not advertise: the guest's check refuses it before anything
    is sent, and falls back."""
    ktime = Program("ktime", "xdp", encode(assemble("call 5\nmov %r0, 2\nexit\n")))
    with trio.fail_after(30):
        rig = nic(rig_factory)
        guest = await rig.add_guest(port=open_port("null"), offload=ktime, mode="auto")
        await until(lambda: guest.offload.state == "driver", "the fallback to driver mode")
    assert guest.offload.reason.startswith(
        "EACCES: the device's capabilities (profile smartnic) do not admit the program: pc 0: "
        "program of this type cannot use helper bpf_ktime_get_ns#5")
    assert rig.host.guests[0].device.offload.counts["commands"] == 0  # type: ignore[union-attr]


async def test_offload_mode_reports_a_map_the_nic_cannot_hold(rig_factory: RigFactory
                                                              ) -> None:
    """72-byte elements pass the advertised capabilities and not the NIC's 64: CREATE_MAP
    answers ENOMEM, and in offload mode no program runs."""
    wide = Program("wide", "xdp", encode(assemble("mov %r0, 2\nexit\n")),
                   (MapSpec("wide", MapType.HASH, 16, 56, 8),))
    with trio.fail_after(30):
        rig = nic(rig_factory)
        guest = await rig.add_guest(port=open_port("null"), offload=wide, mode="offload")
        await until(lambda: guest.offload.state == "refused", "the refusal")
    assert guest.offload.reason.startswith("ENOMEM: ")
    assert not guest.xdp.attached
    assert rig.host.guests[0].device.offload.maps == {}  # type: ignore[union-attr]
