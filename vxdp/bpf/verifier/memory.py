"""Memory access checks: what a load, store or helper may touch through a pointer.

One entry point per kind of access, each following the kernel's check_mem_access for the
pointer's type: map values (check_map_access), the packet (check_packet_access), the XDP
context (xdp_is_valid_access), the stack (check_stack_read/write, fixed and variable
offset) and ring-buffer memory.  Every rejection uses the kernel's message.
"""

from __future__ import annotations

from typing import Final

from vxdp.bpf.isa import plain
from vxdp.bpf.program import BPF_F_RDONLY_PROG, MapSpec, MapType, XdpMd
from vxdp.bpf.verifier.scalar import S64_MIN, Scalar, to_s64
from vxdp.bpf.verifier.state import (
    BPF_MAX_VAR_OFF,
    NUM_SLOTS,
    SIZED_MEM_TYPES,
    SLOT,
    STACK_SIZE,
    B,
    Env,
    Reg,
    Reject,
    Slot,
    State,
    T,
    const,
    pointer,
    scalar,
)

# enum members as plain attributes: read on every instruction (see isa.plain)
B, T = plain(B), plain(T)  # type: ignore[misc]

READ, WRITE, HELPER = "read", "write", "helper"

# maps whose values a program may only read (the kernel sets BPF_F_RDONLY_PROG for them)
READ_ONLY_VALUE_MAPS: Final = frozenset({MapType.DEVMAP, MapType.DEVMAP_HASH, MapType.CPUMAP,
                                  MapType.XSKMAP})

def map_writable(spec: MapSpec) -> bool:
    """Whether a program may write into the values of this map."""
    return not (spec.flags & BPF_F_RDONLY_PROG or spec.frozen
                or spec.type in READ_ONLY_VALUE_MAPS)


# -- region checks ---------------------------------------------------------------------


def _region_fail(reg: Reg, regno: int, off: int, size: int, limit: int) -> str:
    if reg.type is T.MAP_VALUE:
        return f"invalid access to map value, value_size={limit} off={off} size={size}"
    if reg.type in (T.PACKET, T.PACKET_META):
        return (f"invalid access to packet, off={off} size={size}, "
                f"R{regno}(id={reg.id},off={off},r={reg.range})")
    return f"invalid access to memory, mem_size={limit} off={off} size={size}"


def _in_region(off: int, size: int, limit: int, zero_ok: bool) -> bool:
    return not (off < 0 or size < 0 or (size == 0 and not zero_ok) or off + size > limit)


def check_region(reg: Reg, regno: int, off: int, size: int, limit: int,
                 zero_ok: bool = False) -> None:
    """check_mem_region_access: [ptr+off, ptr+off+size) inside [0, limit) for every value
    of the pointer's variable part."""
    v = reg.var
    if v.smin < 0 and (v.smin == S64_MIN or to_s64(off + v.smin) != off + v.smin
                       or off + v.smin < 0):
        raise Reject(f"R{regno} min value is negative, either use unsigned index or do a "
                     f"if (index >=0) check.")
    lo = v.smin + off
    if not _in_region(lo, size, limit, zero_ok):
        raise Reject(_region_fail(reg, regno, lo, size, limit)
                     + f"\nR{regno} min value is outside of the allowed memory range")
    if v.umax >= BPF_MAX_VAR_OFF:
        raise Reject(f"R{regno} unbounded memory access, make sure to bounds check any "
                     f"such access")
    hi = v.umax + off
    if not _in_region(hi, size, limit, zero_ok):
        raise Reject(_region_fail(reg, regno, hi, size, limit)
                     + f"\nR{regno} max value is outside of the allowed memory range")


