"""Calls and exits: helper prototypes, bpf-to-bpf frames, tail calls, references.

Helpers are checked against the shared prototype table (vxdp.bpf.helpers) and the device
profile's allow-list: each argument register must hold the type its `Arg` asks for (the
kernel's check_func_arg with its messages), memory arguments are checked as accesses of
the size the next argument gives, and the return register takes the `Ret` type.  Helpers
that may move the packet invalidate every packet pointer.  A local call pushes a frame
(R1-R5 passed, R10 fresh); its exit pops it, hands R0 back and clears R1-R5.
"""

from __future__ import annotations

from typing import Final

from vxdp.bpf.btf import FuncParam, ParamKind
from vxdp.bpf.helpers import HELPERS, Arg, Helper, Ret
from vxdp.bpf.isa import Insn, plain
from vxdp.bpf.program import MAX_CALL_FRAMES, MapType
from vxdp.bpf.verifier import memory
from vxdp.bpf.verifier.scalar import to_s64
from vxdp.bpf.verifier.state import (
    BPF_MAX_VAR_SIZ,
    CALLER_SAVED,
    FP,
    NOT_INIT,
    PACKET_TYPES,
    SIZED_MEM_TYPES,
    Env,
    Frame,
    Reg,
    Reject,
    State,
    T,
    new_state,
    pointer,
    scalar,
)

# enum members as plain attributes: read on every instruction (see isa.plain)
Arg, MapType, ParamKind, Ret, T = (  # type: ignore[misc]
    plain(Arg), plain(MapType), plain(ParamKind), plain(Ret), plain(T))

CHANGES_PKT_DATA: Final = frozenset({44, 54, 65})  # xdp_adjust_head/meta/tail
_MEM_TYPES: Final = frozenset({T.STACK, T.PACKET, T.PACKET_META, T.MAP_VALUE, T.RINGBUF_MEM, T.MEM})
_MEM_EXPECTED: Final = "fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_"


# a memory argument is checked as a read, or (writable memory) as a write, as the kernel
_MEM_ACCESSES: Final = {Arg.PTR_TO_UNINIT_MEM: (True,), Arg.PTR_TO_MEM_RW: (True,)}


def helper_name(hid: int) -> str:
    h = HELPERS.get(hid)
    return f"bpf_{h.name}#{hid}" if h else f"unknown#{hid}"


def _arg_reg(state: State, regno: int) -> Reg:
    reg = state.regs[regno]
    if reg.type is T.NOT_INIT:
        raise Reject(f"R{regno} !read_ok")
    return reg


def _type_err(regno: int, reg: Reg, expected: str) -> Reject:
    return Reject(f"R{regno} type={reg.type_name()} expected={expected}")


def _mem_access(env: Env, state: State, regno: int, reg: Reg, size: int, write: bool,
                zero_ok: bool, expected: str = _MEM_EXPECTED,
                stack_kind: str = memory.HELPER) -> None:
    """check_helper_mem_access: `size` bytes at the pointer in `regno`."""
    if reg.type is T.STACK:
        memory.stack_helper_access(env, state, reg, regno, size, write, zero_ok, stack_kind)
    elif reg.type in PACKET_TYPES:
        memory.check_packet(reg, regno, reg.off, size, zero_ok)
    elif reg.type is T.MAP_VALUE:
        spec = env.map_spec(reg.map)
        if write and not memory.map_writable(spec):
            raise Reject(f"write into map forbidden, value_size={spec.value_size} "
                         f"off={reg.off} size={size}")
        memory.check_region(reg, regno, reg.off, size, spec.value_size, zero_ok)
    elif reg.type in SIZED_MEM_TYPES:
        memory.check_region(reg, regno, reg.off, size, reg.mem_size, zero_ok)
    else:
        raise _type_err(regno, reg, expected)


