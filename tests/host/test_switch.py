"""The host switch in C (csrc/switch.c through `host.datapath.HostSwitch`) against the
host's Python switch (per-frame switching by MAC, one port burst per guest), on the same
traffic: the same frames reach the same guests and the wire in the same order, and every
port counts the same.  Then what only the C side has: frames for guests the edge
serves, the pump's rounds (room, cycling sources, limits), events, hostile rings."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from guest.datapath import GuestPort
from host.datapath import HostPort, HostSwitch, QueueConfig, TableEntry
from virtio_spec.testing import GuestAllocator, guest_memory
from vxdp import native
from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.program import Program
from vxdp.frames import PackedFrames

V1 = 1 << 32
WIRE = 1
# the action is the frame's byte 14 & 3 (aborted, drop, pass, tx); runts pass
BY_BYTE = """
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r4, %r2
add %r4, 15
mov %r0, 2
jgt %r4, %r3, out
ldxb %r0, [%r2+14]
and %r0, 3
out:
exit
"""
BCAST = b"\xff" * 6
UNKNOWN = bytes.fromhex("02eeeeeeee01")


def mac(n: int) -> bytes:
    return bytes.fromhex(f"0200000000{n + 1:02x}")


def frame(dst: bytes, n: int, tag: int = 0, size: int = 64) -> bytes:
    body = bytes(((tag + i) & 0xFF) for i in range(size - 14))
    return dst + mac(99) + b"\x08\x00" + bytes([n]) + body[1:]


class Hosts:
    """`n` guests (GuestPort + HostPort each) on one switch; `wait[i]` False for none."""

    def __init__(self, n: int, *, queue_size: int = 64, program: str | None = BY_BYTE,
                 live: Sequence[bool] | None = None) -> None:
        self.mem = guest_memory(size=16 << 20)
        alloc = GuestAllocator(self.mem)
        self.switch = HostSwitch(WIRE)
        self.guests: list[GuestPort] = []
        self.ports: list[HostPort] = []
        self.live = list(live) if live is not None else [True] * n
        for i in range(n):
            g = GuestPort(self.mem, alloc, V1, queue_size=queue_size)
            rx, tx = g.setup_requests()
            port = HostPort(self.switch, 10 + i, self.mem,
                            QueueConfig(rx.size, rx.desc, rx.driver, rx.device),
                            QueueConfig(tx.size, tx.desc, tx.driver, tx.device), V1)
            if program is not None:
                port.attach(Program("t", "xdp", encode(assemble(program))))
            g.start()
            self.guests.append(g)
            self.ports.append(port)

    def table(self, ports: Sequence[HostPort | None] | None = None) -> list[TableEntry]:
        ports = self.ports if ports is None else ports
        return [(mac(i), self.live[i], self.live[i], p) for i, p in enumerate(ports)]

    # ---------------------------------------------------------------- the Python switch

    def py_rx(self, frames: Sequence[bytes]) -> list[bytes]:
        """What HostRuntime.switch_frames does for wire frames: by MAC, else flooded to
        the live guests; each guest's frames in one port burst, in guest order."""
        per: dict[int, list[bytes]] = {}
        macs = {mac(i): i for i in range(len(self.ports))}
        for f in frames:
            to = macs.get(f[:6])
            for i in ([to] if to is not None else
                      [i for i in range(len(self.ports)) if self.live[i]]):
                per.setdefault(i, []).append(f)
        wire: list[bytes] = []
        for i, burst in sorted(per.items()):
            wire += list(self.ports[i].rx_burst(burst).wire)
        return wire

    def py_tx(self, sender: int) -> list[bytes]:
        """What HostRuntime.from_guest does with a C port's transmit burst."""
        sent = list(self.ports[sender].tx_burst().wire)
        local = {mac(i) for i in range(len(self.ports)) if i != sender}
        macs = {mac(i): i for i in range(len(self.ports))}
        per: dict[int, list[bytes]] = {}
        for f in sent:
            if f[:6] in local:
                per.setdefault(macs[f[:6]], []).append(f)
        wire: list[bytes] = []
        for i, burst in sorted(per.items()):
            if i != sender:
                wire += list(self.ports[i].rx_burst(burst).wire)
        return wire + [f for f in sent if f[:6] not in local]

    def received(self) -> list[list[bytes]]:
        return [list(g.rx_burst()[0]) for g in self.guests]

    def counters(self) -> list[dict[str, int]]:
        return [p.stats for p in self.ports]