def check_packet(reg: Reg, regno: int, off: int, size: int, zero_ok: bool = False) -> None:
    """check_packet_access: the access lies inside the range a comparison with data_end
    (or, for data_meta, with data) proved."""
    if reg.var.smin < 0:
        raise Reject(f"R{regno} min value is negative, either use unsigned index or do a "
                     f"if (index >=0) check.")
    if reg.range < 0 or not _in_region(off, size, reg.range, zero_ok):
        raise Reject(_region_fail(reg, regno, off, size, reg.range)
                     + f"\nR{regno} offset is outside of the packet")


_ALIGN_DESC: Final = {T.STACK: "stack ", T.MAP_VALUE: "value ", T.CTX: "context "}


def check_alignment(reg: Reg, insn_off: int, size: int, strict: bool = False) -> None:
    """check_ptr_alignment: stack accesses must be aligned (x86 has efficient unaligned
    access, so others need not), every access when `strict` (atomics, as the kernel's
    strict_alignment_once); single bytes always are."""
    if size == 1 or not (strict or reg.type is T.STACK):
        return
    vt = reg.var.var_off
    if not vt.mask and not (vt.value + reg.off + insn_off) & (size - 1):
        return  # a constant address, aligned (what the tnum sum below would say)
    t = reg.var.var_off.add(reg.var.var_off.const(reg.off + insn_off))
    if not t.is_aligned(size):
        var = str(to_s64(reg.var.value)) if reg.var.is_const else str(reg.var.var_off)
        raise Reject(f"misaligned {_ALIGN_DESC.get(reg.type, '')}access off "
                     f"{var}+{reg.off}+{insn_off} size {size}")


# -- the context -----------------------------------------------------------------------

_CTX_POINTERS: Final = {XdpMd.data: T.PACKET, XdpMd.data_end: T.PACKET_END,
                 XdpMd.data_meta: T.PACKET_META}
_CTX_SIZE: Final = 24


def check_ctx_ptr(reg: Reg, regno: int) -> None:
    """check_ptr_off_reg: the context may only be used at its original address."""
    if not reg.var.is_const:
        raise Reject(f"variable ctx access var_off={reg.var.var_off} disallowed")
    off = reg.off + to_s64(reg.var.value)
    if off:
        raise Reject(f"dereference of modified ctx ptr R{regno} off={off} disallowed")


def ctx_access(reg: Reg, regno: int, off: int, size: int, kind: str) -> Reg:
    """xdp_is_valid_access: aligned whole __u32 fields, read-only, egress_ifindex only for
    devmap programs; data/data_end/data_meta load as packet pointers."""
    check_ctx_ptr(reg, regno)
    ok = (0 <= off < _CTX_SIZE and off % size == 0 and size == 4 and kind == READ
          and off != XdpMd.egress_ifindex)
    if not ok:
        raise Reject(f"invalid bpf_context access off={off} size={size}")
    t = _CTX_POINTERS.get(XdpMd(off))
    if t is not None:
        return pointer(t)
    return scalar(Scalar.unsigned(4))


# -- the stack -------------------------------------------------------------------------


_BOUNDS_WORDS: Final = {READ: " read from", WRITE: " write to", HELPER: " indirect access to"}


def _stack_bounds(env: Env, reg: Reg, regno: int, off: int, size: int, kind: str
                  ) -> tuple[int, int]:
    """check_stack_access_within_bounds: the [lo, hi) byte range (negative offsets)."""
    if reg.frame >= env.frames_alive:
        raise Reject(f"R{regno} points into the stack of a function that returned")
    extra = _BOUNDS_WORDS[kind]
    v = reg.var
    if v.is_const:
        lo = off + to_s64(v.value)
        hi = lo + size
        if lo < -STACK_SIZE or hi > 0 or size < 0:
            raise Reject(f"invalid{extra} stack R{regno} off={lo} size={size}")
        return lo, hi
    if v.smax >= BPF_MAX_VAR_OFF or v.smin <= -BPF_MAX_VAR_OFF:
        raise Reject(f"invalid unbounded variable-offset{extra} stack R{regno}")
    if not env.privileged:
        raise Reject(f"R{regno} variable stack access prohibited for !root, "
                     f"var_off={v.var_off} off={off}")
    lo, hi = v.smin + off, v.smax + off + size
    if lo < -STACK_SIZE or hi > 0:
        raise Reject(f"invalid variable-offset{extra} stack R{regno} var_off={v.var_off} "
                     f"off={off} size={size}")
    return lo, hi