def _size_arg(regno: int, reg: Reg, zero_ok: bool) -> int:
    """check_mem_size_reg: the size argument's largest value."""
    if not reg.is_scalar:
        raise _type_err(regno, reg, "scalar")
    v = reg.var
    if v.smin < 0:
        raise Reject(f"R{regno} min value is negative, either use unsigned or 'var &= const'")
    if v.umin == 0 and not zero_ok:
        raise Reject(f"R{regno} invalid zero-sized read: u64=[{v.umin},{v.umax}]")
    if v.umax >= BPF_MAX_VAR_SIZ:
        raise Reject(f"R{regno} unbounded memory access, use 'var &= const' or "
                     f"'if (var < const)'")
    return v.umax


def check_helper_call(env: Env, state: State, insn: Insn, pc: int) -> None:
    hid = insn.imm
    helper = HELPERS.get(hid)
    if helper is None or not helper.xdp:
        if helper is None and not 0 <= hid < 212:
            raise Reject(f"invalid func unknown#{hid}")
        raise Reject(f"program of this type cannot use helper {helper_name(hid)}")
    if not env.profile.allows_helper(hid):
        raise Reject(f"program of this type cannot use helper {helper_name(hid)} "
                     f"(not offered by device profile {env.profile.name})")
    if hid == 12 and any(f.in_callback for f in state.frames):
        # the kernel fails on it ("verifier bug: callback unexpected regs 1", EFAULT)
        raise Reject("bpf_tail_call is not allowed in a callback")
    if helper.gpl_only and not env.program.gpl_compatible:
        raise Reject("cannot call GPL-restricted function from non-GPL compatible program")
    map_index = _check_args(env, state, helper)
    mem_size = alloc_size(state)
    never_null = hid == 1 and _const_array_key(env, state, map_index)
    ref_released = None
    if Arg.PTR_TO_RINGBUF_MEM in helper.args:
        ref_released = state.regs[1].ref
    for r in CALLER_SAVED:
        state.regs[r] = NOT_INIT
    if ref_released:
        _release(env, state, ref_released)
    if hid in CHANGES_PKT_DATA:
        clear_packet_pointers(state)
    state.regs[0] = _ret_reg(env, state, helper, map_index, mem_size, pc)
    if never_null:
        state.regs[0] = state.regs[0]._replace(maybe_null=False, id=0)


