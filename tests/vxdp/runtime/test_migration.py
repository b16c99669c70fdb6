"""Live migration in one process: a GuestRuntime's vhost-user back-end moves from one
HostRuntime to another (socketpairs, the same messages as between processes) while the
guest runs on, with its offloaded program, its maps and the commands in its control
queue; refusals leave the guest where it was, the fallback policy moves it to driver
mode with its map entries."""

from __future__ import annotations

import errno as E
import socket
import struct
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from guest.offload import OffloadClient
from host import get_profile
from host.migration import encode, save
from vxdp.bpf import isa
from vxdp.bpf.asm import assemble
from vxdp.bpf.program import MapSpec, MapType, Program
from vxdp.errors import MigrationError, VhostUserLocalError
from vxdp.packets import TrafficGenerator
from vxdp.pair import Pair
from vxdp.runtime import GuestRuntime, migration, open_port
from vxdp.runtime.compare import DEMO_MAP, demo_program
from vxdp.runtime.guestport import PROTOCOL_FEATURES
from vxdp.vhost_user import FrontendConnection
from vxdp.vhost_user import events as ev
from vxdp.vhost_user.transport import load_device_state

from .conftest import Rig, until
from .test_offload import counting, send_from_wire
from .test_smartnic import NIC_ASM

RigFactory = Callable[..., Rig]
K = bytes(4)


async def offloaded_guest(rig_factory: RigFactory, source: str = "rfc2019",
                          dest: object = "host") -> tuple[Rig, Rig, GuestRuntime]:
    a = rig_factory(profile=source, wire=open_port("null"))
    b = rig_factory(profile=dest, wire=open_port("null"))
    guest = await a.add_guest(port=open_port("null"), offload=counting(), mode="offload")
    await until(lambda: guest.offload.state == "offloaded", "the program offloaded")
    return a, b, guest


async def counter(guest: GuestRuntime) -> int:
    client = guest.offload.client
    assert client is not None and client.offloaded is not None
    (handle,) = client.offloaded.handles
    value = await guest.offload.run(client.lookup(handle, K))
    assert value is not None
    return int(struct.unpack("<Q", value)[0])


async def test_the_offload_moves_and_the_guest_goes_on(rig_factory: RigFactory,
                                                       datapath: str) -> None:
    with trio.fail_after(30):
        a, b, guest = await offloaded_guest(rig_factory)
        await send_from_wire(a, TrafficGenerator(1).packets(30))
        await until(lambda: guest.stack["packets"] == 30, "30 frames through the source")
        report = await guest.migrate(b.socket_to(0))
        assert report.outcome == "migrated", report.text()
        port_a, port_b = a.host.guests[0], b.host.guests[0]
        await until(lambda: port_a.device is None, "the source dropped its session")
        await until(lambda: port_b.live and port_b.rx_posted, "the destination serving")
        await send_from_wire(b, TrafficGenerator(2).packets(12))
        await until(lambda: guest.stack["packets"] == 42, "12 more through the destination")
        count = await counter(guest)  # a control command answered by the destination
    # the program counted on where it was: 30 on the source, 12 on the destination
    assert count == 42
    device = port_b.device
    assert device is not None and device.offload is not None
    assert device.offload.profile.name == "rfc2019"  # the capabilities the driver read
    assert report.maps == 1 and report.map_entries == 1 and report.frames_lost == 0
    assert report.downtime_ms is not None and report.downtime_ms > 0
    assert report.program is not None and report.program["insns"] == 12
    assert "accepted by the destination's verifier" in report.reverified
    assert port_b.migration["restored"]["map_entries"] == 1
    assert port_a.offload_info()["program"] is None
    assert guest.offload.state == "offloaded" and guest.stats()["migrations"][0]["outcome"] \
        == "migrated"
    if datapath == "c":
        assert port_b.cpath is not None and port_b.cpath.active  # pair 1 in C again


async def test_map_updates_in_flight_are_never_lost(rig_factory: RigFactory) -> None:
    """Updates go on while the device moves: every one the guest saw acknowledged is in
    the destination's map, and none fails (those in the ring when the source paused are
    answered by the destination)."""
    acked: dict[bytes, bytes] = {}
    with trio.fail_after(40):
        _, b, guest = await offloaded_guest(rig_factory)
        client = guest.offload.client
        assert client is not None
        table = await guest.offload.run(client.create_map(MapSpec("t", MapType.HASH, 4, 4,
                                                                  4096)))
        done = trio.Event()

        async def writer() -> None:
            i = 0
            while not done.is_set() or i < 40:
                key, value = struct.pack("<I", i), struct.pack("<I", i * 7)
                await guest.offload.run(client.update(table.handle, key, value))
                acked[key] = value
                i += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await until(lambda: len(acked) >= 20, "updates acknowledged by the source")
            report = await guest.migrate(b.socket_to(0))
            done.set()
        port_b = b.host.guests[0]
        device = port_b.device
        assert device is not None and device.offload is not None
        on_dest = device.offload.maps[table.handle].map
        missing = [k.hex() for k, v in acked.items() if on_dest.lookup(k) != v]
    assert report.outcome == "migrated", report.text()
    assert missing == []
    assert device.offload.counts["commands"] > 0  # the destination answered some
    assert len(acked) >= 40


