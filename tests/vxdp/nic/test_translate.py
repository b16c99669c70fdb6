"""The SmartNIC's translator: what each BPF instruction becomes on VXME-32, and what it
refuses (with its errno and the pc) even where the device's verifier accepted."""

from __future__ import annotations

import errno as E

import pytest
from hypothesis import given
from hypothesis import strategies as st

import virtio_spec.offload as O
from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.nic import CODE_STORE, FIRMWARE_HELPERS, LM_STACK, MACHINE, Word, translate
from vxdp.bpf.nic.machine import Op
from vxdp.bpf.nic.translate import check_map, words_of
from vxdp.bpf.profiles import NATIVE
from vxdp.bpf.program import MapSpec, MapType, Program
from vxdp.bpf.verifier import verify
from vxdp.errors import TranslationRefused

COUNTER = MapSpec("cnt", MapType.ARRAY, 4, 8, 4)
PKT = "ldxw %r2, [%r1+0]\nldxw %r3, [%r1+4]\nmov %r4, %r2\nadd %r4, 64\njgt %r4, %r3, out\n"


def program(text: str, maps: tuple[MapSpec, ...] = (COUNTER,)) -> Program:
    return Program("p", "xdp", encode(assemble(text)), maps)


def asm_of(text: str, pc: int) -> list[str]:
    """The machine instructions BPF instruction `pc` of `text` became."""
    image = translate(program(text))
    (span,) = [s for s in image.spans if s.pc == pc]
    return [image.words[a].text() for a in range(span.first, span.first + span.count)]


def refusal(text: str, maps: tuple[MapSpec, ...] = (COUNTER,)) -> TranslationRefused:
    with pytest.raises(TranslationRefused) as info:
        translate(program(text, maps))
    return info.value


# ------------------------------------------------------------------- the mapping

MAPPING = [
    # 64-bit arithmetic on register pairs, the carry from the low word into the high
    ("mov %r1, 5\nmov %r2, 6\nadd %r1, %r2\nmov %r0, 2\nexit", 2,
     ["add r1l, r1l, r2l", "addc r1h, r1h, r2h"]),
    ("mov %r1, 5\nsub %r1, -3\nmov %r0, 2\nexit", 1,
     ["sub r1l, r1l, #0xfffffffd", "subc r1h, r1h, #0xffffffff"]),
    # 32-bit results clear the high word, as BPF's ALU32 zero-extends
    ("mov %r1, 5\nadd32 %r1, 7\nmov %r0, 2\nexit", 1, ["add r1l, r1l, #0x7", "mov r1h, #0x0"]),
    ("mov %r1, 5\nlsh %r1, 40\nmov %r0, 2\nexit", 1, ["shl r1h, r1l, #0x8", "mov r1l, #0x0"]),
    ("mov %r1, 5\narsh %r1, 36\nmov %r0, 2\nexit", 1,
     ["asr r1l, r1h, #0x4", "asr r1h, r1h, #0x1f"]),
    # division by a constant: a shift for a power of two, a reciprocal for the rest
    ("mov %r1, 50\ndiv32 %r1, 8\nmov %r0, 2\nexit", 1, ["shr r1l, r1l, #0x3", "mov r1h, #0x0"]),
    ("mov %r1, 50\ndiv32 %r1, 7\nmov %r0, 2\nexit", 1,
     ["mulhu t0, r1l, #0x24924925", "sub t1, r1l, t0", "shr t1, t1, #0x1", "add t1, t1, t0",
      "shr r1l, t1, #0x2", "mov r1h, #0x0"]),
    # compares are subtractions and flag branches; a > b is b - a borrowing
    ("mov %r1, 5\nmov %r2, 6\njgt %r1, %r2, +1\nmov %r0, 1\nmov %r0, 2\nexit", 2,
     ["sub t0, r2l, r1l", "subc t1, r2h, r1h", "br.lo @0x000d"]),
    ("mov %r1, 5\njeq32 %r1, 9, +1\nmov %r0, 1\nmov %r0, 2\nexit", 1,
     ["xor t0, r1l, #0x9", "br.eq @0x000a"]),
    ("mov %r1, 5\njne %r1, 0, +1\nmov %r0, 1\nmov %r0, 2\nexit", 1,  # a test for zero
     ["or t0, r1l, r1h", "br.ne @0x000a"]),
    # the context is the packet vector; the stack is local memory; the packet its own
    ("ldxw %r2, [%r1+4]\nmov %r0, 2\nexit", 0, ["rdpv r2l, data_end", "mov r2h, #0x0"]),
    ("stdw [%r10-8], 7\nmov %r0, 2\nexit", 0,
     ["mov t0, #0x7", "mov t1, #0x0", "st.lm.8 [r10l - 8], t0:t1"]),
    (PKT + "ldxh %r5, [%r2+12]\nout:\nmov %r0, 2\nexit", 5,
     ["ld.pkt.2 r5l, [r2l + 12]", "mov r5h, #0x0"]),
    ("mov %r1, 0x1234\nbe16 %r1\nmov %r0, 2\nexit", 1, ["bswap.16 r1l, r1l", "mov r1h, #0x0"]),
    # maps: a relocation the firmware resolves, helpers firmware calls, atomics in EMEM
    ("lddw %r1, map_fd(0)\nmov %r0, 2\nexit", 0, ["ldmap r1l, map#0", "mov r1h, #0x0"]),
    ("stw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4\nlddw %r1, map_fd(0)\ncall 1\n"
     "jeq %r0, 0, +2\nmov %r1, 1\nlock add [%r0+0], %r1\nmov %r0, 2\nexit", 8,
     ["atadd.emem.8 [r0l + 0], r1l:r1h"]),
    ("stw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4\nlddw %r1, map_fd(0)\ncall 1\n"
     "mov %r0, 2\nexit", 5, ["call fw.map_lookup_elem"]),
]