def _slot_of(byte_off: int) -> tuple[int, int]:
    """(slot index, byte index within the slot) of a negative stack offset."""
    pos = STACK_SIZE + byte_off  # 0 .. 511
    return NUM_SLOTS - 1 - pos // SLOT, pos % SLOT


def _touch(env: Env, state: State, frame: int, lo: int) -> None:
    """Record how deep the function's stack goes (for the combined-stack check; kept in
    the environment, since a pruned path never reaches the exit that would report it)."""
    f = state.frames[frame]
    if -lo > f.depth:
        f.depth = -lo
    if -lo > env.max_depth.get(f.subprog, 0):
        env.max_depth[f.subprog] = -lo


def _write_bytes(state: State, frame: int, lo: int, hi: int, kind: B) -> None:
    f = state.frames[frame]
    b = lo
    while b < hi:  # slot by slot: the bytes of one slot are consecutive, low first
        si, bi = _slot_of(b)
        n = min(hi - b, SLOT - bi)
        s = f.slot(si)
        kinds = list(s.bytes)
        if s.spilled is not None:  # a partial overwrite turns the rest of a spill to data
            kinds = [B.MISC if k is B.SPILL else k for k in kinds]
        kinds[bi:bi + n] = [kind] * n
        f.stack[si] = Slot(tuple(kinds), None)
        b += n


def stack_write(env: Env, state: State, reg: Reg, regno: int, off: int, size: int,
                value: Reg | None, imm: int | None, value_regno: int = -1) -> None:
    """A store of `value` (register `value_regno`) or `imm` (BPF_ST) through a stack
    pointer.  A spill records its slot for precision backtracking (`env.aux`)."""
    lo, hi = _stack_bounds(env, reg, regno, off, size, WRITE)
    frame = reg.frame
    if value is not None and value.type is T.STACK and frame != len(state.frames) - 1:
        raise Reject("cannot spill pointers to stack into stack frame of the caller")
    _touch(env, state, frame, lo)
    if not reg.var.is_const:
        _write_bytes(state, frame, lo, hi, B.MISC)
        return
    si, bi = _slot_of(lo)
    f = state.frames[frame]
    old = f.slot(si)
    if not env.privileged and old.spilled is not None and old.spilled.is_pointer \
            and size != SLOT:
        raise Reject("attempt to corrupt spilled pointer on stack")
    if value is not None and value.is_pointer:
        if size != SLOT:
            raise Reject("invalid size of register spill")
        f.stack[si] = Slot((B.SPILL,) * SLOT, value)
        f.written |= 1 << si
        env.aux = (frame, si)
        return
    if value is None:
        value = const(imm if imm is not None else 0)
    if size == SLOT:
        f.stack[si] = Slot((B.SPILL,) * SLOT, value)
        f.written |= 1 << si
        env.aux = (frame, si)
        return
    is_zero = value.var.is_const and value.var.value & ((1 << (size * 8)) - 1) == 0
    if is_zero and value_regno >= 0:
        env.mark_precise(state, value_regno)  # zero bytes stand for this register's value
    _write_bytes(state, frame, lo, hi, B.ZERO if is_zero else B.MISC)
    if bi == 0 and (value.var.is_const or value.var.umax < (1 << (size * 8))):
        # a narrow spill of a scalar that fits keeps its value for a fill of the same size,
        # when it starts a slot (as the kernel tracks them)
        s = f.slot(si)
        kinds = list(s.bytes)
        for i in range(bi, bi + size):
            kinds[i] = B.SPILL
        narrow = value._replace(var=value.var.cast(size), id=0)
        f.stack[si] = Slot(tuple(kinds), narrow)
        env.aux = (frame, si)