async def test_a_destination_without_the_offload_is_refused(rig_factory: RigFactory) -> None:
    with trio.fail_after(30):
        a, b, guest = await offloaded_guest(rig_factory, dest="default")
        link = guest.link
        report = await guest.migrate(b.socket_to(0))
        assert guest.link is link  # still on the source, untouched
        await send_from_wire(a, TrafficGenerator(1).packets(8))
        await until(lambda: guest.stack["packets"] == 8, "frames through the source")
        assert await counter(guest) == 8
    assert report.outcome == "refused" and report.downtime_ms is None
    assert "VIRTIO_NET_F_XDP_OFFLOAD" in report.reason
    assert b.host.guests[0].migration["restored"] is None


async def test_smaller_capabilities_refused_or_moved_to_driver_mode(
        rig_factory: RigFactory) -> None:
    """rfc2019 to smartnic (fewer helpers, maps and memory): refused; with the fallback
    policy the guest moves, its program runs in its driver with the counter it had."""
    with trio.fail_after(40):
        a, b, guest = await offloaded_guest(rig_factory, dest="smartnic")
        await send_from_wire(a, TrafficGenerator(1).packets(16))
        await until(lambda: guest.stack["packets"] == 16, "frames through the source")
        refused = await guest.migrate(b.socket_to(0))
        assert refused.outcome == "refused" and "fall short" in refused.reason
        assert "helpers missing" in refused.reason
        # a host serves one front-end at a time: the refused one has left first
        await until(lambda: b.host.guests[0].session is None, "the refused session gone")
        report = await guest.migrate(b.socket_to(0), policy="fallback")
        assert report.outcome == "fallback", report.text()
        await until(lambda: guest.offload.state == "driver", "the program in driver mode")
        await until(lambda: b.host.guests[0].live and b.host.guests[0].rx_posted,
                    "the destination serving")
        await send_from_wire(b, TrafficGenerator(2).packets(4))
        await until(lambda: sum(guest.actions().values()) == 4, "4 frames in driver mode")
    counts = guest.xdp.maps[0].lookup(K)  # type: ignore[index]
    assert counts is not None and struct.unpack("<Q", counts)[0] == 20  # 16 carried + 4
    assert "fall short" in guest.offload.reason and report.map_entries == 1
    assert any("1 map entries carried over" in text for _, text in guest.reports)
    assert b.host.guests[0].offload_info()["program"] is None


def demo_count(counts: list[tuple[bytes, bytes]]) -> int:
    """Frames the demo program counted: the sum over its ARRAY of per-action counters."""
    return sum(struct.unpack("<Q", value)[0] for _, value in counts)


async def test_reoffload_moves_onto_a_smartnic_and_offloads_there(
        rig_factory: RigFactory) -> None:
    """Passthrough: from an rfc2019 host to a SmartNIC's virtual function, whose
    capabilities fall short of the source's: with policy reoffload the guest moves,
    offloads its program again to the NIC (translated for its micro-engine), the
    counters it had written into the NIC's map before SET_OFFLOAD; frames on the NIC
    count on from there."""
    program = Program("xdp_nic_count", "xdp", isa.encode(assemble(NIC_ASM)), (DEMO_MAP,))
    with trio.fail_after(40):
        a = rig_factory(profile="rfc2019", wire=open_port("null"))
        b = rig_factory(profile="smartnic", engine="smartnic", wire=open_port("null"))
        guest = await a.add_guest(port=open_port("null"), offload=program, mode="offload")
        await until(lambda: guest.offload.state == "offloaded", "offloaded to the host")
        await send_from_wire(a, TrafficGenerator(1).packets(16))
        await until(lambda: guest.stack["packets"] + sum(
            a.host.guests[0].offload_actions().values()) >= 16, "16 frames on the source")
        report = await guest.migrate(b.socket_to(0), policy="reoffload")
        assert report.outcome == "reoffloaded", report.text()
        assert guest.offload.state == "offloaded"
        port = b.host.guests[0]
        await until(lambda: port.live and port.rx_posted, "the NIC serving")
        await send_from_wire(b, TrafficGenerator(2).packets(4))
        await until(lambda: sum(port.offload_actions().values()) == 4, "4 frames on the NIC")
        client = guest.offload.client
        assert client is not None and client.offloaded is not None
        counts = await guest.offload.run(client.dump(client.offloaded.handles[0]))
    assert demo_count(counts) == 20  # 16 carried over + 4
    assert "fall short" in report.reason and report.map_entries == 5
    assert "offloaded to the destination, 5 map entries" in report.placement
    assert port.offload_info()["program"]["engine"] == "smartnic"
    assert "translated for vxme-32" in guest.offload.log
    assert any("5 map entries carried over" in text for _, text in guest.reports)
    assert a.host.guests[0].offload_info()["program"] is None