@pytest.mark.parametrize(("text", "pc", "want"), MAPPING, ids=lambda v: str(v)[:30])
def test_each_instruction_maps_onto_the_machine(text: str, pc: int, want: list[str]) -> None:
    assert asm_of(text, pc) == want


def test_the_image_starts_with_the_prologue_and_skips_dead_code() -> None:
    image = translate(program("ja +1\nmov %r0, 1\nmov %r0, 2\nexit"))
    prologue, ja, dead, mov, end = image.spans
    assert prologue.pc == -1 and [image.words[a].text() for a in range(prologue.count)] == [
        "mov r1l, #0xc70000", "mov r1h, #0x0", f"mov r10l, #{LM_STACK:#x}", "mov r10h, #0x0"]
    assert dead.pc == 1 and dead.count == 0 and "dead code" in dead.bpf
    assert image.words[ja.first].text() == f"br @{mov.first:#06x}"
    assert image.words[end.first].op is Op.EXIT
    assert image.machine == MACHINE and image.size == 8 * len(image.words)
    assert words_of(image.to_bytes()) == image.words


@given(st.sampled_from(list(Op)), st.integers(0, 31), st.integers(0, 31), st.integers(0, 31),
       st.booleans(), st.integers(0, 255), st.integers(0, 2**32 - 1))
def test_words_round_trip_through_their_encoding(op: Op, d: int, a: int, b: int, i: bool,
                                                 x: int, imm: int) -> None:
    w = Word(op, d, a, b, i, x, imm)
    assert Word.decode(w.encode()) == w
    assert w.to_bytes() == w.encode().to_bytes(8, "little")


def test_the_firmware_helpers_are_what_the_smartnic_profile_advertises() -> None:
    """One set of helpers, kept in step across the layers by test (vxdp.bpf imports no
    virtio_spec)."""
    assert set(FIRMWARE_HELPERS) == O.SMARTNIC.helper_ids
    assert O.SMARTNIC.map_type_ids == {int(MapType.HASH), int(MapType.ARRAY)}