def _check_args(env: Env, state: State, helper: Helper) -> int:
    """Check R1.. against the prototype; returns the map index of a map argument."""
    map_index = -1
    args = helper.args
    for i, arg in enumerate(args):
        regno = i + 1
        reg = _arg_reg(state, regno)
        nxt = args[i + 1] if i + 1 < len(args) else None
        if arg is Arg.ANYTHING:
            if reg.is_pointer and not env.allow_ptr_leaks:
                raise Reject(f"R{regno} leaks addr into helper function")
        elif arg is Arg.CONST_MAP_PTR:
            if reg.type is not T.MAP_PTR or reg.maybe_null:
                raise _type_err(regno, reg, "map_ptr")
            map_index = reg.map
            mtype = env.map_spec(map_index).type
            if helper.id == 12 and mtype is not MapType.PROG_ARRAY:
                raise Reject("expected prog array map for tail call")
            if helper.map_types is not None and mtype not in helper.map_types:
                raise Reject(f"cannot pass map_type {int(mtype)} into func "
                             f"{helper_name(helper.id)}")
        elif arg in (Arg.PTR_TO_MAP_KEY, Arg.PTR_TO_MAP_VALUE):
            if map_index < 0:
                what = "key" if arg is Arg.PTR_TO_MAP_KEY else "value"
                raise Reject(f"invalid map_ptr to access map->{what}")
            if reg.type not in _MEM_TYPES - {T.RINGBUF_MEM} or reg.maybe_null:
                raise _type_err(regno, reg, _MEM_EXPECTED)
            spec = env.map_spec(map_index)
            size = spec.key_size if arg is Arg.PTR_TO_MAP_KEY else spec.value_size
            _mem_access(env, state, regno, reg, size, write=False, zero_ok=False)
        elif arg is Arg.PTR_TO_CTX:
            if reg.type is not T.CTX:
                raise _type_err(regno, reg, "ctx")
            memory.check_ctx_ptr(reg, regno)
        elif arg in (Arg.PTR_TO_MEM, Arg.PTR_TO_MEM_OR_NULL, Arg.PTR_TO_UNINIT_MEM,
                     Arg.PTR_TO_MEM_RW):
            null = arg is Arg.PTR_TO_MEM_OR_NULL and reg.is_scalar and reg.var.is_const \
                and reg.var.value == 0
            if not null and (reg.maybe_null or reg.type not in _MEM_TYPES):
                raise _type_err(regno, reg, _MEM_EXPECTED)
            size_reg = _arg_reg(state, regno + 1)
            zero_ok = nxt in (Arg.CONST_SIZE_OR_ZERO, Arg.CONST_ALLOC_SIZE_OR_ZERO)
            size = _size_arg(regno + 1, size_reg, zero_ok)
            env.mark_precise(state, regno + 1, *([regno] if null else []))
            if null:
                if size:
                    raise _type_err(regno, reg, _MEM_EXPECTED)
                continue
            # a memory/size pair is a read or a write (the kernel's words for its bounds)
            for write in _MEM_ACCESSES.get(arg, (False,)):
                _mem_access(env, state, regno, reg, size, write, zero_ok,
                            stack_kind=memory.WRITE if write else memory.READ)
        elif arg in (Arg.CONST_SIZE, Arg.CONST_SIZE_OR_ZERO):
            _size_arg(regno, reg, arg is Arg.CONST_SIZE_OR_ZERO)
            env.mark_precise(state, regno)
        elif arg is Arg.CONST_ALLOC_SIZE_OR_ZERO:
            if not (reg.is_scalar and reg.var.is_const):
                raise Reject(f"R{regno} is not a known constant'")
            env.mark_precise(state, regno)
        elif arg is Arg.PTR_TO_LONG:
            if reg.type not in (T.STACK, T.MAP_VALUE) or reg.maybe_null:
                raise _type_err(regno, reg, "fp, map_value")
            _mem_access(env, state, regno, reg, 8, write=True, zero_ok=False)
            memory.check_alignment(reg, 0, 8)
        elif arg is Arg.PTR_TO_FUNC:
            if reg.type is not T.FUNC:
                raise _type_err(regno, reg, "func")
        elif arg is Arg.PTR_TO_STACK_OR_NULL:
            if reg.type is not T.STACK and not (reg.is_scalar and reg.var.is_const
                                                and reg.var.value == 0):
                raise _type_err(regno, reg, "fp")
            if reg.is_scalar:
                env.mark_precise(state, regno)
        elif arg is Arg.PTR_TO_RINGBUF_MEM:
            if reg.type is not T.RINGBUF_MEM or reg.maybe_null:
                raise _type_err(regno, reg, "ringbuf_mem")
            if reg.off or not reg.var.is_const or reg.var.value:
                raise Reject(f"R{regno} must have zero offset when passed to release func")
            if not reg.ref or reg.ref not in state.refs:
                raise Reject(f"R{regno} must be referenced when passed to release func")
    return map_index


def clear_packet_pointers(state: State) -> None:
    """The packet moved (clear_all_pkt_pointers): every packet pointer becomes unknown."""
    state.map_regs(lambda r: scalar() if r.type in PACKET_TYPES or r.type is
                   T.PACKET_END else None)


def _const_array_key(env: Env, state: State, map_index: int) -> bool:
    """An array lookup with a constant in-range key on the stack never returns NULL."""
    spec = env.map_spec(map_index)
    if spec.type not in (MapType.ARRAY, MapType.PERCPU_ARRAY):
        return False
    key = state.regs[2]
    if key.type is not T.STACK or not key.var.is_const or spec.key_size != 4:
        return False
    value = memory.stack_const(env, state, key, 4)
    return value is not None and value < spec.max_entries


def _release(env: Env, state: State, ref: int) -> None:
    state.refs.pop(ref, None)
    state.map_regs(lambda r: scalar() if r.ref == ref else None)


