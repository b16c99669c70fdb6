"""`cfg.Flow` sweeps the program once, on the opcode; the one-instruction functions of
vxdp.bpf.isa and cfg.successors are the reference it must agree with, on every program
of the corpus (well-formed or not) and on fuzz programs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from tests.fuzz.gen import MAPS, generate
from tests.vxdp.verifier.test_corpus import build, corpus
from vxdp.bpf.asm import assemble
from vxdp.bpf.clang import clang_unavailable
from vxdp.bpf.helpers import CALLBACK_HELPER_IDS
from vxdp.bpf.isa import (
    Insn,
    decode,
    encode,
    is_helper_call,
    is_jump,
    is_pseudo_call,
    is_pseudo_func,
    is_unconditional_jump,
    iter_insns,
    jump_target,
)
from vxdp.bpf.program import Program
from vxdp.bpf.verifier import cfg


def _programs() -> Iterator[Program]:
    for case in corpus()["cases"]:
        if "asm" in case or not clang_unavailable():
            yield build(case)
    for seed in range(300):
        yield Program(f"fuzz{seed}", "xdp", encode(assemble(generate(seed))), MAPS)


def _reference_points(insns: Sequence[Insn], flow: cfg.Flow) -> set[int]:
    """cfg.prune_points as it was written before the sweep recorded jumps and calls."""
    points = set(flow.starts)
    for pc in flow.pcs:
        insn = insns[pc]
        if is_jump(insn):
            target = jump_target(insn, pc)
            assert target is not None
            points.add(target)
            if not is_unconditional_jump(insn):
                points.add(pc + 1)
        elif insn.opcode == 0x85:
            points.add(pc + 1)
            if is_helper_call(insn) and insn.imm in CALLBACK_HELPER_IDS:
                points.add(pc)
    return points


def test_flow_agrees_with_the_reference_functions() -> None:
    checked = 0
    for program in _programs():
        insns = decode(program.insns)
        flow = cfg.Flow(insns)
        pcs = list(iter_insns(insns))
        assert flow.pcs == pcs
        assert flow.succ == {pc: cfg.successors(insns, pc) for pc in pcs}
        assert flow.loops == any(s <= pc for pc in pcs for s in flow.succ[pc])
        assert flow.func_refs == [(pc, pc + insns[pc].imm + 1) for pc in pcs
                                  if is_pseudo_call(insns[pc]) or is_pseudo_func(insns[pc])]
        assert flow.jumps == [pc for pc in pcs if is_jump(insns[pc])]
        assert flow.calls == [pc for pc in pcs if insns[pc].opcode == 0x85]
        if cfg.structural_problem(insns, True, flow) is None:
            assert cfg.prune_points(insns, flow) == _reference_points(insns, flow)
        checked += 1
    assert checked > 300
