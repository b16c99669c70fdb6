"""Static stack liveness: what pruning may ignore, and when it must not ignore anything."""

from __future__ import annotations

from vxdp.bpf.asm import assemble
from vxdp.bpf.verifier.stacklive import ALL, live_slots


def slots(text: str) -> dict[int, int]:
    return live_slots(assemble(text))


def test_direct_reads_and_whole_slot_writes() -> None:
    live = slots("stdw [%r10-8], 1\nstdw [%r10-16], 2\nldxdw %r0, [%r10-8]\nexit\n")
    assert live[2] == 0b01  # before the load only fp-8 is read
    assert live[1] == 0b01  # fp-16 is written and never read
    assert live[0] == 0b00  # the store kills fp-8
    live = slots("stw [%r10-8], 1\nldxdw %r0, [%r10-8]\nexit\n")
    assert live[0] == 0b01  # a 4-byte store leaves the slot's other half live


def test_helpers_read_from_the_pointer_up() -> None:
    live = slots("mov %r2, %r10\nadd %r2, -16\nlddw %r1, map_fd(0)\ncall 1\n"
                 "mov %r0, 0\nexit\n")
    assert live[2] == 0b11  # fp-16 .. fp-1: both slots may be read by the helper


def test_unknown_offsets_read_everything() -> None:
    live = slots("ldxw %r2, [%r1+16]\nand %r2, 7\nmov %r3, %r10\nadd %r3, -16\n"
                 "add %r3, %r2\nldxb %r0, [%r3+0]\nexit\n")
    assert live[5] == ALL


def test_an_escaped_frame_address_disables_liveness() -> None:
    live = slots("mov %r3, %r10\nadd %r3, -16\nstxdw [%r10-24], %r3\nmov %r0, 0\nexit\n")
    assert all(mask == ALL for mask in live.values())