def _ret_reg(env: Env, state: State, helper: Helper, map_index: int, mem_size: int,
             pc: int) -> Reg:
    if helper.ret is Ret.INTEGER:
        return scalar()
    if helper.ret is Ret.VOID:
        return NOT_INIT
    if helper.ret is Ret.PTR_TO_MAP_VALUE_OR_NULL:
        if map_index in env.inner_map:  # a map-in-map gives one of its maps, or NULL
            return pointer(T.MAP_PTR, map=env.inner_map[map_index])._replace(
                maybe_null=True, id=env.new_id())
        return pointer(T.MAP_VALUE, map=map_index)._replace(maybe_null=True,
                                                            id=env.new_id())
    # ring-buffer reservation: a reference the program must submit or discard
    env.new_id()  # the kernel spends one id on the NULL check, then uses the reference's
    rid = env.new_id()
    state.refs[rid] = pc
    return pointer(T.RINGBUF_MEM)._replace(maybe_null=True, id=rid, ref=rid,
                   mem_size=mem_size)


# -- bpf-to-bpf calls --------------------------------------------------------------------


def call_global(env: Env, state: State, target: int) -> None:
    """A call of a global function (check_func_call): the arguments must match its BTF
    prototype; the function is verified on its own later, and returns an unknown scalar."""
    proto = env.global_funcs[target]
    index = env.subprog_starts.index(target)
    try:
        if proto.problem:
            raise Reject(proto.problem)
        for i, param in enumerate(proto.params):
            _check_global_arg(env, state, i, param)
    except Reject as exc:
        raise Reject(f"{exc}\nCaller passes invalid args into func#{index} "
                     f"('{proto.name}')") from None
    env.note(f"Func#{index} ('{proto.name}') is global and assumed valid.")
    env.aux = "global"  # for backtracking: R0 is a value of its own, as a helper's
    env.callees.setdefault(state.cur.subprog, set()).add(target)
    env.called_globals.add(target)
    if target in env.changes_pkt_data:
        clear_packet_pointers(state)
    for r in CALLER_SAVED:
        state.regs[r] = NOT_INIT
    state.regs[0] = scalar()


def _check_global_arg(env: Env, state: State, i: int, param: FuncParam) -> None:
    """btf_check_func_arg_match for one argument."""
    regno = i + 1
    reg = state.regs[regno]
    if param.kind is ParamKind.SCALAR:
        if not reg.is_scalar:
            raise Reject(f"R{regno} is not a scalar")
        return
    if param.kind is ParamKind.CTX:
        if reg.type is T.CTX:
            memory.check_ctx_ptr(reg, regno)
            return
        raise Reject(f"arg#{i} expects pointer to ctx")
    if reg.is_scalar and reg.var.is_const and reg.var.value == 0:
        if not param.nullable:
            raise Reject(f"arg#{i} is expected to be non-NULL")
        env.mark_precise(state, regno)
        return  # NULL is a valid argument
    if reg.type is T.NOT_INIT:
        raise Reject(f"R{regno} !read_ok")
    plain = reg._replace(maybe_null=False)
    for write in (False, True):  # the function may read and write all of it
        _mem_access(env, state, regno, plain, param.size, write, True, expected="fp",
                    stack_kind=memory.WRITE if write else memory.READ)
    if reg.maybe_null and not param.nullable:
        raise Reject(f"arg#{i} is expected to be non-NULL")


def global_entry_state(env: Env, entry: int) -> State:
    """The state a global function is verified from: its arguments as its prototype
    declares them (do_check_common), anything else uninitialised."""
    state = new_state()
    frame = state.cur
    frame.subprog = entry
    frame.regs[1] = NOT_INIT
    for i, param in enumerate(env.global_funcs[entry].params):
        if param.kind is ParamKind.CTX:
            reg = pointer(T.CTX)
        elif param.kind is ParamKind.SCALAR:
            reg = scalar()
        else:
            reg = pointer(T.MEM)._replace(mem_size=param.size, maybe_null=param.nullable,
                          id=env.new_id() if param.nullable else 0)
        frame.regs[i + 1] = reg
    return state


