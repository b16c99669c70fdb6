"""A hostile guest against a `HostRuntime` in this process (over socketpairs): rings it
breaks, chains far larger than any frame, control commands larger than any command, a
receive ring it never refills.  Each attack costs the attacker and nobody else."""

from __future__ import annotations

import gc
import logging
import socket
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from virtio_spec.errors import RingError
from virtio_spec.status import DeviceStatus
from vxdp.packets import udp_packet
from vxdp.pcap import read_pcap
from vxdp.runtime import HostRuntime, open_port
from vxdp.runtime.host import ROOM_WAIT

from .conftest import Rig, until
from .hostile import BUFFERS, VERSION_1, RawGuest, raw_guest

RigFactory = Callable[..., Rig]

BCAST = udp_packet("10.0.0.9", "10.0.0.255", 7, 8, b"all", dst_mac="ff:ff:ff:ff:ff:ff")


def bump_avail(guest, queue: int, by: int = 1000) -> None:
    """The guest moves queue `queue`'s avail idx far past the ring (virtio 1.3 §2.7.6:
    at most the queue size ahead of the device)."""
    avail = guest.driver.queues[queue].addresses[1]
    mem = guest.memory.guest
    mem.write(avail + 2, ((mem.read_u16(avail + 2) + by) & 0xFFFF).to_bytes(2, "little"))