def traffic(n: int) -> list[bytes]:
    frames = []
    for k in range(120):
        dst = (mac(k % (n + 1)) if k % 5 else BCAST) if k % 7 else UNKNOWN
        frames.append(frame(dst, k % 4, k, 60 + k % 30))
    frames += [mac(0) + b"\x01\x02", b"\x02\x00", mac(1) + bytes(4)]  # runts
    return frames


@pytest.mark.parametrize("n", [1, 2, 4])
def test_wire_frames_go_where_the_python_switch_sends_them(n: int) -> None:
    live = [i != 1 for i in range(n)]  # guest 1 (when there is one) takes no floods
    c, py = Hosts(n, live=live), Hosts(n, live=live)
    c.switch.set_table(c.table())
    frames = traffic(n)
    for at in (0, 50):  # two bursts: the rings refill in between
        out = c.switch.rx(frames[at:at + 70])
        assert out.edge == {}
        assert list(out.wire) == py.py_rx(frames[at:at + 70])
        assert c.received() == py.received()
    assert c.counters() == py.counters()
    assert any(s["xdp_tx"] for s in c.counters()) and any(s["guest_packets"]
                                                          for s in c.counters())


@pytest.mark.parametrize("n", [2, 3])
def test_a_guests_frames_go_where_the_python_switch_sends_them(n: int) -> None:
    c, py = Hosts(n), Hosts(n)
    c.switch.set_table(c.table())
    sent = [frame(d, k % 4, k) for k, d in enumerate(
        [mac(1), mac(0), BCAST, UNKNOWN, mac(n - 1), mac(1), mac(0)] * 5)]
    for h in (c, py):
        assert h.guests[0].tx_burst(sent)[0] == len(sent)
    out = c.switch.tx(c.ports[0])
    assert all(dest is None for dest, _ in out.runs)
    assert [f for _, run in out.runs for f in run] == py.py_tx(0)
    assert c.received() == py.received()
    assert c.counters() == py.counters()
    assert c.counters()[1]["rx_packets"] > 0


def quiet(h: Hosts) -> None:
    """Every guest polls: no interrupts, so that nothing ends a transmit turn early."""
    for g in h.guests:
        g.interrupts(0, False)
        g.interrupts(1, False)


def turns(h: Hosts, sender: int, **kw: float) -> tuple[list[bytes], list[int]]:
    """`tx_turn` until the ring is dry: the frames for the wire in order, and why each
    turn stopped."""
    frames: list[bytes] = []
    whys: list[int] = []
    while not whys or whys[-1] != native.TXT_DRY:
        out = h.switch.tx_turn(h.ports[sender], **{"turn": 1.0, "spin": 0.0, **kw})
        assert all(dest is None for dest, _ in out.runs) and out.events == []
        frames += [f for _, run in out.runs for f in run]
        whys.append(out.why)
    return frames, whys


