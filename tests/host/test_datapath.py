"""The C datapath end to end: a guest port and host ports over one guest memory.

Frames leave the guest and arrive at the wire; wire frames meet the offloaded program and
do what its action says (compared byte for byte); merged rx buffers reassemble; a hostile
ring breaks its queue only; counters add up; a host.Device hands its queues over and back.
"""

from __future__ import annotations

import itertools
import re
import struct

import pytest

from guest.datapath import GuestPort
from host.datapath import HostPort, HostSwitch, QueueConfig
from virtio_spec.errors import MemoryAccessError
from virtio_spec.features import VirtioFeature, VirtioNetFeature
from virtio_spec.testing import GuestAllocator, guest_memory
from vxdp import native
from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.program import MapSpec, MapType, Program
from vxdp.errors import UsageError

V1 = 1 << VirtioFeature.VIRTIO_F_VERSION_1
EVENT_IDX = 1 << VirtioFeature.VIRTIO_F_EVENT_IDX
MRG = 1 << VirtioNetFeature.VIRTIO_NET_F_MRG_RXBUF
MTU = 1 << VirtioNetFeature.VIRTIO_NET_F_MTU
WIRE, GUEST_A, GUEST_B = 1, 10, 20

DROP = "mov %r0, 1\nexit"
PASS = "mov %r0, 2\nexit"
# swap the Ethernet addresses and send the frame back out (the frame is >= 14 bytes)
SWAP_TX = """
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r4, %r2
add %r4, 14
jgt %r4, %r3, out
ldxw %r5, [%r2+0]
ldxh %r6, [%r2+4]
ldxw %r7, [%r2+6]
ldxh %r8, [%r2+10]
stxw [%r2+0], %r7
stxh [%r2+4], %r8
stxw [%r2+6], %r5
stxh [%r2+10], %r6
out:
mov %r0, 3
exit
"""
# drop frames of odd length, pass the others
ODD_DROP = """
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
sub %r3, %r2
and %r3, 1
mov %r0, 2
jeq %r3, 0, done
mov %r0, 1
done:
exit
"""
# redirect through devmap slot 0; PASS when the slot is empty
REDIRECT = "lddw %r1, map_fd(0)\nmov %r2, 0\nmov %r3, 2\ncall 51\nexit"
# pop 4 bytes with adjust_head, then PASS
HEAD_POP = "mov %r2, 4\ncall 44\nmov %r0, 2\nexit"


def prog(text: str, *maps: MapSpec) -> Program:
    return Program("t", "xdp", encode(assemble(text)), maps=maps)


def frame(n: int, tag: int = 0) -> bytes:
    body = bytes((tag + i) & 0xFF for i in range(n - 14))
    return bytes.fromhex("02aabbccdd01") + bytes.fromhex("02aabbccdd02") + b"\x08\x00" + body


class Host:
    """A switch with guests A (and optionally B), each a GuestPort + HostPort pair."""

    def __init__(self, features: int = V1, *, guests: int = 1, queue_size: int = 64,
                 rx_buffer_size: int | None = None, mtu: int = 0, start: bool = True) -> None:
        self.mem = guest_memory(size=8 << 20)
        self.alloc = GuestAllocator(self.mem)
        self.switch = HostSwitch(WIRE)
        self.guests: list[GuestPort] = []
        self.ports: list[HostPort] = []
        for ifindex in (GUEST_A, GUEST_B)[:guests]:
            g = GuestPort(self.mem, self.alloc, features, queue_size=queue_size,
                          rx_buffer_size=rx_buffer_size)
            rx, tx = g.setup_requests()
            port = HostPort(self.switch, ifindex, self.mem,
                            QueueConfig(rx.size, rx.desc, rx.driver, rx.device),
                            QueueConfig(tx.size, tx.desc, tx.driver, tx.device), features,
                            mtu=mtu)
            if start:
                g.start()
            self.guests.append(g)
            self.ports.append(port)

    @property
    def a(self) -> tuple[GuestPort, HostPort]:
        return self.guests[0], self.ports[0]