@pytest.mark.parametrize("queue", [0, 1])
async def test_a_ring_broken_under_either_datapath_sets_device_needs_reset(
        rig_factory: RigFactory, queue: int, datapath: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """The C port breaks the ring as the model does, and like the model the device then
    sets DEVICE_NEEDS_RESET, tells the driver (a config change) and logs the rule; the
    other guest is served as before."""
    caplog.set_level(logging.WARNING, logger="vxdp.runtime.guestport")
    with trio.fail_after(20):
        rig = rig_factory(sockets=2)
        bad = await rig.add_guest(port=open_port("null"))
        good = await rig.add_guest(port=open_port("null"))
        port = rig.host.guests[0]
        bump_avail(bad, queue)
        if queue == 0:
            assert await rig.host.wait_for_room(5) == 5
            rig.host.from_wire([BCAST] * 5)
        else:
            bad.kicks[1].signal()
        await until(lambda: port.device is not None and bool(
            port.device.read_status() & DeviceStatus.DEVICE_NEEDS_RESET),
            "DEVICE_NEEDS_RESET on the attacker's device")
        await until(lambda: bad.config_changes > 0, "a config change to the driver")
        before = good.stack["packets"]
        rig.host.from_wire([BCAST] * 3)
        await until(lambda: good.stack["packets"] == before + 3,
                    "the good guest keeps receiving")
    assert f"guest 0: q{queue} DEVICE_NEEDS_RESET: " in caplog.text
    assert "avail idx moved from 0 to" in caplog.text
    assert "(virtio 1.3 \u00a72.7.6)" in caplog.text


@asynccontextmanager
async def attacker(rig: Rig, n: int, **kw: int) -> AsyncIterator[RawGuest]:
    """A raw front-end on host socket `n` of the rig (over a socketpair)."""
    a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    scope = trio.CancelScope()

    async def serve() -> None:
        with scope, a:
            await rig.host.guests[n].serve_socket(a)
    rig.nursery.start_soon(serve)
    try:
        async with raw_guest(sock=b, **kw) as guest:
            yield guest
    finally:
        scope.cancel()


async def test_a_tx_chain_of_64_mib_never_reaches_the_wire(rig_factory: RigFactory,
                                                            tmp_path: Path) -> None:
    """64 descriptors over one MiB of the attacker's memory: either datapath drops the
    chain for its length (the model before reading it) and hands it back used."""
    out = tmp_path / "wire.pcap"
    with trio.fail_after(20):
        rig = rig_factory(wire=open_port(f"pcap:out={out}"), sockets=1)
        async with attacker(rig, 0, queue_size=128) as bad:
            await bad.bring_up(VERSION_1)
            tx = bad.rings[1]
            head = tx.add([(BUFFERS, 1 << 20)] * 64, [])
            tx.publish()
            bad.kicks[1].signal()
            await until(lambda: bad.rings[1].has_used(), "the chain back, used")
            assert [(u.id, u.len) for u in tx.reap()] == [(head, 0)]
            ok = udp_packet("10.0.0.1", "10.0.0.9", 7, 8, b"next one goes")
            bad.memory.guest.write(BUFFERS, bytes(12) + ok)
            tx.add([(BUFFERS, 12 + len(ok))], [])
            tx.publish()
            bad.kicks[1].signal()
            await until(lambda: rig.host.wire.tx_packets == 1, "the next frame on the wire")
            del tx
        drops = rig.host.stats()["guests"][0]["drops"]
        # (the C port counts it as drop_tx_oversize, which the stats file adds to "tx")
        assert sum(drops.values()) == 1 and drops["tx"] == 1
    assert [p.data for p in read_pcap(out)] == [ok]


async def test_a_guest_without_receive_buffers_holds_the_wire_back_once(
        rig_factory: RigFactory, caplog: pytest.LogCaptureFixture) -> None:
    """A live guest that posts no receive buffers: the wire waits ROOM_WAIT for it once,
    then leaves it out (stalled) and moves every frame to the other guest at that one's
    pace; rounds are driven as the pump drives them (wait_for_room, then the burst).
    Before, every round waited ROOM_WAIT for it: 40 rounds, at least 40 ROOM_WAITs."""
    rounds = 40
    with trio.fail_after(60):
        rig = rig_factory(sockets=2)
        good = await rig.add_guest(port=open_port("null"))  # host socket 0
        async with attacker(rig, 1) as bad:
            await bad.bring_up(VERSION_1)
            mac = rig.host.guests[0].profile.mac.hex(":")
            frame = udp_packet("10.0.0.9", "10.0.0.2", 7, 8, b"for the good guest",
                               dst_mac=mac)
            sent = 0
            started = trio.current_time()
            for _ in range(rounds):
                n = await rig.host.wait_for_room(32)
                rig.host.from_wire([frame] * n)
                sent += n
                await trio.sleep(0)
            elapsed = trio.current_time() - started
            # a generous bound next to the old cost (rounds * ROOM_WAIT, by construction)
            assert elapsed < rounds * ROOM_WAIT / 2
            await until(lambda: good.stack["packets"] == sent, "every frame in the good guest")
            stats = rig.host.stats()
            assert stats["room_timeouts"] == 1
            assert stats["guests"][1]["rx_stalls"] == 1
            assert rig.host.guests[1].rx_stalled
            # buffers again: it holds the wire back again (and gets its frames)
            bad.post_rx(8)
            await until(lambda: rig.host.guests[1].rx_posted, "the attacker's buffers")
            await rig.host.wait_for_room(32)
            assert not rig.host.guests[1].rx_stalled
    assert "guest 1: no receive buffers for 50 ms" in caplog.text


def test_a_lost_burst_is_logged_as_text_and_keeps_nothing_alive(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst lost to a guest's broken rings is logged; the record holds the text, not
    the exception, whose traceback would keep what the failing frames held (the guest
    memory they were bound for) alive for as long as the log capture keeps records."""
    caplog.set_level(logging.ERROR, logger="vxdp.runtime.guestport")
    host = HostRuntime(["unused-0.sock"], wire=open_port("null"))
    port = host.guests[0]

    class Mapped:  # stands in for a view of the guest's memory
        pass
    held: list[weakref.ref[Mapped]] = []

    def broken(frames: object) -> None:
        memory = Mapped()  # a local of the failing frame, as a ring's memory view is
        held.append(weakref.ref(memory))
        raise RingError("descriptor 3 points outside guest memory")
    monkeypatch.setattr(port, "_receive", broken)
    try:
        port.receive([BCAST] * 3)
    finally:
        host.close()
    gc.collect()
    assert port.drops["rx"] == 3
    assert "guest 0: burst of 3 frame(s) lost: descriptor 3 points outside" in caplog.text
    assert held[0]() is None  # nothing of the failure outlives it
    assert not any(isinstance(a, BaseException) for r in caplog.records for a in r.args or ())