def push_frame(env: Env, state: State, pc: int, target: int) -> int:
    """A bpf-to-bpf call: returns the pc to continue at (the callee's entry, or the next
    instruction for a global function, which is verified on its own)."""
    if target in env.global_funcs:
        call_global(env, state, target)
        return pc + 1
    if len(state.frames) >= MAX_CALL_FRAMES:
        raise Reject(f"the call stack of {len(state.frames) + 1} frames is too deep !")
    caller = state.cur
    regs = [NOT_INIT] * 11
    for r in CALLER_SAVED:
        regs[r] = caller.regs[r]
    regs[FP] = pointer(T.STACK, frame=len(state.frames))
    state.push(Frame(regs, {}, callsite=pc, subprog=target))
    env.callees.setdefault(caller.subprog, set()).add(target)
    for r in CALLER_SAVED:
        caller.regs[r] = NOT_INIT
    return target


def callback_state(env: Env, state: State, pc: int) -> State:
    """The state a bpf_loop callback starts in (set_loop_callback_state): a copy of the
    caller's at the call, R1 the index (any scalar), R2 the caller's R3, a new frame; its
    exit comes back to the call (`pop_callback`)."""
    if len(state.frames) >= MAX_CALL_FRAMES:
        raise Reject(f"the call stack of {len(state.frames) + 1} frames is too deep !")
    cb = state.copy()
    caller = cb.cur
    target = caller.regs[2].off
    regs = [NOT_INIT] * 11
    regs[1] = scalar()
    regs[2] = caller.regs[3]
    regs[FP] = pointer(T.STACK, frame=len(cb.frames))
    caller.callback_depth += 1
    cb.push(Frame(regs, {}, callsite=pc, subprog=target, in_callback=True))
    env.callees.setdefault(caller.subprog, set()).add(target)
    return cb


def pop_callback(env: Env, state: State) -> int:
    """A callback's exit: R0 must be 0 (go on) or 1 (stop); back to the helper call, which
    runs again with the caller's state as the callback left it."""
    callee = state.frames[-1]
    r0 = callee.regs[0]
    if r0.type is T.NOT_INIT:
        raise Reject("R0 !read_ok")
    if not r0.is_scalar:
        raise Reject("R0 not a scalar value")
    env.mark_precise(state, 0)
    v = r0.var
    if v.umin > 1 or v.umax > 1:
        value = ("unknown scalar value" if v.var_off.is_unknown
                 else f"smin={v.smin} smax={v.smax}")
        raise Reject(f"At callback return the register R0 has {value} should have been "
                     f"in [0, 1]")
    _record_depth(env, callee)
    state.pop()
    return callee.callsite


def pop_frame(env: Env, state: State) -> int:
    """The callee's exit: returns the pc to continue at."""
    callee = state.frames[-1]
    r0 = callee.regs[0]  # may be NOT_INIT: a void function (the caller cannot read it)
    if r0.type is T.STACK and r0.frame == len(state.frames) - 1:
        raise Reject("cannot return stack pointer to the caller")
    _record_depth(env, callee)
    state.pop()
    state.cur.regs[0] = r0
    return callee.callsite + 1


def _record_depth(env: Env, frame: Frame) -> None:
    depth = env.max_depth.get(frame.subprog, 0)
    if frame.depth > depth:
        env.max_depth[frame.subprog] = frame.depth


def check_exit(env: Env, state: State) -> None:
    """The exit of the program (or of a global function verified on its own): R0 is its
    return value; every reference released."""
    r0 = state.regs[0]
    if r0.type is T.NOT_INIT:
        raise Reject("R0 !read_ok")
    if r0.is_pointer and not env.allow_ptr_leaks:
        raise Reject("R0 leaks addr as return value")
    if state.cur.subprog and not r0.is_scalar:  # a global function, verified on its own
        raise Reject(f"At subprogram exit the register R0 is not a scalar value "
                     f"({r0.type_name()})")
    for rid, alloc_pc in sorted(state.refs.items()):
        raise Reject(f"Unreleased reference id={rid} alloc_insn={alloc_pc}")
    _record_depth(env, state.cur)


def alloc_size(state: State) -> int:
    reg = state.regs[2]
    return to_s64(reg.var.value) if reg.is_scalar and reg.var.is_const else 0


__all__ = ["CHANGES_PKT_DATA", "alloc_size", "callback_state", "check_exit",
           "check_helper_call", "helper_name", "pop_callback", "pop_frame", "push_frame"]