# ------------------------------------------------------------------- refusals

MAP_LOOKUP = "stw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4\nlddw %r1, map_fd(0)\ncall 1\n"
REFUSALS = [
    # (program, pc, errno, what the refusal says) ; the verifier takes every one of these
    ("mov %r1, 5\nmod32 %r1, 3\nmov %r0, 2\nexit", 1, E.EOPNOTSUPP, "modulo has no mapping"),
    ("mov %r1, 5\ndiv %r1, 3\nmov %r0, 2\nexit", 1, E.EOPNOTSUPP, "64-bit division"),
    ("mov %r1, 5\nmov %r2, 3\ndiv32 %r1, %r2\nmov %r0, 2\nexit", 2, E.EOPNOTSUPP,
     "divisor is not constant"),
    ("mov %r1, 5\nsdiv32 %r1, 3\nmov %r0, 2\nexit", 1, E.EOPNOTSUPP, "signed division (cpu v4)"),
    ("mov %r1, 5\nmovsx832 %r1, %r1\nmov %r0, 2\nexit", 1, E.EOPNOTSUPP,
     "sign-extending move (cpu v4)"),
    ("mov %r1, 5\nbswap16 %r1\nmov %r0, 2\nexit", 1, E.EOPNOTSUPP, "bswap (cpu v4)"),
    ("ja32 +0\nmov %r0, 2\nexit", 0, E.EOPNOTSUPP, "gotol (cpu v4)"),
    ("call local f\nmov %r0, 2\nexit\nf:\nmov %r0, 1\nexit", 0, E.EOPNOTSUPP,
     "bpf-to-bpf calls have no mapping"),
    ("call 5\nmov %r0, 2\nexit", 0, E.EOPNOTSUPP,
     "unsupported function id: 5 (bpf_ktime_get_ns)"),
    (MAP_LOOKUP + "jeq %r0, 0, +1\nstdw [%r0+0], 1\nmov %r0, 2\nexit", 7, E.EOPNOTSUPP,
     "map writes not supported"),
    (MAP_LOOKUP + "jeq %r0, 0, +2\nmov %r1, 1\nlock or [%r0+0], %r1\nmov %r0, 2\nexit", 8,
     E.EOPNOTSUPP, "atomic op not implemented: or"),
    ("stdw [%r10-8], 0\nmov %r1, 1\nlock add [%r10-8], %r1\nmov %r0, 2\nexit", 2,
     E.EOPNOTSUPP, "atomic add not to a map value pointer"),
    ("ldxw %r2, [%r1+16]\nand %r2, 7\nmov %r3, %r10\nadd %r3, -16\nadd %r3, %r2\n"
     "stb [%r3+0], 1\nmov %r0, 2\nexit", 5, E.EOPNOTSUPP, "variable ptr stack access"),
    ("stdw [%r10-304], 1\nmov %r0, 2\nexit", 0, E.EOPNOTSUPP,
     f"stack too large: program 304B > NIC stack {LM_STACK}B"),
    (PKT + "stxdw [%r2+0], %r2\nout:\nmov %r0, 2\nexit", 5, E.EOPNOTSUPP,
     "pkt pointer stored into the packet"),
    (PKT + "jgt %r2, 1000, out\nout:\nmov %r0, 2\nexit", 5, E.EOPNOTSUPP,
     "comparison of a pkt pointer with a scalar"),
    (PKT + "mov %r5, %r10\nadd %r5, -8\nstdw [%r10-8], 0\njeq %r3, 0, +1\nmov %r5, %r2\n"
     "ldxb %r0, [%r5+0]\nout:\nmov %r0, 2\nexit", 10, E.EOPNOTSUPP,
     "ptr type changed for instruction"),
    (PKT + "mov %r6, %r2\nlddw %r1, map_fd(0)\nmov %r2, %r6\ncall 1\nout:\nmov %r0, 2\nexit", 9,
     E.EOPNOTSUPP, "map_lookup: unsupported ptr type pkt"),
    ("stw [%r1+16], 1\nmov %r0, 2\nexit", 0, E.EOPNOTSUPP, "unsupported store to context field"),
    (PKT + "stxdw [%r10-8], %r2\nldxw %r0, [%r10-8]\nout:\nmov %r0, 2\nexit", 6, E.EOPNOTSUPP,
     "partial read of a spilled pkt pointer"),
    ("ldabsb 12\nmov %r0, 2\nexit", 0, E.EOPNOTSUPP, "legacy packet loads"),
]