async def test_reoffload_refused_by_the_nic_runs_in_the_driver_with_the_entries(
        rig_factory: RigFactory) -> None:
    """The NIC's translator refuses the demo program (a map write): a guest in mode
    auto runs it in its driver, its maps holding what the source's held; in mode
    offload nothing runs and the report says the entries were dropped."""
    with trio.fail_after(40):
        a = rig_factory(profile="rfc2019", wire=open_port("null"))
        b = rig_factory(profile="smartnic", engine="smartnic", wire=open_port("null"))
        guest = await a.add_guest(port=open_port("null"), offload=demo_program(), mode="auto")
        await until(lambda: guest.offload.state == "offloaded", "offloaded to the host")
        await send_from_wire(a, TrafficGenerator(1).packets(16))
        await until(lambda: sum(a.host.guests[0].offload_actions().values()) == 16,
                    "16 frames through the source's program")
        report = await guest.migrate(b.socket_to(0), policy="reoffload")
        assert report.outcome == "reoffloaded", report.text()
        assert guest.offload.state == "driver"
        await until(lambda: b.host.guests[0].live and b.host.guests[0].rx_posted,
                    "the NIC serving")
        await send_from_wire(b, TrafficGenerator(2).packets(4))
        await until(lambda: sum(guest.actions().values()) == 4, "4 frames in driver mode")
    driver_map = guest.xdp.maps[0]  # type: ignore[index]
    assert demo_count([(k, v) for k, v in driver_map.items()]) == 20
    assert report.placement.startswith("driver: EOPNOTSUPP: [smartnic]")
    assert "map writes not supported" in guest.offload.reason
    assert b.host.guests[0].offload_info()["program"] is None


async def test_rings_the_destination_cannot_hold_are_refused_before_the_source_stops(
        rig_factory: RigFactory) -> None:
    """Nothing in a host's features or config space says how large its rings may be:
    its refusal of the ring size (SET_VRING_NUM, told before the source stops) refuses
    the move, and the source never stopped."""
    small = replace(get_profile("rfc2019"), max_queue_size=128)
    with trio.fail_after(30):
        a, b, guest = await offloaded_guest(rig_factory, dest=small)
        report = await guest.migrate(b.socket_to(0))
        await send_from_wire(a, TrafficGenerator(2).packets(5))
        await until(lambda: guest.stack["packets"] == 5, "frames through the source")
    assert report.outcome == "refused", report.text()
    assert "VHOST_USER_SET_VRING_NUM" in report.reason and report.downtime_ms is None


async def test_a_destination_that_refuses_the_state_resumes_the_source(
        rig_factory: RigFactory) -> None:
    """A destination whose CHECK_DEVICE_STATE says no (here a back-end that answers
    EACCES whatever it read): the source resumes every ring where it stopped, with its
    program and maps, and the frames that came meanwhile are counted."""
    async def refuse(session: object, event: object) -> int:
        return E.EACCES

    with trio.fail_after(30):
        a, b, guest = await offloaded_guest(rig_factory)
        await send_from_wire(a, TrafficGenerator(1).packets(5))
        await until(lambda: guest.stack["packets"] == 5, "frames through the source")
        port = b.host.guests[0]
        port.handlers = {**port.handlers, ev.DeviceStateChecked: refuse}
        report = await guest.migrate(b.socket_to(0))
        await send_from_wire(a, TrafficGenerator(2).packets(5))
        await until(lambda: guest.stack["packets"] == 10, "frames through the resumed source")
        assert await counter(guest) == 10
    assert report.outcome == "refused", report.text()
    assert "VHOST_USER_CHECK_DEVICE_STATE: EACCES" in report.reason
    assert report.downtime_ms is not None and report.frames_lost == 0
    assert "timings_ms" in report.to_json() and "restart" in report.timings_ms


