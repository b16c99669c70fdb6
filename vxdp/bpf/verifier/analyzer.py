"""The abstract interpreter: every path of the program, one instruction at a time.

Theory of operation (the kernel's do_check).  A depth-first walk keeps one current state
and a stack of states waiting at the other side of branches.  Each instruction is checked
and applied to the current state by the module for its class (alu, memory, branch,
calls).  At prune points (cfg.prune_points) the state is compared with the states already
fully explored there: if one subsumes it, the path stops (prune.subsumes).  Otherwise it is
remembered as a checkpoint.  A checkpoint is complete when every path that went through it
has ended; only complete checkpoints prune (an incomplete one is still being proved), and
coming back to an incomplete ancestor in exactly the same state is an infinite loop.
The walk stops at the first rejection; its (pc, message) goes into the report.
"""

from __future__ import annotations

import gc
import time
from typing import Final

from vxdp.bpf.btf import FuncProto, func_proto, parse_btf
from vxdp.bpf.helpers import CALLBACK_HELPER_IDS
from vxdp.bpf.isa import (
    BPF_ALU,
    BPF_ALU64,
    BPF_ATOMIC,
    BPF_CALL,
    BPF_CMPXCHG,
    BPF_EXIT,
    BPF_FETCH,
    BPF_IMM,
    BPF_JA,
    BPF_LD,
    BPF_LDX,
    BPF_MEMSX,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_IDX,
    BPF_PSEUDO_MAP_IDX_VALUE,
    BPF_PSEUDO_MAP_VALUE,
    BPF_ST,
    BPF_STX,
    SIZE_BYTES,
    Insn,
    Pseudo,
    decode,
    imm64,
    is_exit,
    is_helper_call,
    is_pseudo_call,
    jump_target,
    plain,
)
from vxdp.bpf.profiles import COMPLEXITY_LIMIT, Profile
from vxdp.bpf.program import ARRAY_MAP_TYPES, MAX_CALL_FRAMES, STACK_SIZE, Program, ProgType
from vxdp.bpf.verifier import calls, cfg, memory, prune, stacklive
from vxdp.bpf.verifier.alu import check_alu, read_reg
from vxdp.bpf.verifier.arith import sext
from vxdp.bpf.verifier.branch import check_cond_jmp
from vxdp.bpf.verifier.precision import Checkpoint, Hist, backtrack, jump_links, propagate
from vxdp.bpf.verifier.report import Log, VerifierReport
from vxdp.bpf.verifier.scalar import Scalar
from vxdp.bpf.verifier.state import Env, Reject, State, T, const, new_state, pointer, scalar

# enum members as plain attributes: read on every instruction (see isa.plain)
Pseudo, T = plain(Pseudo), plain(T)  # type: ignore[misc]