def stack_read(env: Env, state: State, reg: Reg, regno: int, off: int, size: int) -> Reg:
    """A load through a stack pointer: a fill restores a spilled register."""
    lo, hi = _stack_bounds(env, reg, regno, off, size, READ)
    frame = reg.frame
    f = state.frames[frame]
    env.mark_read(state, frame, lo, hi)
    if not reg.var.is_const:
        check_stack_initialized(env, state, frame, lo, hi, regno, READ)
        return scalar()
    si, bi = _slot_of(lo)
    s = f.slot(si)
    if s.spilled is not None:
        spill_lo = s.bytes.index(B.SPILL)
        spill_len = s.bytes.count(B.SPILL)
        covered = [k is B.SPILL for k in s.bytes[bi:bi + size]]
        if any(covered):
            if s.spilled.is_pointer:
                if size != SLOT:
                    raise Reject("invalid size of register fill")
                env.aux = (frame, si)
                return s.spilled
            if bi == spill_lo and size == spill_len:
                env.aux = (frame, si)  # a fill: the value is the spilled register's
                return s.spilled
            if bi == spill_lo == 0 and size < spill_len:
                # a narrow fill from the start of a wider spill keeps what the value's low
                # bytes can be (the kernel's bpf_stack_narrow_access_ok and coercion)
                env.aux = (frame, si)
                return scalar(s.spilled.var.cast(size))
    zero = all(k is B.ZERO for k in s.bytes[bi:bi + size])
    check_stack_initialized(env, state, frame, lo, hi, regno, READ)
    return const(0) if zero else scalar()


def stack_const(env: Env, state: State, reg: Reg, size: int) -> int | None:
    """The value of `size` stack bytes at a constant stack pointer, when known."""
    lo = reg.off + to_s64(reg.var.value)
    if lo < -STACK_SIZE or lo + size > 0 or lo % size:
        return None
    env.mark_read(state, reg.frame, lo, lo + size)
    si, bi = _slot_of(lo)
    s = state.frames[reg.frame].slot(si)
    kinds = s.bytes[bi:bi + size]
    if all(k is B.ZERO for k in kinds):
        return 0
    sp = s.spilled
    if sp is not None and sp.is_scalar and sp.var.is_const and all(k is B.SPILL for k in kinds):
        start = s.bytes.index(B.SPILL)
        env.mark_slot_precise(reg.frame, si)  # the decision rests on this constant
        return (sp.var.value >> ((bi - start) * 8)) & ((1 << (size * 8)) - 1)
    return None


def check_stack_initialized(env: Env, state: State, frame: int, lo: int, hi: int,
                            regno: int, kind: str) -> None:
    """Every byte of [lo, hi) was written (privileged programs may read uninitialised
    stack, as the kernel's allow_uninit_stack)."""
    f = state.frames[frame]
    for b in range(lo, hi):
        si, bi = _slot_of(b)
        s = f.slot(si)
        k = s.bytes[bi]
        if k is B.INVALID and not env.allow_uninit_stack:
            if kind == HELPER:
                raise Reject(f"invalid indirect read from stack R{regno} off {lo}+{b - lo} "
                             f"size {hi - lo}")
            raise Reject(f"invalid read from stack off {lo}+{b - lo} size {hi - lo}")
        if k is B.SPILL and s.spilled is not None and s.spilled.is_pointer \
                and kind == HELPER and not env.allow_ptr_leaks:
            raise Reject(f"invalid indirect read from stack R{regno} off {lo}+{b - lo} "
                         f"size {hi - lo}")


