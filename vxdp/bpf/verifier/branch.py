"""Conditional jumps: which way a branch can go, and what each way teaches.

check_cond_jmp_op of the kernel: scalar comparisons decide the branch when the ranges
allow (`arith.branch_taken`) and narrow both operands on each side (`arith.refine`), for
every copy sharing the scalar's id; a NULL check of a nullable pointer turns every copy
with the same id into a pointer or a zero on each side; comparing a packet pointer with
data_end (or data_meta with data) proves a range for every pointer sharing the id.
"""

from __future__ import annotations

from typing import Final

from vxdp.bpf.isa import (
    BPF_JEQ,
    BPF_JLE,
    BPF_JLT,
    BPF_JMP32,
    BPF_JNE,
    BPF_JSET,
    BPF_X,
    Insn,
    plain,
)
from vxdp.bpf.verifier.arith import NEGATE, SWAP, refine
from vxdp.bpf.verifier.scalar import Scalar
from vxdp.bpf.verifier.state import MAX_PACKET_OFF, Env, Reg, Reject, State, T, const

# enum members as plain attributes: read on every instruction (see isa.plain)
T = plain(T)  # type: ignore[misc]

_SCALAR: Final = T.SCALAR
Outcome = tuple[State | None, State | None]  # (fall-through state, jump-taken state)


def _read(state: State, regno: int) -> Reg:
    reg = state.regs[regno]
    if reg.type is T.NOT_INIT:
        raise Reject(f"R{regno} !read_ok")
    return reg


def check_cond_jmp(env: Env, state: State, insn: Insn) -> Outcome:
    """The states after the branch; None for a side no execution can reach."""
    bits = 32 if insn.cls == BPF_JMP32 else 64
    op = insn.op
    dreg = _read(state, insn.dst)
    # both operands are initialised (_read, const): a pointer is what is not a scalar
    dst_ptr = dreg.type is not _SCALAR
    if insn.source == BPF_X:
        sreg = _read(state, insn.src)
        src_ptr = sreg.type is not _SCALAR
        if not env.allow_ptr_leaks and (dst_ptr or src_ptr):
            bad = insn.src if sreg.is_pointer else insn.dst
            if not (dreg.is_pointer and sreg.is_pointer and _is_pkt_cmp(dreg, sreg)):
                raise Reject(f"R{bad} pointer comparison prohibited")
        src_regno: int | None = insn.src
    else:
        imm = insn.imm if bits == 64 else insn.imm & 0xFFFFFFFF
        sreg = const(imm)
        src_ptr = False
        src_regno = None
        if dst_ptr and not env.allow_ptr_leaks and not _zero(sreg):
            raise Reject(f"R{insn.dst} pointer comparison prohibited")
    if not (dst_ptr or src_ptr):
        fall, jump = _scalar_branch(state, insn, op, dreg, sreg, src_regno, bits)
        if fall is None or jump is None:  # decided by the values: they matter
            env.mark_precise(state, *([insn.dst] if src_regno is None
                                      else [insn.dst, src_regno]))
        return fall, jump
    if bits == 64 and op in (BPF_JEQ, BPF_JNE):
        nullable, other = (dreg, sreg) if dst_ptr else (sreg, dreg)
        if other.type is _SCALAR and _zero(other):
            if src_regno is not None:  # a NULL check because that register is 0
                env.mark_precise(state, insn.src if dst_ptr else insn.dst)
            return _null_branch(env, state, op, nullable)
    if dst_ptr and src_ptr and bits == 64:
        return _pkt_branch(state, op, dreg, sreg)
    return state.copy(), state


def _zero(reg: Reg) -> bool:
    return reg.is_scalar and reg.var.is_const and reg.var.value == 0


def _is_pkt_cmp(a: Reg, b: Reg) -> bool:
    kinds = {a.type, b.type}
    return kinds in ({T.PACKET, T.PACKET_END}, {T.PACKET_META, T.PACKET}, {T.PACKET})


def _scalar_branch(state: State, insn: Insn, op: int, dreg: Reg, sreg: Reg,
                   src_regno: int | None, bits: int) -> Outcome:
    # arith.branch_taken, with the refinements kept for the sides that may run
    on_jump = refine(op, dreg.var, sreg.var, bits)
    if on_jump is None:
        return state, None  # never taken
    on_fall = refine(NEGATE[op], dreg.var, sreg.var, bits)
    if on_fall is None:
        return None, state  # always taken
    other = state.copy()
    jump = _refined(other, on_jump, insn.dst, src_regno, dreg, sreg)
    fall = _refined(state, on_fall, insn.dst, src_regno, dreg, sreg)
    return fall, jump