@pytest.mark.parametrize("program", [BY_BYTE, None])
def test_a_transmit_turn_does_what_laps_of_tx_did(program: str | None) -> None:
    """`tx_turn` (laps in one C call) against `tx` called lap after lap: the same frames
    reach the same guests and the wire in the same order, every port counts the same.
    With programs that send frames to the wire, each call of a lap starts with an empty
    out burst (TXT_FULL hands the frames over in between); without, the wire's frames
    pile up over the laps."""
    c, ref = Hosts(3, program=program), Hosts(3, program=program)
    for h in (c, ref):
        h.switch.set_table(h.table())
        quiet(h)
    sent = [frame(d, k % 4, k) for k, d in enumerate(
        [mac(1), mac(0), BCAST, UNKNOWN, mac(2), mac(1), UNKNOWN] * 8)]
    for h in (c, ref):
        assert h.guests[0].tx_burst(sent)[0] == len(sent)
    wire: list[bytes] = []
    while True:
        out = ref.switch.tx(ref.ports[0], budget=8)
        wire += [f for _, run in out.runs for f in run]
        if not ref.ports[0].tx_pending():
            break
    got, whys = turns(c, 0, lap=8)
    assert got == wire and c.received() == ref.received()
    assert c.counters() == ref.counters()
    if program is not None:  # XDP_TX outputs: a lap's frames handed over before the next
        assert whys.count(native.TXT_FULL) >= 2 and c.counters()[1]["xdp_tx"] > 0
    else:
        assert whys == [native.TXT_DRY]


def test_a_transmit_turn_stops_for_the_edge_the_clock_and_a_full_out_burst() -> None:
    h = Hosts(2, queue_size=1024, program=None)
    h.switch.set_table(h.table())
    quiet(h)
    port = h.ports[0]
    # a full out burst (512 frames): the chains after wait for the next turn
    sent = [frame(UNKNOWN, 2, k) for k in range(600)]
    assert h.guests[0].tx_burst(sent)[0] == 600
    out = h.switch.tx_turn(port, turn=1.0, spin=0.0)
    assert (out.why, out.chains) == (native.TXT_FULL, 512)
    assert [f for _, run in out.runs for f in run] == sent[:512]
    # the turn over: one lap (up to `lap` chains), then it stops with chains left
    out = h.switch.tx_turn(port, turn=0.0, spin=0.0, lap=16)
    assert (out.why, out.chains, port.tx_pending()) == (native.TXT_TURN, 16, 600 - 528)
    out = h.switch.tx_turn(port, turn=1.0, spin=0.0)
    assert (out.why, out.chains) == (native.TXT_DRY, 72)
    # a dry ring polled for `spin` seconds, then left
    t0 = time.perf_counter()
    out = h.switch.tx_turn(port, turn=1.0, spin=0.02)
    assert (out.why, out.chains) == (native.TXT_DRY, 0) and time.perf_counter() - t0 >= 0.02
    # frames for a guest the edge serves end the turn after their lap
    h.switch.set_table(h.table([h.ports[0], None]))
    sent = [frame(UNKNOWN, 2, k) for k in range(8)] + [frame(mac(1), 2, 8)] + \
        [frame(UNKNOWN, 2, k) for k in range(9, 24)]
    h.guests[0].tx_burst(sent)
    out = h.switch.tx_turn(port, turn=1.0, spin=0.0, lap=8)
    assert (out.why, out.chains) == (native.TXT_EDGE, 16)
    assert [(d, list(r)) for d, r in out.runs] == [(None, sent[:8]), (1, [sent[8]]),
                                                   (None, sent[9:16])]
    # an interrupt due ends it too: the edge sends it
    h.switch.set_table(h.table())
    h.guests[0].interrupts(1, True)
    out = h.switch.tx_turn(port, turn=1.0, spin=0.0, lap=4)
    assert (out.why, out.chains) == (native.TXT_EDGE, 4)
    assert out.events == [(10, native.EV_TX_IRQ)]