def test_frames_out_of_the_guest_arrive_at_the_wire() -> None:
    h = Host()
    g, port = h.a
    frames = [frame(60 + i, i) for i in range(40)]
    sent, kicks = g.tx_burst(frames)
    assert sent == 40 and kicks.tx
    out = port.tx_burst()
    assert out.wire == frames
    assert out.interrupts == {GUEST_A: 2}
    st = port.stats
    assert (st["tx_packets"], st["tx_bytes"]) == (40, sum(map(len, frames)))
    assert g.stats["tx_packets"] == 40
    # the guest reaps the used tx chains and can send a full ring again
    assert g.tx_burst([frame(64)] * 64)[0] == 64
    assert len(port.tx_burst().wire) == 64


def test_a_transmit_drain_stopped_at_its_budget_says_what_is_left() -> None:
    """With EVENT_IDX the driver kicks once for what it published: chains left when
    tx_burst stops at its budget are taken by coming back (tx_pending), not by a kick."""
    h = Host(V1 | EVENT_IDX, queue_size=1024)
    g, port = h.a
    frames = [frame(60, i) for i in range(600)]
    sent, kicks = g.tx_burst(frames)
    assert sent == 600 and kicks.tx
    out = port.tx_burst(budget=256)
    assert len(out.wire) == 256 and port.tx_pending() == 344
    # avail_event says 256, the driver is at 600 already: the next chain asks no kick
    assert g.tx_burst([frame(61)])[1].tx is False
    got = list(out.wire)
    while port.tx_pending():
        got += port.tx_burst(budget=256).wire
    assert got == [*frames, frame(61)]


def test_wire_frames_pass_into_the_guest_without_a_program() -> None:
    h = Host()
    g, port = h.a
    frames = [frame(60 + 7 * i, i) for i in range(50)]
    out = port.rx_burst(frames)
    assert out.wire == [] and out.interrupts == {GUEST_A: 1}
    got, kicks = g.rx_burst()
    assert got == frames
    # the buffers went back on the ring unannounced: the port still had 14 of 64, and
    # turns kicks off while it has some (virtio 1.3 §2.7.10)
    assert not kicks.rx
    st = port.stats
    assert st["guest_packets"] == 50 and st["guest_bytes"] == sum(map(len, frames))


def test_rx_kicks_come_back_when_the_ring_runs_dry() -> None:
    h = Host(queue_size=16)
    g, port = h.a
    frames = [frame(60, i) for i in range(20)]
    port.rx_burst(frames)  # 16 placed, then the ring is dry: kicks on, 4 dropped
    assert port.stats["drop_no_buffer"] == 4
    got, kicks = g.rx_burst()
    assert len(got) == 16 and kicks.rx  # the refill that ends the drought is kicked
    port.rx_burst(frames[:3])
    got, kicks = g.rx_burst()
    assert len(got) == 3 and not kicks.rx  # 13 left: quiet again


def test_rx_arm_asks_for_a_kick_and_says_when_buffers_are_there() -> None:
    h = Host(queue_size=16)
    g, port = h.a
    port.rx_burst([frame(60, i) for i in range(4)])
    assert port.rx_arm()  # 12 buffers left: no need to wait
    got, kicks = g.rx_burst()
    assert len(got) == 4 and kicks.rx  # armed: the refill is kicked


def test_xdp_drop_drops_and_counts() -> None:
    h = Host()
    g, port = h.a
    port.attach(prog(DROP))
    out = port.rx_burst([frame(64, i) for i in range(100)])
    assert out.wire == [] and out.interrupts == {}
    assert g.rx_burst()[0] == []
    st = port.stats
    assert st["rx_packets"] == st["xdp_drop"] == 100 and st["guest_packets"] == 0


def test_xdp_tx_sends_the_rewritten_frame_back_to_the_wire() -> None:
    h = Host()
    g, port = h.a
    port.attach(prog(SWAP_TX))
    frames = [frame(64 + i, i) for i in range(20)]
    out = port.rx_burst(frames)
    assert out.wire == [f[6:12] + f[0:6] + f[12:] for f in frames]
    assert g.rx_burst()[0] == []
    assert port.stats["xdp_tx"] == port.stats["wire_packets"] == 20