def _refined(state: State, res: tuple[Scalar, Scalar], dst: int, src: int | None,
             dreg: Reg, sreg: Reg) -> State:
    _assign(state, dst, dreg, res[0])
    if src is not None:
        _assign(state, src, sreg, res[1])
    return state


def _assign(state: State, regno: int, old: Reg, value: Scalar) -> None:
    """Give the refined value to the register and to every copy sharing its id."""
    state.regs[regno] = old.with_var(value)
    if old.id:
        state.map_regs_with_id(old.id, lambda r: r.with_var(value)
                               if r.type is T.SCALAR and r.id == old.id else None)


def _null_branch(env: Env, state: State, op: int, ptr: Reg) -> Outcome:
    if not ptr.maybe_null:
        # a valid pointer is never NULL: `== 0` never jumps, `!= 0` always does
        return (state, None) if op == BPF_JEQ else (None, state)
    other = state.copy()
    is_null_side, non_null_side = (other, state) if op == BPF_JEQ else (state, other)
    mark_ptr_or_null(is_null_side, ptr.id, True)
    mark_ptr_or_null(non_null_side, ptr.id, False, env.xsk_maps)
    return state, other


def mark_ptr_or_null(state: State, ptr_id: int, is_null: bool,
                     xsk_maps: frozenset[int] = frozenset()) -> None:
    """Every copy of the nullable pointer `ptr_id` becomes 0 or a valid pointer (an
    `xdp_sock` for a lookup in one of the XSKMAPs `xsk_maps`, as the kernel)."""
    ref = 0

    def fix(r: Reg) -> Reg | None:
        nonlocal ref
        if not (r.maybe_null and r.id == ptr_id):
            return None
        if is_null:
            ref = r.ref or ref
            return const(0)
        if r.type is T.MAP_VALUE and r.map in xsk_maps:  # the socket itself
            return r._replace(type=T.XDP_SOCK, maybe_null=False, id=0)
        return r._replace(maybe_null=False, id=0)

    state.map_regs_with_id(ptr_id, fix)
    if is_null and ref:
        state.refs.pop(ref, None)  # a NULL reservation holds nothing to release


def _pkt_branch(state: State, op: int, dreg: Reg, sreg: Reg) -> Outcome:
    """data' vs data_end (and meta' vs data): learn ranges on the side that proves one."""
    if op in (BPF_JSET,) or op not in SWAP:
        return state.copy(), state
    # Normalise to `ptr OP end` where ptr is the packet (or meta) pointer being checked.
    if (dreg.type is T.PACKET and sreg.type is T.PACKET_END) or (
            dreg.type is T.PACKET_META and _init_pkt(sreg)):
        ptr, cmp = dreg, op
    elif (dreg.type is T.PACKET_END and sreg.type is T.PACKET) or (
            _init_pkt(dreg) and sreg.type is T.PACKET_META):
        ptr, cmp = sreg, SWAP[op]
    else:
        return state.copy(), state
    other = state.copy()
    # After the jump `ptr cmp end` holds; on the fall-through its negation does.
    for st, fact in ((other, cmp), (state, NEGATE[cmp])):
        if fact == BPF_JLT:  # ptr < end
            _good_pkt_pointers(st, ptr, right_open=True)
        elif fact == BPF_JLE:  # ptr <= end
            _good_pkt_pointers(st, ptr, right_open=False)
    return state, other


def _init_pkt(reg: Reg) -> bool:
    return reg.type is T.PACKET and reg.off == 0 and reg.var.is_const and reg.var.value == 0


def _good_pkt_pointers(state: State, ptr: Reg, right_open: bool) -> None:
    """find_good_pkt_pointers: `ptr (<|<=) end` makes [base, base + ptr.off (+1)) safe for
    every pointer with ptr's id."""
    if ptr.off < 0 or (ptr.off == 0 and right_open):
        return
    if ptr.var.umax > MAX_PACKET_OFF or ptr.var.umax + ptr.off > MAX_PACKET_OFF:
        return
    new_range = ptr.off + (1 if right_open else 0)
    state.map_regs_with_id(ptr.id, lambda r: r.with_range(max(r.range, new_range))
                           if r.type is ptr.type and r.id == ptr.id else None)