def test_frames_for_guests_without_a_port_are_left_to_the_edge() -> None:
    h = Hosts(3, program=None)
    h.switch.set_table(h.table([h.ports[0], None, h.ports[2]]))
    frames = [frame(mac(1), 2, 1), frame(BCAST, 2, 2), frame(mac(0), 2, 3)]
    out = h.switch.rx(frames)
    assert out.edge == {1: [frames[0], frames[1]]}
    got = h.received()
    assert got[0] == [frames[1], frames[2]] and got[1] == [] and got[2] == [frames[1]]
    # from a guest: marked for the edge in the order the guests are served
    h.guests[0].tx_burst([frame(mac(2), 2, 4), frame(mac(1), 2, 5), frame(UNKNOWN, 2, 6)])
    tx = h.switch.tx(h.ports[0])
    assert [(d, list(r)) for d, r in tx.runs] == [(1, [frame(mac(1), 2, 5)]),
                                                   (None, [frame(UNKNOWN, 2, 6)])]
    assert h.received()[2] == [frame(mac(2), 2, 4)]


def test_a_port_that_goes_leaves_the_table() -> None:
    h = Hosts(2, program=None)
    h.switch.set_table(h.table())
    h.ports[1].close()
    assert h.switch.table[1][3] is None
    out = h.switch.rx([frame(mac(1), 2)])
    assert out.edge == {1: [frame(mac(1), 2)]}


def test_the_pump_takes_rounds_as_long_as_there_is_room() -> None:
    h = Hosts(2, queue_size=16, program=None)
    h.switch.set_table(h.table())
    src = PackedFrames.pack([frame(mac(k % 2), 2, k) for k in range(10)])
    # an interrupt due ends the call after its round: the edge sends it
    res = h.switch.pump(src, 0, cycle=False, limit=1 << 40, round_max=4, turn=1.0, spin=0.0)
    assert (res.taken, res.at, res.why, res.rounds) == (4, 4, native.PUMP_EDGE, 1)
    assert res.out.events == [(10, native.EV_RX_IRQ), (11, native.EV_RX_IRQ)]
    for g in h.guests:  # a polling driver: no interrupts, the rounds go on
        g.interrupts(0, False)
    res = h.switch.pump(src, 4, cycle=False, limit=1 << 40, round_max=4, turn=1.0, spin=0.0)
    assert (res.taken, res.at, res.why, res.rounds) == (6, 10, native.PUMP_END, 2)
    assert res.taken_bytes == src[4:].nbytes and res.out.events == []
    got = h.received()
    assert got == [[f for f in src if f[:6] == mac(0)], [f for f in src if f[:6] == mac(1)]]
    # cycling: the source again and again, each round what both have room for, until a
    # ring is full; then no room
    res = h.switch.pump(src, 7, cycle=True, limit=1 << 40, round_max=256, turn=1.0,
                        spin=0.0)
    got = h.received()
    assert res.why == native.PUMP_NO_ROOM and 16 in map(len, got)
    assert res.taken == sum(map(len, got)) and res.at == (7 + res.taken) % 10
    cycled = [src[(7 + k) % 10] for k in range(res.taken)]
    assert got == [[f for f in cycled if f[:6] == mac(i)] for i in (0, 1)]
    # a limit ends it
    res = h.switch.pump(src, 0, cycle=True, limit=5, round_max=256, turn=1.0, spin=0.0)
    assert (res.taken, res.why) == (5, native.PUMP_END)
    # a guest it does not wait for takes what it has room for, drops the rest
    h.live[1] = False
    h.switch.set_table([(mac(0), True, True, h.ports[0]), (mac(1), True, False, h.ports[1])])
    assert len(h.guests[0].rx_burst()[0]) == 3  # guest 1 keeps its 2: 14 buffers left
    res = h.switch.pump(src, 0, cycle=True, limit=40, round_max=256, turn=1.0, spin=0.0)
    assert res.why == native.PUMP_NO_ROOM and h.switch.room(100) == 0
    assert len(h.guests[0].rx_burst()[0]) == 16
    assert h.ports[1].stats["drop_no_buffer"] == res.taken - 16 - 14 > 0