def test_xdp_pass_and_drop_by_content_and_adjust_head() -> None:
    h = Host()
    g, port = h.a
    port.attach(prog(ODD_DROP))
    frames = [frame(60 + i, i) for i in range(30)]
    port.rx_burst(frames)
    assert g.rx_burst()[0] == [f for f in frames if len(f) % 2 == 0]
    port.attach(prog(HEAD_POP))
    port.rx_burst(frames[:3])
    assert g.rx_burst()[0] == [f[4:] for f in frames[:3]]
    st = port.stats
    assert st["xdp_drop"] == 15 and st["xdp_pass"] == 18


def test_engine_jit_runs_compiled_code_with_the_interpreters_results() -> None:
    """`attach(..., engine="jit")`: the port's runs call the compiled program, and every
    frame ends as on the interpreter (TX bytes, PASS and DROP by content, adjust_head,
    a fault counted as aborted)."""
    pytest.importorskip("vxdp.bpf.jit", exc_type=ImportError)
    from vxdp import native
    frames = [frame(60 + i, i) for i in range(30)]
    seen = []
    for engine in ("interp", "jit"):
        h = Host(queue_size=128)
        g, port = h.a
        out = []
        for text in (SWAP_TX, ODD_DROP, HEAD_POP, "ldxw %r0, [%r1+4096]\nexit"):
            port.attach(prog(text), engine=engine)
            assert native.prog_has_jit(port.handle.prog[0]) is (engine == "jit")
            out.append((port.rx_burst(frames).wire, g.rx_burst()[0]))
        fault = re.sub(r"0x[0-9a-f]+", "ADDR", port.last_fault())  # a host address
        seen.append((out, port.stats, fault))
    assert seen[0] == seen[1]
    (swapped, _), (_, odd), (_, popped), _ = seen[1][0]
    assert swapped == [f[6:12] + f[0:6] + f[12:] for f in frames]
    assert odd == [f for f in frames if len(f) % 2 == 0] and popped == [f[4:] for f in frames]
    assert seen[1][1]["xdp_fault"] == 30


def test_context_fields_are_the_ports_on_either_engine() -> None:
    """ingress_ifindex and rx_queue_index, which a compiled program's context takes once per
    burst, are the port's in every burst, on either port, on either engine."""
    pytest.importorskip("vxdp.bpf.jit", exc_type=ImportError)
    stamp = """
    ldxw %r2, [%r1+0]
    ldxw %r3, [%r1+4]
    mov %r4, %r2
    add %r4, 16
    jgt %r4, %r3, out
    ldxw %r5, [%r1+12]
    stxb [%r2+14], %r5
    ldxw %r5, [%r1+16]
    stxb [%r2+15], %r5
    out:
    mov %r0, 2
    exit
    """
    frames = [frame(60 + i, i) for i in range(5)]
    for engine in ("interp", "jit"):
        h = Host(guests=2)
        for port in h.ports:
            port.attach(prog(stamp), engine=engine)
        for _ in range(2):
            for g, port in zip(h.guests, h.ports):
                port.rx_burst(frames)
                got = g.rx_burst()[0]
                assert [f[14:16] for f in got] == [bytes([port.ifindex, 0])] * 5, engine
                assert [f[:14] + f[16:] for f in got] == [f[:14] + f[16:] for f in frames]


def test_an_engine_the_core_cannot_run_is_refused() -> None:
    _, port = Host().a
    with pytest.raises(UsageError, match="interp or jit, not 'kernel'"):
        port.attach(prog(DROP), engine="kernel")


