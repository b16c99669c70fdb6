"""The guest port: driver-mode XDP over the C datapath, against a host port.

The guest's own program sees every frame the device delivered: DROP, TX (re-posted on the
guest's tx ring, so it reaches the host's wire), PASS (handed up).  A hostile device that
reports ids or lengths it never had is refused with the clause virtio_spec cites.
"""

from __future__ import annotations

import struct

import pytest

from guest.datapath import GuestPort, Kicks
from host.datapath import HostPort, HostSwitch, QueueConfig
from virtio_spec.features import VirtioFeature, VirtioNetFeature
from virtio_spec.testing import GuestAllocator, guest_memory
from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.program import Program

V1 = 1 << VirtioFeature.VIRTIO_F_VERSION_1
MRG = 1 << VirtioNetFeature.VIRTIO_NET_F_MRG_RXBUF

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


def prog(text: str) -> Program:
    return Program("t", "xdp", encode(assemble(text)))


def frame(n: int, tag: int = 0) -> bytes:
    return bytes.fromhex("02aabbccdd01" "02aabbccdd02" "0800") + \
        bytes((tag + i) & 0xFF for i in range(n - 14))


def setup(features: int = V1, **kw: int) -> tuple[GuestPort, HostPort]:
    mem = guest_memory(size=4 << 20)
    g = GuestPort(mem, GuestAllocator(mem), features, queue_size=32, **kw)
    rx, tx = g.setup_requests()
    port = HostPort(HostSwitch(1), 10, mem, QueueConfig(rx.size, rx.desc, rx.driver, rx.device),
                    QueueConfig(tx.size, tx.desc, tx.driver, tx.device), features)
    assert g.start() == Kicks(rx=True)
    return g, port


def test_driver_mode_xdp_on_the_jit_engine() -> None:
    """`attach(..., engine="jit")`: the guest port runs the compiled program, with the
    interpreter's results (TX back out through the device, PASS up to the stack)."""
    pytest.importorskip("vxdp.bpf.jit", exc_type=ImportError)
    from vxdp import native
    frames = [frame(60 + i, i) for i in range(20)]
    seen = []
    for engine in ("interp", "jit"):
        g, port = setup()
        got = []
        for text in (SWAP_TX, "mov %r0, 2\nexit"):
            g.attach(prog(text), engine=engine)
            assert native.prog_has_jit(g.handle.prog[0]) is (engine == "jit")
            port.rx_burst(frames)
            up, _ = g.rx_burst()
            got.append((list(up), port.tx_burst().wire))
        seen.append(got)
    assert seen[0] == seen[1]
    (up, wire), (passed, _) = seen[1]
    assert up == [] and wire == [f[6:12] + f[0:6] + f[12:] for f in frames]
    assert passed == frames


def test_driver_mode_drop() -> None:
    g, port = setup()
    g.attach(prog("mov %r0, 1\nexit"))
    port.rx_burst([frame(64, i) for i in range(20)])
    got, kicks = g.rx_burst()
    # refilled unannounced: the device still has buffers and turns kicks off meanwhile
    assert got == [] and not kicks.rx and not kicks.tx
    st = g.stats
    assert st["rx_packets"] == st["xdp_drop"] == 20 and st["pass_packets"] == 0


def test_driver_mode_tx_goes_back_out_through_the_host() -> None:
    g, port = setup()
    g.attach(prog(SWAP_TX))
    frames = [frame(64 + i, i) for i in range(10)]
    port.rx_burst(frames)
    got, kicks = g.rx_burst()
    assert got == [] and kicks.tx
    assert port.tx_burst().wire == [f[6:12] + f[0:6] + f[12:] for f in frames]
    assert g.stats["xdp_tx"] == g.stats["tx_packets"] == 10


def test_driver_mode_pass_and_redirect() -> None:
    g, port = setup()
    g.attach(prog("mov %r0, 2\nexit"))
    frames = [frame(100, i) for i in range(5)]
    port.rx_burst(frames)
    assert g.rx_burst()[0] == frames
    g.attach(prog("mov %r1, 5\nmov %r2, 0\ncall 23\nexit"))  # bpf_redirect(5, 0)
    port.rx_burst(frames)
    assert g.rx_burst()[0] == []
    assert g.stats["xdp_redirect"] == g.stats["drop_redirect"] == 5


def test_driver_mode_runs_on_merged_frames() -> None:
    g, port = setup(V1 | MRG, rx_buffer_size=128)
    g.attach(prog("mov %r0, 2\nexit"))
    frames = [frame(900, 1), frame(64, 2), frame(2000, 3)]
    port.rx_burst(frames)
    assert g.rx_burst()[0] == frames


def test_refill_keeps_the_ring_full_across_many_bursts() -> None:
    g, port = setup()
    sent, got = [], []
    for r in range(30):
        burst = [frame(64 + r, r + i) for i in range(20)]
        sent += burst
        port.rx_burst(burst)
        got += g.rx_burst()[0]
    assert got == sent
    assert g.stats["rx_refilled"] == 32 + 600


def test_hostile_device_used_id_not_in_flight_breaks_the_ring() -> None:
    g, port = setup()
    rx = g.setup_requests()[0]
    used = rx.device
    g.memory.write_u32(used + 4, 31 + 1000)  # used.ring[0].id: never posted
    g.memory.write_u32(used + 8, 64)
    g.memory.write_u16(used + 2, 1)  # used.idx
    assert g.rx_burst()[0] == []
    broken = g.broken()
    assert set(broken) == {0} and broken[0].clause == "2.7.8"
    # the tx queue still serves
    assert g.tx_burst([frame(64)])[0] == 1
    assert port.tx_burst().wire == [frame(64)]


def test_hostile_device_length_past_the_buffer_drops_the_frame() -> None:
    g, port = setup(rx_buffer_size=256)
    port.rx_burst([frame(64)])
    used = g.setup_requests()[0].device
    g.memory.write_u32(used + 8, 4096)  # used.ring[0].len past the 256-byte buffer
    assert g.rx_burst()[0] == []
    assert g.stats["drop_overrun"] == 1
    port.rx_burst([frame(65)])
    assert g.rx_burst()[0] == [frame(65)]


def test_hostile_device_num_buffers_past_what_was_used_drops_the_frame() -> None:
    g, port = setup(V1 | MRG, rx_buffer_size=512)
    port.rx_burst([frame(100)])
    used = g.setup_requests()[0].device
    head = g.memory.read_u32(used + 4)
    desc = g.setup_requests()[0].desc
    buf = g.memory.read_u64(desc + 16 * head)
    g.memory.write(buf + 10, struct.pack("<H", 3))  # claims 3 buffers, 1 was used
    assert g.rx_burst()[0] == []
    assert g.stats["drop_bad_num_buffers"] == 1