@pytest.mark.parametrize(("text", "pc", "errno", "says"), REFUSALS,
                         ids=[r[3].split(":")[0][:40] for r in REFUSALS])
def test_the_nic_refuses_what_it_has_no_mapping_for(text: str, pc: int, errno: int,
                                                    says: str) -> None:
    exc = refusal(text)
    assert (exc.pc, exc.errno) == (pc, errno)
    assert str(exc).startswith(f"pc {pc}: (") and says in str(exc)


@pytest.mark.parametrize("text", [REFUSALS[0][0], REFUSALS[9][0], REFUSALS[11][0],
                                  REFUSALS[13][0], REFUSALS[16][0]])
def test_the_nic_refuses_programs_its_verifier_accepts(text: str) -> None:
    """The NIC's "no" is its own: the device's verifier (smartnic profile) takes these."""
    assert verify(program(text), profile=O.SMARTNIC).accepted
    refusal(text)


def test_an_image_past_the_code_store_is_refused_with_e2big() -> None:
    """2,000 64-bit multiplies fit the smartnic profile's 2800 insns, not the code store:
    each becomes six machine instructions."""
    text = "mov %r1, 3\n" + "mul %r1, %r1\n" * 2000 + "mov %r0, 2\nexit"
    assert verify(program(text), profile=O.SMARTNIC).accepted
    exc = refusal(text)
    assert exc.errno == E.E2BIG and f"code store of {CODE_STORE} instructions" in str(exc)
    assert len(asm_of("mov %r1, 3\nmul %r1, %r1\nmov %r0, 2\nexit", 1)) == 6
    # the prologue's 4 words and mov's 2, then 6 a multiply: refused where it overflows
    assert exc.pc == next(pc for pc in range(1, 2001) if 4 + 2 + 6 * pc > CODE_STORE)


@pytest.mark.parametrize(("spec", "errno", "says"), [
    (MapSpec("big", MapType.HASH, 8, 64, 4), E.ENOMEM, "map elements too large: 72B"),
    (MapSpec("lru", MapType.LRU_HASH, 4, 8, 4), E.EOPNOTSUPP, "map type LRU_HASH"),
    (MapSpec("ro", MapType.ARRAY, 4, 8, 1, flags=0x80), E.EINVAL, "map flags 0x80"),
])
def test_the_nic_checks_its_maps(spec: MapSpec, errno: int, says: str) -> None:
    with pytest.raises(TranslationRefused) as info:
        check_map(spec)
    assert info.value.errno == errno and says in str(info.value)
    exc = refusal("lddw %r1, map_fd(0)\nmov %r0, 2\nexit", (spec,))
    assert (exc.pc, exc.errno) == (0, errno) and says in str(exc)
    check_map(MapSpec("fits", MapType.HASH, 8, 56, 4))  # 8 + 56: the most a NIC holds


def test_programs_the_host_would_run_are_refused_only_for_what_the_nic_lacks() -> None:
    """The same helper is fine on the host (native) and refused by the NIC's firmware."""
    text = "call 5\nmov %r0, 2\nexit"
    assert verify(program(text, ()), profile=NATIVE).accepted
    assert "unsupported function id" in str(refusal(text, ()))