def stack_helper_access(env: Env, state: State, reg: Reg, regno: int, size: int,
                        write: bool, zero_ok: bool, kind: str = HELPER) -> None:
    """A helper reads (or, for uninit-mem arguments, writes) `size` bytes of stack
    (`kind` words the bounds message: a global function's argument is a read or a write)."""
    if size == 0 and zero_ok:
        return
    lo, hi = _stack_bounds(env, reg, regno, reg.off, size, kind)
    _touch(env, state, reg.frame, lo)
    if write:
        _write_bytes(state, reg.frame, lo, hi, B.MISC)
    else:
        env.mark_read(state, reg.frame, lo, hi)
        check_stack_initialized(env, state, reg.frame, lo, hi, regno, HELPER)


# -- one load or store -----------------------------------------------------------------


def access(env: Env, state: State, regno: int, insn_off: int, size: int, kind: str,
           value: Reg | None = None, imm: int | None = None, value_regno: int = -1,
           strict: bool = False) -> Reg | None:
    """check_mem_access for a load (returns the loaded register) or a store of `value`
    (held in `value_regno`) or `imm`; `strict` for atomics, which must be aligned."""
    reg = state.regs[regno]
    if reg.type is T.NOT_INIT:
        raise Reject(f"R{regno} !read_ok")
    if reg.maybe_null or reg.type in (T.SCALAR, T.PACKET_END, T.MAP_PTR):
        raise Reject(f"R{regno} invalid mem access '{reg.type_name()}'")
    if size != 1 and (strict or reg.type is T.STACK):
        check_alignment(reg, insn_off, size, strict)
    off = reg.off + insn_off
    leak = kind == WRITE and value is not None and value.is_pointer and not env.allow_ptr_leaks
    if reg.type is T.MAP_VALUE:
        spec = env.map_spec(reg.map)
        if leak:
            raise Reject(f"R{value_regno} leaks addr into map")
        if kind == WRITE and not map_writable(spec):
            raise Reject(f"write into map forbidden, value_size={spec.value_size} "
                         f"off={off} size={size}")
        check_region(reg, regno, off, size, spec.value_size)
        if kind == READ:
            return _map_load(env, reg, off, size)
        return None
    if reg.type in (T.PACKET, T.PACKET_META):
        if leak:
            raise Reject(f"R{value_regno} leaks addr into packet")
        check_packet(reg, regno, off, size)
        return scalar(Scalar.unsigned(size)) if kind == READ else None
    if reg.type is T.CTX:
        if kind == WRITE and value is None:
            check_ctx_ptr(reg, regno)
        return ctx_access(reg, regno, insn_off, size, kind)
    if reg.type in SIZED_MEM_TYPES:
        if leak:
            raise Reject(f"R{value_regno} leaks addr into mem")
        check_region(reg, regno, off, size, reg.mem_size)
        return scalar(Scalar.unsigned(size)) if kind == READ else None
    if reg.type is T.XDP_SOCK:
        # bpf_xdp_sock_is_valid_access: only the u32 queue_id, read whole
        if kind != READ:
            raise Reject(f"R{regno} cannot write into {reg.type_name()}")
        if off != 0 or size != 4 or not reg.var.is_const or reg.var.value:
            raise Reject(f"R{regno} invalid {reg.type_name()} access off={off} size={size}")
        return scalar(Scalar.unsigned(4))
    if reg.type is T.STACK:
        if kind == READ:
            return stack_read(env, state, reg, regno, reg.off + insn_off, size)
        stack_write(env, state, reg, regno, reg.off + insn_off, size, value, imm, value_regno)
        return None
    raise Reject(f"R{regno} invalid mem access '{reg.type_name()}'")


def _map_load(env: Env, reg: Reg, off: int, size: int) -> Reg:
    """A load from a map value: frozen read-only maps (.rodata) give their constant."""
    spec = env.map_spec(reg.map)
    if spec.frozen and spec.initial is not None and reg.var.is_const:
        start = off + to_s64(reg.var.value)
        chunk = spec.initial[start:start + size]
        if len(chunk) == size:
            return const(int.from_bytes(chunk, "little"))
    return scalar(Scalar.unsigned(size))