def test_redirect_through_a_devmap_to_another_guest_and_to_the_wire() -> None:
    h = Host(guests=2)
    (ga, pa), (gb, _) = h.a, (h.guests[1], h.ports[1])
    devmap = MapSpec("ports", MapType.DEVMAP, 4, 4, 4)
    pa.attach(prog(REDIRECT, devmap))
    frames = [frame(70, i) for i in range(10)]
    # an empty slot falls back to the flags' action: PASS into guest A
    pa.rx_burst(frames[:2])
    assert ga.rx_burst()[0] == frames[:2]
    pa.maps[0].update(struct.pack("<I", 0), struct.pack("<I", GUEST_B))
    out = pa.rx_burst(frames)
    assert out.wire == [] and out.interrupts == {GUEST_B: 1}
    assert ga.rx_burst()[0] == []
    assert gb.rx_burst()[0] == frames
    pa.maps[0].update(struct.pack("<I", 0), struct.pack("<I", WIRE))
    assert pa.rx_burst(frames[:3]).wire == frames[:3]
    pa.maps[0].update(struct.pack("<I", 0), struct.pack("<I", 77))
    pa.rx_burst(frames[:4])
    st, stb = pa.stats, h.ports[1].stats
    assert st["xdp_redirect"] == 10 + 3 + 4 and st["drop_redirect"] == 4
    assert stb["redirect_in"] == stb["guest_packets"] == 10