class Analyzer:
    def __init__(self, program: Program, profile: Profile, privileged: bool, log_level: int,
                 complexity_limit: int = COMPLEXITY_LIMIT) -> None:
        self.program = program
        self.insns: list[Insn] = decode(program.insns)
        self.env = Env(program, self.insns, profile, privileged)
        self.env.read_hook = self._mark_read
        self.env.precise_hook = self._mark_precise
        self.cur_parent: Checkpoint | None = None
        self.hist: Hist = None  # the current path's instructions since cur_parent
        self.log = Log(self.insns, log_level, program.maps)
        self.limit = complexity_limit
        self.processed = 0
        self.in_progress: dict[int, dict[object, int]] = {}  # pc -> key -> count
        self.unkeyed: dict[int, list[Checkpoint]] = {}  # in progress, key not made yet
        self.looping: dict[int, list[Checkpoint]] = {}  # callback call pc -> in progress
        self.complete: dict[int, list[Checkpoint]] = {}
        self.per_insn: dict[int, int] = {}
        self.jumps = 0
        self.last_cp_insn = -100
        self.last_cp_jumps = -100
        self.total_states = 0
        self.cur_states = 0
        self.peak_states = 0

    # -- entry point -------------------------------------------------------------------

    def run(self) -> VerifierReport:
        # The cyclic garbage collector finds nothing to free during a walk (reference
        # counts free what a path drops) but goes over every kept state each time it
        # runs, a few percent of a long walk: it is off while verifying, as it was.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if collecting:
                gc.enable()

    def _run(self) -> VerifierReport:
        started = time.perf_counter()
        errors: list[tuple[int, str]] = []
        try:
            self._precheck()
            self._walk()
            self._check_stack_depth()
        except _Rejected as rej:
            errors.append((rej.pc, rej.message))
            self.log.reject(rej.pc, rej.message, rej.with_insn)
        except Exception as exc:  # a bug here must reject, never accept: fail closed
            message = f"internal verifier error: {exc!r}"
            errors.append((self.env.pc, message))
            self.log.reject(self.env.pc, message, True)
        self.log.summary(self.processed, self.limit, max(
            self.per_insn.values(), default=0),
            self.total_states, self.peak_states)
        return VerifierReport(
            program=self.program.name, accepted=not errors, errors=errors,
            log=self.log.render(), insns_processed=self.processed, states=self.total_states,
            peak_states=self.peak_states,
            max_states_per_insn=max(self.per_insn.values(), default=0),
            stack_depth=self._reported_depth(), seconds=time.perf_counter() - started,
            profile=self.env.profile.name, privileged=self.env.privileged)

    def _precheck(self) -> None:
        n = len(self.insns)
        profile = self.env.profile
        if n == 0:
            raise _Rejected(0, "program has no instructions", False)
        if self.program.prog_type != ProgType.XDP:
            raise _Rejected(0, f"program type {self.program.prog_type.name} is not supported "
                            f"by the vxdp verifier (XDP only)", False)
        if n > profile.max_insns:
            raise _Rejected(0, f"program of {n} insns is too large for device profile "
                            f"{profile.name} (max {profile.max_insns})", False)
        for i, spec in enumerate(self.program.maps):
            if spec.type not in profile.map_types:
                raise _Rejected(0, f"map {spec.name!r} (#{i}): map type {spec.type.name} is "
                                f"not offered by device profile {profile.name}", False)
        flow = cfg.Flow(self.insns)
        problem = cfg.structural_problem(self.insns, self.env.privileged, flow)
        if problem is not None:
            raise _Rejected(problem[0], problem[1], False)
        self.env.subprog_starts = flow.starts
        self.env.global_funcs = self._global_funcs()
        self.env.changes_pkt_data = cfg.funcs_changing_packet(self.insns,
                                                              calls.CHANGES_PKT_DATA, flow)
        self.env.note_hook = self.log.note
        self.prune_points = cfg.prune_points(self.insns, flow)
        self.callback_sites = {pc for pc in flow.calls if is_helper_call(self.insns[pc])
                               and self.insns[pc].imm in CALLBACK_HELPER_IDS}
        # liveness is looked at where states are kept and compared: at prune points
        self.live = cfg.live_regs(self.insns, flow, self.prune_points)
        self.stack_live = stacklive.live_slots(self.insns, flow, self.prune_points)

    # -- the walk ----------------------------------------------------------------------

    def _global_funcs(self) -> dict[int, FuncProto]:
        """The global functions (entry pc -> prototype), from the program's BTF."""
        program = self.program
        if program.btf is None or not program.func_info:
            return {}  # no BTF: every function is static, as for the kernel
        starts = [insn for insn, _ in program.func_info]
        if starts != self.env.subprog_starts:
            raise _Rejected(0, "func_info BTF section doesn't match subprog layout in BPF "
                            "program", False)
        if len(starts) == 1:
            return {}  # the main program alone: no function to ask the BTF about
        btf = parse_btf(program.btf)  # each time: the bench times it with the rest
        out = {}
        for insn, type_id in program.func_info[1:]:
            proto = func_proto(btf, type_id)
            if proto.is_global:
                out[insn] = proto
        return out

    def _walk(self) -> None:
        self._walk_from(0, new_state())
        # then every global function a verified path called, on its own (the kernel's
        # do_check_subprogs: in order, again while a pass finds new ones)
        env = self.env
        done: set[int] = set()
        while True:
            todo = [e for e in sorted(env.global_funcs) if e in env.called_globals
                    and e not in done]
            if not todo:
                return
            for entry in todo:
                done.add(entry)
                name = env.global_funcs[entry].name
                index = env.subprog_starts.index(entry)
                self.log.note(f"Validating {name}() func#{index}...")
                self._walk_from(entry, calls.global_entry_state(env, entry))
                self.log.note(f"Func#{index} ('{name}') is safe for any args that match "
                              f"its prototype")

    def _walk_from(self, pc: int, state: State) -> None:
        pending: list[Pending] = [(pc, state, None, None)]
        while pending:
            pc, state, parent, hist = pending.pop()
            self._path(pc, state, parent, hist, pending)

    def _path(self, pc: int, state: State, parent: Checkpoint | None, hist: Hist,
              pending: list[Pending]) -> None:
        insns = self.insns
        env = self.env
        prune_points = self.prune_points
        limit = self.limit
        logging = self.log.level
        self.hist = hist
        self.cur_parent = parent  # the path's newest checkpoint (set again when one is kept)
        processed = self.processed  # counted here, stored back for whoever reads it
        while True:
            processed += 1
            self.processed = processed
            if processed > limit:
                raise _Rejected(pc, f"BPF program is too large. Processed {processed} "
                                f"insn", False)
            if pc in prune_points:
                hit, parent = self._checkpoint(pc, state, parent)
                if hit:
                    self._finish(parent)
                    return
                self.cur_parent = parent
            env.pc = pc
            depth = len(state.frames)
            env.frames_alive = depth
            depth -= 1
            env.aux = None
            if logging:
                self.log.insn(pc, state)
            insn = insns[pc]
            nxt: int | None
            try:
                if insn.cls in _ALU_CLASSES:  # half of all instructions: no _step call
                    check_alu(env, state, insn)
                    nxt = pc + 1
                else:
                    nxt = self._step(pc, insn, state, parent, pending)
            except Reject as exc:
                raise _Rejected(pc, str(exc), True) from None
            self.hist = (pc, depth, env.aux, self.hist)
            if nxt is None:
                self._finish(parent)
                return
            pc = nxt

    def _mark_precise(self, regs: set[tuple[int, int]], slots: set[tuple[int, int]]) -> None:
        """A decision at the current instruction needed these values: mark where they came
        from precise, up the path's checkpoints."""
        backtrack(self.insns, self.hist, self.cur_parent, regs, slots)

    def _step(self, pc: int, insn: Insn, state: State, parent: Checkpoint | None,
              pending: list[Pending]) -> int | None:
        cls = insn.cls
        if cls in _ALU_CLASSES:
            check_alu(self.env, state, insn)
            return pc + 1
        if cls == BPF_LDX:
            self._ldx(state, insn)
            return pc + 1
        if cls in _STORE_CLASSES:
            self._store(state, insn)
            return pc + 1
        if cls == BPF_LD:
            self._ld_imm64(pc, state, insn)
            return pc + 2
        # JMP / JMP32
        op = insn.op
        if op == BPF_JA:
            self.jumps += 1
            target = jump_target(insn, pc)
            assert target is not None
            return target
        if op == BPF_EXIT:
            assert is_exit(insn)
            if len(state.frames) > 1:
                if state.cur.in_callback:
                    self.env.aux = "callback"  # back to the helper call, not after it
                    return calls.pop_callback(self.env, state)
                return calls.pop_frame(self.env, state)
            calls.check_exit(self.env, state)
            return None
        if op == BPF_CALL:
            if is_helper_call(insn):
                if insn.imm in CALLBACK_HELPER_IDS:
                    return self._callback_call(pc, insn, state, parent, pending)
                calls.check_helper_call(self.env, state, insn, pc)
                return pc + 1
            if is_pseudo_call(insn):
                return calls.push_frame(self.env, state, pc, pc + insn.imm + 1)
            raise Reject("calling kernel functions is not supported by vxdp")
        self.jumps += 1
        self.env.aux = jump_links(state, insn)
        fall, jump = check_cond_jmp(self.env, state, insn)
        target = pc + insn.off + 1
        if fall is not None and jump is not None:
            if parent is not None:
                parent.branches += 1
            depth = len(state.frames) - 1
            pending.append((target, jump, parent, (pc, depth, self.env.aux, self.hist)))
            return pc + 1
        if jump is not None:
            _adopt(state, jump)
            return target
        assert fall is not None
        _adopt(state, fall)
        return pc + 1

    def _callback_call(self, pc: int, insn: Insn, state: State, parent: Checkpoint | None,
                       pending: list[Pending]) -> int:
        """bpf_loop (the kernel's push_callback_call): the callback is verified as a loop
        body from the call, as long as it may run again (fewer rounds on this path than
        R1 may ask for); the caller goes on after the call as if it ran no more.  Coming
        back to the call in a state an earlier round covers ends the loop (_checkpoint)."""
        before = state.copy()
        calls.check_helper_call(self.env, state, insn, pc)
        self.env.mark_precise(before, 1, 4)  # the rounds, and the flags, decide
        if before.cur.callback_depth < before.regs[1].var.umax:
            cb = calls.callback_state(self.env, before, pc)
            if parent is not None:
                parent.branches += 1
            depth = len(before.frames) - 1
            pending.append((cb.cur.subprog, cb, parent, (pc, depth, "callback", self.hist)))
        state.cur.callback_depth = 0
        return pc + 1

    # -- loads and stores --------------------------------------------------------------

    def _ldx(self, state: State, insn: Insn) -> None:
        size = SIZE_BYTES[insn.size]  # type: ignore[index]
        # memory.access refuses an unreadable base register first, as read_reg would
        val = memory.access(self.env, state, insn.src, insn.off, size, memory.READ)
        assert val is not None
        if val.type is _SCALAR:  # val.is_scalar
            if insn.mode == BPF_MEMSX:
                val = scalar(sext(val.var, size))
            elif size < 8:
                val = scalar(val.var.cast(size)) if not val.var.is_const else val
            val = scalar(val.var)  # a fill: no link
        state.regs[insn.dst] = val

    def _store(self, state: State, insn: Insn) -> None:
        size = SIZE_BYTES[insn.size]  # type: ignore[index]
        if insn.cls == BPF_ST:
            # memory.access refuses an unreadable base register first, as read_reg would
            memory.access(self.env, state, insn.dst, insn.off, size, memory.WRITE,
                          imm=insn.imm)
            return
        value = read_reg(state, insn.src)
        dreg = read_reg(state, insn.dst)
        if insn.mode != BPF_ATOMIC:
            memory.access(self.env, state, insn.dst, insn.off, size, memory.WRITE, value=value,
                          value_regno=insn.src)
            return
        if value.is_pointer and not self.env.allow_ptr_leaks:
            raise Reject(f"R{insn.src} leaks addr into mem")
        if dreg.type in (T.CTX, T.PACKET, T.PACKET_META):
            raise Reject(f"BPF_ATOMIC stores into R{insn.dst} {dreg.type_name()} is not "
                         f"allowed")
        if insn.imm == BPF_CMPXCHG:
            read_reg(state, 0)
        memory.access(self.env, state, insn.dst, insn.off, size, memory.READ, strict=True)
        memory.access(self.env, state, insn.dst, insn.off, size, memory.WRITE,
                      value=scalar(), strict=True)
        loaded = scalar(Scalar.unsigned(size))
        if insn.imm == BPF_CMPXCHG:
            state.regs[0] = loaded
        elif insn.imm & BPF_FETCH:
            state.regs[insn.src] = loaded

    def _ld_imm64(self, pc: int, state: State, insn: Insn) -> None:
        if insn.mode != BPF_IMM:
            raise Reject("BPF_LD_[ABS|IND] instructions not allowed for this program type")
        src = insn.src
        if src == Pseudo.NONE:
            state.regs[insn.dst] = const(imm64(self.insns, pc))
            return
        if src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE):
            idx = insn.imm
            if not 0 <= idx < len(self.program.maps):
                raise Reject(f"fd {idx} is not pointing to valid bpf_map")
            spec = self.program.maps[idx]
            if src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX):
                state.regs[insn.dst] = pointer(T.MAP_PTR, map=idx)
                return
            off = self.insns[pc + 1].imm & 0xFFFFFFFF
            if spec.type not in ARRAY_MAP_TYPES or spec.max_entries != 1 or spec.percpu:
                raise Reject("no direct value access support for this map type")
            if off >= spec.value_size:
                raise Reject(f"invalid access to map value pointer, value_size="
                             f"{spec.value_size} off={off}")
            state.regs[insn.dst] = pointer(T.MAP_VALUE, map=idx, off=off)
            return
        if src == BPF_PSEUDO_FUNC:
            if not self.program.func_info:
                raise Reject("missing btf func_info")  # the kernel needs BTF for callbacks
            target = pc + insn.imm + 1
            if target in self.env.global_funcs:
                raise Reject("callback function not static")
            state.regs[insn.dst] = pointer(T.FUNC, off=target)
            return
        raise Reject("kernel BTF objects (ld_imm64 of a BTF id) are not supported by vxdp")

    # -- pruning -----------------------------------------------------------------------

    def _checkpoint(self, pc: int, state: State, parent: Checkpoint | None
                    ) -> tuple[bool, Checkpoint | None]:
        done = self.complete.get(pc)
        unkeyed = self.unkeyed.get(pc)
        if unkeyed:
            # back at a pc with checkpoints in progress (a loop): now their keys are needed
            bucket = self.in_progress.setdefault(pc, {})
            for cp in unkeyed:
                cp.key = prune.state_key(cp.state)
                bucket[cp.key] = bucket.get(cp.key, 0) + 1
            unkeyed.clear()
        running = self.in_progress.get(pc)
        callback_site = pc in self.callback_sites
        # a callback's loop converges on the states kept at its call: keep every one (the
        # kernel's forced checkpoint at callback call sites)
        new_cp = callback_site or (self.processed - self.last_cp_insn >= 8
                                   and self.jumps - self.last_cp_jumps >= 2)
        if not (done or running or new_cp):
            return False, parent
        live = self.live.get(pc, ALL_REGS)
        slots = self.stack_live.get(pc, -1)
        top = len(state.frames) - 1
        key: object = None
        cleaned: State | None = None
        # the exact key only where it is compared: with checkpoints in progress here
        # (a loop) or at a callback's call; a new checkpoint gets its key when a path
        # comes back while it is in progress (above), if one ever does
        if running or callback_site:
            cleaned = prune.clean(state, live, slots)
            key = prune.state_key(cleaned)
            if callback_site and self._converged(pc, cleaned, key, live, slots, state,
                                                 parent):
                return True, parent
            # Incomplete checkpoints are exactly the current path's ancestors (the walk is
            # depth-first), so meeting one again in exactly this state is an infinite loop.
            if running and key in running:
                raise _Rejected(pc, f"infinite loop detected at insn {pc}", False)
        # Compared before it is kept (if it is): subsumes looks past the dead registers
        # and slots itself, so the state as it is gives the same answer as its clean copy
        # (and an equal key is only a shortcut to a match subsumes finds as well); the
        # copy is made below, only for a state that is not pruned and is kept.
        compared = state if cleaned is None else cleaned
        if done:
            keep: list[Checkpoint] = []
            hit = False
            uninit_ok = self.env.allow_uninit_stack
            privileged = self.env.privileged
            for cp in done:
                # the scalars of `cp` pruning compares: those some path needed; every one
                # for unprivileged programs (the kernel starts their scalars precise)
                if not hit and ((key is not None and cp.key == key) or prune.subsumes(
                        cp.state, compared, live, uninit_ok, slots & cp.reads.get(top, 0),
                        cp.precise if privileged else None,
                        cp.precise_slots if privileged else None)):
                    cp.hits += 1
                    hit = True
                    # this path's future is the old one's: so are its stack reads and
                    # the values it depended on
                    self.cur_parent = parent
                    for frame, mask in cp.reads.items():
                        if frame <= top:
                            self._mark_read(state, frame, mask)
                    propagate(self.insns, cp, state, self.hist, parent)
                elif not hit:
                    cp.misses += 1
                    # the kernel's eviction: a state that rarely prunes is not worth keeping
                    if cp.misses > cp.hits * 3 + 3:
                        continue
                keep.append(cp)
            self.complete[pc] = keep
            if hit:
                if self.log.level:
                    self.log.note(f"{pc}: safe")
                return True, parent
        # Remember a new state only now and then on straight paths (the kernel's
        # heuristic), so long loops do not keep one state per iteration.
        if not new_cp:
            return False, parent
        self.last_cp_insn, self.last_cp_jumps = self.processed, self.jumps
        if cleaned is None:
            cleaned = prune.clean(state, live, slots)
        cp = Checkpoint(pc, cleaned, key, parent, self.hist,
                        written_before=tuple([f.written for f in state.frames]))
        self.hist = None
        for f in state.frames:
            f.written = 0
        if key is None:
            self.unkeyed.setdefault(pc, []).append(cp)
        else:
            bucket = self.in_progress.setdefault(pc, {})
            bucket[key] = bucket.get(key, 0) + 1
        if callback_site:
            self.looping.setdefault(pc, []).append(cp)
        self.total_states += 1
        self.cur_states += 1
        self.peak_states = max(self.peak_states, self.cur_states)
        self.per_insn[pc] = self.per_insn.get(pc, 0) + 1
        return False, cp

    def _converged(self, pc: int, cleaned: State, key: object, live: frozenset[int],
                   slots: int, state: State, parent: Checkpoint | None) -> bool:
        """Back at a callback's helper call in a state an earlier round on this path
        covers (every scalar compared, precise or not: the kernel's RANGE_WITHIN): that
        round goes on to explore all this one would, so this path ends.  Its scalars are
        marked precise on this path (all of them: the round's own marks are not final)."""
        # the latest rounds only: a loop whose state grows every round would otherwise be
        # compared with every earlier round (fewer candidates: less pruning, never unsound)
        for cp in reversed(self.looping.get(pc, [])[-LOOP_CANDIDATES:]):
            if cp.key == key or prune.subsumes(cp.state, cleaned, live,
                                               self.env.allow_uninit_stack, slots):
                regs = {(fi, r) for fi, _, r, reg in cp.state.all_regs()
                        if r >= 0 and reg.is_scalar}
                spills = {(fi, si) for fi, si, _, reg in cp.state.all_regs()
                          if si is not None and reg.is_scalar}
                backtrack(self.insns, self.hist, parent, regs, spills)
                self.log.note(f"{pc}: safe (the callback's loop converged)")
                return True
        return False

    def _mark_read(self, state: State, frame: int, mask: int) -> None:
        """A path read these slots of a frame: every checkpoint up the path learns it,
        until one is reached past a whole-slot write of them."""
        mask &= ~state.frames[frame].written
        cp = self.cur_parent
        while cp is not None and mask:
            new = mask & ~cp.reads.get(frame, 0)
            if not new:
                return  # marked before, and so were the checkpoints above it
            cp.reads[frame] = cp.reads.get(frame, 0) | new
            screened = cp.written_before[frame] if frame < len(cp.written_before) else 0
            mask = new & ~screened
            cp = cp.parent

    def _finish(self, cp: Checkpoint | None) -> None:
        """A path ended: walk up the checkpoints it went through, completing them."""
        while cp is not None:
            cp.branches -= 1
            if cp.branches > 0:
                return
            if cp.key is None:
                self.unkeyed[cp.pc].remove(cp)
            else:
                bucket = self.in_progress[cp.pc]
                bucket[cp.key] -= 1
                if not bucket[cp.key]:
                    del bucket[cp.key]
            self.complete.setdefault(cp.pc, []).append(cp)
            cp.hist = None  # no path will backtrack through it again
            if cp.pc in self.looping:
                self.looping[cp.pc].remove(cp)
            self.cur_states -= 1  # states still being proved: the kernel's peak_states
            cp = cp.parent

    # -- stack depth -------------------------------------------------------------------

    def _stack_depth(self) -> int:
        """The deepest stack any chain of calls from the main program reaches, in bytes
        (each frame rounded up to 32, as the kernel's check_max_stack_depth); a chain of
        more than MAX_CALL_FRAMES frames (possible through global functions, each
        verified on its own) raises _TooDeep.  Memoised per (function, frame): bounded
        work and recursion whatever the call graph (a compiled build has no recursion
        limit to stop a runaway one)."""
        env = self.env
        memo: dict[tuple[int, int], int] = {}

        def depth(sub: int, frame: int) -> int:
            if frame > MAX_CALL_FRAMES:
                raise _TooDeep(frame - 1)  # as the kernel counts it: frames below this one
            got = memo.get((sub, frame))
            if got is None:
                own = env.max_depth.get(sub, 0)
                own = (max(own, 1) + 31) // 32 * 32 if own else 0
                got = own + max((depth(c, frame + 1) for c in env.callees.get(sub, ())),
                                default=0)
                memo[(sub, frame)] = got
            return got

        return depth(0, 1)

    def _reported_depth(self) -> int:
        """The report's stack depth: 0 when the chain is too deep to have one."""
        try:
            return self._stack_depth()
        except _TooDeep:
            return 0

    def _check_stack_depth(self) -> None:
        try:
            total = self._stack_depth()
        except _TooDeep as deep:
            raise _Rejected(0, f"the call stack of {deep.frames} frames is too deep !",
                            False) from None
        if total > STACK_SIZE:
            frames = 1 + len(self.env.callees)
            raise _Rejected(0, f"combined stack size of {frames} calls is {total}. Too large",
                            False)


def _adopt(state: State, other: State) -> None:
    """Make `state` (the object the walk holds) become `other` in place."""
    if other is not state:
        state.adopt(other)


ALL_REGS: Final = frozenset(range(11))
_ALU_CLASSES: Final = frozenset({BPF_ALU, BPF_ALU64})
_STORE_CLASSES: Final = frozenset({BPF_ST, BPF_STX})
_SCALAR: Final = T.SCALAR
LOOP_CANDIDATES: Final = 64  # earlier rounds a callback's round is compared with (BPF_COMPLEXITY_LIMIT_STATES)
Pending = tuple[int, State, Checkpoint | None, Hist]  # a path waiting at a branch's other side


class _TooDeep(Exception):
    """A chain of calls of more than MAX_CALL_FRAMES frames; `frames` is the number the
    kernel's check_max_stack_depth prints ("the call stack of 8 frames is too deep !"
    for a ninth frame)."""

    def __init__(self, frames: int) -> None:
        super().__init__(frames)
        self.frames = frames


class _Rejected(Exception):
    def __init__(self, pc: int, message: str, with_insn: bool) -> None:
        super().__init__(message)
        self.pc = pc
        self.message = message
        self.with_insn = with_insn