async def test_a_bad_state_leaves_the_destination_as_it_was(rig_factory: RigFactory) -> None:
    """A front-end loads state into a host's port over vhost-user: a state with one
    field corrupted is refused at CHECK_DEVICE_STATE (EINVAL; the port keeps the field's
    name) and the port's device is untouched; the state as saved is taken whole."""
    pair = Pair.create("rfc2019")
    assert pair.negotiate()
    client = OffloadClient(pair.driver.xdp_caps)
    pair.offload(client.load(counting()))
    for index in range(pair.device.num_queues):
        pair.device.stop_queue(index)
    doc = save(pair.device)
    bad = {**doc, "offload": {**doc["offload"], "next_handle": 1}}
    with trio.fail_after(20):
        b = rig_factory(profile="host", wire=open_port("null"))
        port = b.host.guests[0]
        async with FrontendConnection(b.socket_to(0)) as conn:
            await conn.negotiate(0, PROTOCOL_FEATURES)
            with pytest.raises(MigrationError) as refused:
                await load_device_state(conn.send, conn.core, encode(bad))
            assert refused.value.errno == E.EINVAL
            assert "offload.maps[0].handle" in port.migration["refused"]
            device = port.device
            assert device is not None and device.read_status() == 0
            assert device.offload is not None and device.offload.maps == {}
            await load_device_state(conn.send, conn.core, encode(doc))
            restored = port.device
            assert restored is not device and restored is not None
            assert restored.read_status() == 0x0F and restored.offloaded is not None
            assert port.migration["restored"]["maps"] == 1


async def test_a_destination_that_dies_mid_move_leaves_the_source_running(
        rig_factory: RigFactory) -> None:
    """The destination's back-end goes away when the state comes (its session ends at
    SET_DEVICE_STATE_FD): the move breaks off, the source resumes its rings and goes on
    with its program and maps."""
    async def crash(session: object, event: object) -> object:
        raise VhostUserLocalError("the destination crashed")

    with trio.fail_after(30):
        a, b, guest = await offloaded_guest(rig_factory)
        await send_from_wire(a, TrafficGenerator(1).packets(6))
        await until(lambda: guest.stack["packets"] == 6, "frames through the source")
        port = b.host.guests[0]
        port.handlers = {**port.handlers, ev.DeviceStateFdSet: crash}
        with pytest.raises(MigrationError, match="the source resumed"):
            await guest.migrate(b.socket_to(0))
        await send_from_wire(a, TrafficGenerator(2).packets(6))
        await until(lambda: guest.stack["packets"] == 12, "frames through the resumed source")
        assert await counter(guest) == 12
    assert guest.offload.state == "offloaded"
    assert any("migration failed" in text for _, text in guest.reports)


async def test_a_destination_that_does_not_answer_is_refused(
        rig_factory: RigFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket nobody serves yet (a host serves one front-end at a time): the move is
    refused after CONNECT_TIMEOUT and the guest stays; its own socket is refused at once."""
    monkeypatch.setattr(migration, "CONNECT_TIMEOUT", 0.3)
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await listener.bind(str(tmp_path / "busy.sock"))
    listener.listen(1)
    try:
        with trio.fail_after(30):
            _, _, guest = await offloaded_guest(rig_factory)
            link = guest.link
            report = await guest.migrate(str(tmp_path / "busy.sock"))
            guest.path = str(tmp_path / "busy.sock")
            here = await guest.migrate(str(tmp_path / "busy.sock"))
    finally:
        listener.close()
    assert report.outcome == "refused" and "did not answer within 0.3 s" in report.reason
    assert guest.link is link
    assert here.outcome == "refused" and "there already" in here.reason


async def test_frames_that_reach_the_stopped_source_are_reported_lost(
        rig_factory: RigFactory) -> None:
    """Ten frames reach the source while it is stopped (sent while the destination
    checks the state): the report counts them lost, the guest never sees them, and every
    frame before and after goes through."""
    with trio.fail_after(30):
        a, b, guest = await offloaded_guest(rig_factory)
        await send_from_wire(a, TrafficGenerator(1).packets(7))
        await until(lambda: guest.stack["packets"] == 7, "frames through the source")
        port = b.host.guests[0]
        check = port.handlers[ev.DeviceStateChecked]

        async def check_while_frames_come(session: object, event: object) -> object:
            a.host.from_wire(TrafficGenerator(3).packets(10))
            return await check(session, event)  # type: ignore[arg-type]

        port.handlers = {**port.handlers, ev.DeviceStateChecked: check_while_frames_come}
        report = await guest.migrate(b.socket_to(0))
        await send_from_wire(b, TrafficGenerator(2).packets(5))
        await until(lambda: guest.stack["packets"] == 12, "frames through the destination")
        assert await counter(guest) == 12
    assert report.outcome == "migrated" and report.frames_lost == 10
    assert a.host.guests[0].drops["suspended"] == 10