def test_mergeable_rx_spans_buffers_and_reassembles() -> None:
    h = Host(V1 | MRG, rx_buffer_size=128)
    g, port = h.a
    frames = [frame(1000, 1), frame(60, 2), frame(3000, 3), frame(117, 4)]
    port.rx_burst(frames)
    got, _ = g.rx_burst()
    assert got == frames
    need = [-(-(12 + len(f)) // 128) for f in frames]
    assert port.stats["guest_buffers"] == sum(need)


def test_without_mrg_rxbuf_a_frame_larger_than_the_buffer_is_dropped() -> None:
    h = Host(V1, rx_buffer_size=256)
    g, port = h.a
    port.rx_burst([frame(200), frame(400), frame(244)])
    assert g.rx_burst()[0] == [frame(200), frame(244)]
    assert port.stats["drop_small_buffer"] == 1


def test_no_rx_buffers_drops_and_counts_then_recovers() -> None:
    h = Host(start=False, queue_size=8)
    g, port = h.a
    port.rx_burst([frame(64)] * 5)
    assert port.stats["drop_no_buffer"] == 5
    g.start()
    port.rx_burst([frame(64, i) for i in range(12)])
    assert port.stats["drop_no_buffer"] == 5 + 4  # 8 buffers for 12 frames
    assert len(g.rx_burst()[0]) == 8


def test_mtu_is_enforced_on_receive() -> None:
    h = Host(V1 | MTU, mtu=100)
    g, port = h.a
    port.rx_burst([frame(114), frame(115)])
    assert g.rx_burst()[0] == [frame(114)]
    assert port.stats["drop_mtu"] == 1


def test_a_hostile_rx_ring_breaks_that_queue_only() -> None:
    h = Host()
    g, port = h.a
    rx_desc = g.setup_requests()[0].desc
    h.mem.write_u64(rx_desc + 16 * 0, 0xDEAD_0000)  # descriptor 0's buffer address
    port.rx_burst([frame(64)] * 3)
    broken = port.broken()
    assert set(broken) == {"rx"}
    assert isinstance(broken["rx"], MemoryAccessError) and broken["rx"].clause == "2.7.5"
    assert port.stats["drop_ring_broken"] == 3
    # the tx queue keeps serving
    g.tx_burst([frame(80)])
    assert port.tx_burst().wire == [frame(80)]


def test_rx_prefetch_ahead_trusts_nothing_it_reads() -> None:
    """The receive queue prefetches the buffers of the chains published ahead of the next
    pop (csrc/vring.c vq_prefetch): a hostile entry there (a head past the queue, a
    buffer outside guest memory, an indirect flag without the feature) costs nothing
    until that chain is popped, and then breaks the ring as it always did."""
    h = Host(queue_size=64)
    g, port = h.a
    rx = g.setup_requests()[0]

    def head(slot: int) -> int:
        return h.mem.read_u16(rx.driver + 4 + 2 * slot)

    h.mem.write_u16(rx.desc + 16 * head(12) + 12, 2 | 4)  # WRITE | INDIRECT
    h.mem.write_u64(rx.desc + 16 * head(8), 0xDEAD_0000)  # outside guest memory
    h.mem.write_u16(rx.driver + 4 + 2 * 10, 9999)  # a head past the queue
    frames = [frame(60, i) for i in range(8)]
    for i in range(0, 8, 2):  # chains 8 to 12 are within reach of every one of these
        port.rx_burst(frames[i:i + 2])
        assert port.broken() == {}
    assert g.rx_burst()[0] == frames
    port.rx_burst([frame(61)])
    broken = port.broken()
    assert set(broken) == {"rx"}
    assert isinstance(broken["rx"], MemoryAccessError) and broken["rx"].clause == "2.7.5"
    assert port.stats["guest_packets"] == 8 and port.stats["drop_ring_broken"] == 1


def test_counters_add_up() -> None:
    h = Host(guests=2, queue_size=16)
    _, port = h.a
    port.attach(prog(ODD_DROP))
    frames = [frame(60 + (i % 9), i) for i in range(200)]
    port.rx_burst(frames)
    st = port.stats
    actions = sum(st[k] for k in ("xdp_aborted", "xdp_drop", "xdp_pass", "xdp_tx",
                                  "xdp_redirect"))
    assert st["rx_packets"] == actions == 200
    assert st["xdp_pass"] == st["guest_packets"] + st["drop_no_buffer"]
    assert st["guest_packets"] == 16  # a ring of 16, never refilled in between
    assert st["rx_bytes"] == sum(map(len, frames))


def test_a_faulting_program_counts_as_aborted() -> None:
    h = Host()
    _, port = h.a
    port.attach(prog("ldxw %r0, [%r1+4096]\nexit"))
    port.rx_burst([frame(64)] * 3)
    st = port.stats
    assert st["xdp_aborted"] == st["xdp_fault"] == 3
    assert "pc 0" in port.last_fault()


def test_queues_taken_from_a_live_device_and_handed_back() -> None:
    from guest.events import FrameReceived
    from vxdp.pair import Pair
    p = Pair.create(queue_size=16)
    assert p.negotiate()
    first = [frame(64, i) for i in range(3)]
    assert p.send_from_guest(first) == first  # the Python engines move the indices
    assert p.deliver_to_guest(first) == first
    switch = HostSwitch(WIRE)
    port = HostPort.from_device(switch, GUEST_A, p.device)
    # guest -> wire through C
    frames = [frame(70, i) for i in range(5)]
    p.driver.transmit(frames)
    p.pump()
    assert p.wire == first  # the device ignored the kick: C owns the queue
    assert port.tx_burst().wire == frames
    # wire -> guest through C
    dst = p.driver.mac + frame(70)[6:]
    port.rx_burst([dst])
    p.driver.interrupt(0)
    got = [e.frame for e in p.driver.events() if isinstance(e, FrameReceived)]
    assert got == [dst]
    # and back to the Python engines, which continue at C's indices
    port.hand_back()
    assert p.send_from_guest([frame(90)]) == [frame(90)]
    assert p.deliver_to_guest([dst]) == [dst]


@pytest.mark.parametrize("features", [V1, V1 | EVENT_IDX, V1 | MRG | EVENT_IDX])
def test_many_bursts_keep_both_sides_in_step(features: int) -> None:
    h = Host(features, queue_size=32, rx_buffer_size=256 if features & MRG else None)
    g, port = h.a
    got: list[bytes] = []
    sent: list[bytes] = []
    for r in range(40):
        burst = [frame(60 + (r * 13 + i * 7) % 400, r + i) for i in range(r % 9 + 1)]
        sent += burst
        port.rx_burst(burst)
        got += g.rx_burst()[0]
    assert got == sent
    assert port.stats["drop_no_buffer"] == 0


def test_bench_workloads_take_the_paths_they_name() -> None:
    """`vxdp bench`'s datapath figures: every frame of every workload is accounted for by
    the counter of its path (the bench raises otherwise); timings are never asserted."""
    from vxdp.bench_datapath import CASES, run
    from vxdp.bpf.clang import clang_unavailable
    why = clang_unavailable()
    if why:
        pytest.skip(why)
    report = run(bursts=(32,), frames=256, rounds=1)
    engines = ["interp"] if report.jit is not None else ["interp", "jit"]
    for engine in engines:  # the jit's figures come from ports running compiled code
        assert [f.workload for f in report.figures if f.engine == engine] == \
            [c[0] for c in CASES]
    assert all(f.mpps > 0 for f in report.figures)
    assert set(report.ratios()) == {"drop", "tx"}
    assert len(report.jit_speedups()) == (len(CASES) if report.jit is None else 0)


def test_mergeable_chains_taken_for_a_frame_that_did_not_fit_serve_the_next() -> None:
    h = Host(V1 | MRG, queue_size=8, rx_buffer_size=128)
    g, port = h.a
    port.rx_burst([frame(2000)])  # needs 16 buffers, the ring has 8: all 8 are held
    st = port.stats
    assert st["drop_no_buffer"] == 1 and st["guest_buffers"] == 0
    small = [frame(60, 1), frame(200, 2), frame(100, 3)]
    port.rx_burst(small)  # served from the held chains: 1 + 2 + 1 buffers
    assert g.rx_burst()[0] == small
    assert port.stats["guest_buffers"] == 4


def test_a_frame_spanning_more_buffers_than_allowed_gives_them_back() -> None:
    h = Host(V1 | MRG, queue_size=128, rx_buffer_size=64)
    g, port = h.a
    port.rx_burst([frame(9000)])  # 9012 bytes in 64-byte buffers: 141 > 64 buffers
    assert port.stats["drop_fragmented"] == 1
    got, _ = g.rx_burst()
    assert got == [] and g.stats["drop_bad_len"] == 65  # returned empty, reposted
    port.rx_burst([frame(300, 9)])
    assert g.rx_burst()[0] == [frame(300, 9)]


def test_tx_headers_breaking_5_1_6_2_1_are_dropped_and_the_chain_returned() -> None:
    """Except num_buffers, which means nothing on transmit: counted, the frame sent (the
    Python device does the same: tests/host/test_device.py)."""
    from virtio_spec.testing import MockSplitQueue
    mem = guest_memory(size=1 << 20)
    alloc = GuestAllocator(mem)
    txq = MockSplitQueue(mem, 16, allocator=alloc)
    port = HostPort(HostSwitch(WIRE), GUEST_A, mem, None,
                    QueueConfig(16, *txq.addresses), V1)

    def hdr(flags: int = 0, gso: int = 0, num_buffers: int = 0) -> bytes:
        return struct.pack("<BBHHHHH", flags, gso, 0, 0, 0, 0, num_buffers)

    good = frame(64)
    heads = [txq.add_chain([hdr(), good]),                  # fine, split over two buffers
             txq.add_chain([hdr(num_buffers=1) + good]),    # should be 0: counted, sent
             txq.add_chain([hdr(flags=1) + good]),          # NEEDS_CSUM without CSUM
             txq.add_chain([hdr(flags=2) + good]),          # DATA_VALID
             txq.add_chain([hdr(gso=1) + good]),            # TSO4 not negotiated
             txq.add_chain([hdr()]),                        # no frame
             txq.add_chain([b"short"])]                     # no header
    assert port.tx_burst().wire == [good, good]
    st = port.stats
    assert st["tx_packets"] == 2 and st["drop_tx_header"] == 5
    assert st["tx_num_buffers"] == 1
    assert [u.id for u in txq.used()] == heads and port.rx_burst([good]).wire == []


@pytest.mark.parametrize("cuts", [(), (12,), (5,), (15,), (19,), (20,), (40,), (12, 13, 50),
                                  (30, 60)])
def test_a_transmit_chain_is_read_whatever_its_buffers(cuts: tuple[int, ...]) -> None:
    """Header and frame read the same whether one buffer holds them (the usual layout,
    read without a loop), the header alone is in the first, or both straddle buffers."""
    from virtio_spec.testing import MockSplitQueue
    mem = guest_memory(size=1 << 20)
    txq = MockSplitQueue(mem, 16, allocator=GuestAllocator(mem))
    port = HostPort(HostSwitch(WIRE), GUEST_A, mem, None,
                    QueueConfig(16, *txq.addresses), V1)
    good = frame(64)
    for num_buffers in (0, 1):
        chain = struct.pack("<BBHHHHH", 0, 0, 0, 0, 0, 0, num_buffers) + good
        edges = [0, *cuts, len(chain)]
        txq.add_chain([chain[a:b] for a, b in itertools.pairwise(edges)])
    assert port.tx_burst().wire == [good, good]
    assert (port.stats["tx_packets"], port.stats["tx_num_buffers"]) == (2, 1)


def test_transmit_chains_come_back_in_order_in_groups_and_on_a_full_wire() -> None:
    """A burst returns its chains to the driver 32 at a time (csrc/datapath.c,
    DP_TX_USED_BATCH): every one once, in the order taken, len 0; a chain the wire burst
    had no room for is put back and taken by the next burst."""
    from virtio_spec.testing import MockSplitQueue
    mem = guest_memory(size=8 << 20)
    txq = MockSplitQueue(mem, 64, allocator=GuestAllocator(mem))
    port = HostPort(HostSwitch(WIRE), GUEST_A, mem, None,
                    QueueConfig(64, *txq.addresses), V1)
    frames = [frame(1000, k) for k in range(40)]
    heads = [txq.add_chain([bytes(12) + f]) for f in frames]
    wire = native.Burst(64, 34 * 1000 + 999)  # room for 34 of them
    assert native.port_tx_burst(port.handle, 256, wire) == 34
    used = txq.used()
    assert list(wire.packed()) == frames[:34] and port.tx_pending() == 6
    assert [u.id for u in used] == heads[:34] and all(u.data == b"" for u in used)
    wire.clear()
    assert native.port_tx_burst(port.handle, 256, wire) == 6
    assert list(wire.packed()) == frames[34:]
    assert [u.id for u in txq.used()] == heads[34:]


def test_event_idx_suppresses_interrupts_until_the_guest_catches_up() -> None:
    h = Host(V1 | EVENT_IDX)
    g, port = h.a
    assert port.rx_burst([frame(64)]).interrupts == {GUEST_A: 1}
    # the guest has not reaped: used_event still names the first element, long passed
    assert port.rx_burst([frame(64)]).interrupts == {}
    assert len(g.rx_burst()[0]) == 2  # reaping moves used_event to the next element
    assert port.rx_burst([frame(64)]).interrupts == {GUEST_A: 1}
    st = port.stats
    assert (st["irq_sent"], st["irq_suppressed"]) == (2, 1)


def test_oversize_frames_count_by_direction() -> None:
    """A transmit chain past the largest frame counts as drop_tx_oversize (the stats file
    adds it to the tx drops), a wire frame past what XDP can hold as drop_oversize."""
    from virtio_spec.testing import MockSplitQueue
    mem = guest_memory(size=1 << 20)
    alloc = GuestAllocator(mem)
    txq = MockSplitQueue(mem, 16, allocator=alloc)
    port = HostPort(HostSwitch(WIRE), GUEST_A, mem, None,
                    QueueConfig(16, *txq.addresses), V1)
    hdr = bytes(12)
    txq.add_chain([hdr + bytes(40000), bytes(40000)])  # 80000 bytes of frame
    txq.add_chain([hdr + frame(64)])
    assert port.tx_burst().wire == [frame(64)]
    port.attach(prog(DROP))
    port.rx_burst([frame(5000)])
    st = port.stats
    assert (st["drop_tx_oversize"], st["drop_oversize"], st["tx_packets"]) == (1, 1, 1)