def test_the_pump_leaves_frames_for_the_edge_and_stops() -> None:
    h = Hosts(2, program=None)
    h.switch.set_table(h.table([h.ports[0], None]))
    src = PackedFrames.pack([frame(mac(0), 2, 1), frame(mac(1), 2, 2), frame(mac(0), 2, 3)])
    res = h.switch.pump(src, 0, cycle=False, limit=100, round_max=256, turn=1.0, spin=0.0)
    assert res.why == native.PUMP_EDGE and res.taken == 3
    assert res.out.edge == {1: [src[1]]}


def test_a_hostile_ring_under_the_switch_is_reported_once() -> None:
    h = Hosts(2, program=None)
    h.switch.set_table(h.table())
    rx_desc = h.guests[1].setup_requests()[0].desc
    h.mem.write_u64(rx_desc, 0xDEAD_0000)  # descriptor 0's buffer address
    out = h.switch.rx([frame(mac(1), 2, k) for k in range(3)] + [frame(mac(0), 2)])
    assert (11, native.EV_RX_BROKEN | native.EV_RX_IRQ) in out.events or \
        (11, native.EV_RX_BROKEN) in out.events
    assert h.ports[1].stats["drop_ring_broken"] == 3
    assert set(h.ports[1].broken()) == {"rx"}
    out = h.switch.rx([frame(mac(1), 2)])
    assert all(not mask & native.EV_RX_BROKEN for _, mask in out.events)
    assert h.ports[1].stats["drop_ring_broken"] == 4
    assert h.received()[0] == [frame(mac(0), 2)]  # the other guest is served
    # the pump does not wait for a broken ring's room
    src = PackedFrames.pack([frame(mac(0), 2)])
    res = h.switch.pump(src, 0, cycle=False, limit=1, round_max=8, turn=1.0, spin=0.0)
    assert res.taken == 1


def test_bad_calls_are_refused() -> None:
    h = Hosts(1, program=None)
    other = HostSwitch(WIRE)
    with pytest.raises(native.CoreError, match="not on this switch"):
        other.set_table([(mac(0), True, True, h.ports[0])])
    with pytest.raises(native.CoreError, match="MAC"):
        h.switch.set_table([(b"\x01", True, True, None)])
    with pytest.raises(native.CoreError, match="not on this switch"):
        other.tx(h.ports[0])
    with pytest.raises(native.CoreError, match="not on this switch"):
        other.tx_turn(h.ports[0], turn=0.0, spin=0.0)
    with pytest.raises(native.CoreError, match="at least one chain"):
        h.switch.tx_turn(h.ports[0], turn=0.0, spin=0.0, lap=0)


def test_frames_redirected_in_from_outside_skip_the_host_program() -> None:
    """`HostPort.redirect_in` (a redirect by a program the Python side ran): past the
    port's host-attached program, through its offloaded one, as the switch's own
    redirects go; frames the offloaded program bounces go to the wire."""
    h = Hosts(1, program="mov %r0, 1\nexit")  # host-attached: drop everything
    port = h.ports[0]
    port.attach_offload(Program("o", "xdp", encode(assemble(BY_BYTE))))
    frames = [frame(mac(0), 2, 1), frame(mac(0), 3, 2), frame(mac(0), 1, 3), frame(mac(0), 2, 4)]
    out = port.redirect_in(frames)
    assert list(out.wire) == [frames[1]]  # XDP_TX by the offloaded program
    assert h.received()[0] == [frames[0], frames[3]]
    s = port.stats
    assert (s["redirect_in"], s["xdp_drop"], s["off_pass"], s["off_tx"], s["off_drop"]) \
        == (4, 0, 2, 1, 1)
    port.set_carrier(False)  # the guest's link down: what is redirected to it is dropped
    assert not list(port.redirect_in(frames).wire) and h.received()[0] == []
    assert (port.stats["redirect_in"], port.stats["drop_link_down"]) == (8, 4)
    port.set_carrier(True)
    port.redirect_in(frames[:1])
    assert h.received()[0] == [frames[0]]
