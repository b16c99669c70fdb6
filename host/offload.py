"""The device side of the XDP offload: maps, the program, verification (sans-I/O).

Everything that decides what an offload command does lives here; `host.ctrl` hands the
parsed commands of class VIRTIO_NET_CTRL_EBPF to `DeviceOffload.handle`, `host.Device`
carries out what comes back.  The protocol is docs/offload-spec.md; the object lifecycle
follows the kernel's device-bound offload (netdevsim, shared/reference/offload-behaviour.md).

Rules
-----
* One owner: a `DeviceOffload` belongs to one device.  Map handles are small integers it
  hands out (1, 2, ...), never reused while the device lives, valid on this device only
  and checked on every command; a handle from another guest's device is just a handle
  this one does not hold (EBADF).  A device reset or the device's removal destroys every
  map and the program (`reset`).
* The device verifies every program it is given, whatever the guest checked, under the
  profile derived from the capabilities it advertises (`Profile.from_capabilities`): the
  guest that read them and the device apply the same rules.  LD_IMM64 instructions with
  src_reg BPF_PSEUDO_MAP_FD or BPF_PSEUDO_MAP_VALUE carry map handles; the device rebinds
  them to its maps, and any other LD_IMM64 is left for the verifier to judge.
* Every command is answered after the ack: le32 errno (a positive Linux errno, 0 on
  success), then the command's result.  errno 0 goes with VIRTIO_NET_OK, any other with
  VIRTIO_NET_ERR.  A command that fails changes nothing; a result that would not fit the
  driver's writable room is refused before anything is done (EMSGSIZE), so nothing the
  device did goes unreported (a map created with its handle lost).  SET_OFFLOAD's log is
  the verifier's, followed by the device's own line, truncated to the room when needed.
* Verification runs outside the device's event handling: SET_OFFLOAD becomes a
  `VerifyJob` that the caller runs (`job.run()`, CPU only: a worker thread in `vxdp
  host`) and hands back to `Device.finish_ctrl(job)`.  The control queue holds that
  command, and the ones behind it, until then.  A reset meanwhile cancels the job: what
  it verified is never loaded.

Errnos: EBADF an unknown map handle; EINVAL a malformed command (unknown sub-command,
key or value size unlike the map's, buf too short, flags the map refuses); EOPNOTSUPP a
map type the device does not offer; ENOSPC xdp_max_maps maps held already; ENOMEM
xdp_max_map_mem_kib would be exceeded; E2BIG more than xdp_max_insns instructions;
EACCES the verifier refused the program; EBUSY FREE of a map the program uses; ENOENT
QUERY with no program, a lookup miss, the end of GET_NEXT; EEXIST / E2BIG from updates
as the kernel's maps answer them; EMSGSIZE a result that does not fit.
"""

from __future__ import annotations

import errno as E
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from virtio_spec.ctrl import VIRTIO_NET_ERR, VIRTIO_NET_OK
from virtio_spec.errors import RemoteProtocolError
from virtio_spec.offload import (
    BPF_INSN_SIZE,
    XDP_PROG_INFO_GPL,
    VirtioNetBpfMapCmd,
    VirtioNetBpfProgCmd,
    VirtioNetCtrlEbpf,
    XdpCapabilities,
    XdpEngine,
    XdpProgState,
    split_map_buf,
    virtio_net_ebpf_map_create_result,
    virtio_net_ebpf_map_data_result,
    virtio_net_ebpf_prog_info,
    virtio_net_ebpf_prog_query_result,
    virtio_net_ebpf_prog_set_result,
    virtio_net_ebpf_result,
)
from vxdp.bpf.coremaps import CoreMap
from vxdp.bpf.profiles import Profile
from vxdp.bpf.program import MapSpec, MapType, Program, XdpAction, rebind_map_refs
from vxdp.bpf.verifier import VerifierReport, verify
from vxdp.errors import MapError, ProgramFault, VxdpError, errno_name

_M, _P = VirtioNetBpfMapCmd, VirtioNetBpfProgCmd
#: Engines a device can run offloaded programs on, as QUERY reports them.
ENGINES = {"interp": XdpEngine.INTERP, "jit": XdpEngine.JIT}
#: The name offloaded programs go by: the RFC's body carries none.
PROGRAM_NAME = "offloaded"


class OffloadRefused(Exception):
    """A command the device answers with an errno (internal to this module)."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno


def _refuse(errno: int, message: str) -> OffloadRefused:
    return OffloadRefused(errno, message)


@dataclass
class OffloadedMap:
    """A map a guest created on this device."""

    handle: int
    spec: MapSpec
    map: CoreMap

    @property
    def mem_kib(self) -> int:
        """What it counts against xdp_max_map_mem_kib: max_entries * (key + value)."""
        s = self.spec
        return -(-s.max_entries * (s.key_size + s.value_size) // 1024)


@dataclass
class OffloadedProgram:
    """The program a guest offloaded, as the device runs it."""

    program: Program  # LD_IMM64 map references rebound to indices into `maps`
    maps: tuple[OffloadedMap, ...]
    sent: bytes  # the instructions as the guest sent them (map handles in imm)
    report: VerifierReport
    engine: str
    image_len: int = 0

    @property
    def digest(self) -> bytes:
        """SHA-256 of the instructions as sent (QUERY's digest)."""
        return hashlib.sha256(self.sent).digest()

    @property
    def handles(self) -> tuple[int, ...]:
        return tuple(m.handle for m in self.maps)


@dataclass
class VerifyJob:
    """One SET_OFFLOAD under verification; `run()` is CPU only and touches no device
    state, so the caller may run it on another thread."""

    program: Program
    maps: tuple[OffloadedMap, ...]
    sent: bytes
    profile: Profile
    engine: str
    room: int  # writable bytes after the ack
    report: VerifierReport | None = None
    image_len: int = 0
    engine_note: str = ""
    cancelled: bool = field(default=False, compare=False)

    def run(self) -> None:
        """Verify, and for the jit engine compile ahead (cached by digest).  A verifier
        that fails on hostile input refuses the program rather than taking the device
        (and every other guest of its host) down."""
        try:
            report = verify(self.program, profile=self.profile, log_level=0)
        except Exception as exc:  # a bug of ours on hostile input: refuse, name it
            report = VerifierReport(self.program.name, False,
                                    [(-1, f"verifier failed: {type(exc).__name__}: {exc}")],
                                    log=f"verifier failed: {type(exc).__name__}: {exc}\n",
                                    profile=self.profile.name)
        self.report = report
        if not report.accepted or self.engine != "jit":
            return
        from vxdp import native
        from vxdp.bpf import jit
        if (why := jit.unavailable()) is not None or \
                self.program.insn_count > jit.JIT_MAX_INSNS:
            why = why or f"{self.program.insn_count} insns is above the jit's " \
                         f"{jit.JIT_MAX_INSNS}"
            self.engine, self.engine_note = "interp", f"jit unavailable ({why}): interpreted"
            return
        try:
            compiled = jit.compile_program(self.program.insns, native.MODE_XDP,
                                           name=PROGRAM_NAME)
        except VxdpError as exc:
            self.engine, self.engine_note = "interp", f"jit failed ({exc}): interpreted"
            return
        self.image_len = compiled.so_path.stat().st_size


@dataclass(frozen=True)
class OffloadOutcome:
    """A command's answer: ack, result bytes, a line for the trace; `job` when it waits
    for verification; `changed` when the program on the receive path changed."""

    ack: int
    result: bytes
    detail: str
    job: VerifyJob | None = None
    changed: bool = False


class DeviceOffload:
    """The offload objects of one device (see the module docstring)."""

    def __init__(self, caps: XdpCapabilities, *, engine: str = "interp",
                 name: str = "vxdp") -> None:
        if engine not in ENGINES:
            raise ValueError(f"offload engine {engine!r} is not one of {', '.join(ENGINES)}")
        self.caps = caps
        self.profile = Profile.from_capabilities(caps)
        self.engine = engine
        self.name = name
        self.maps: dict[int, OffloadedMap] = {}
        self.program: OffloadedProgram | None = None
        self.pending: VerifyJob | None = None
        self._next_handle = 1
        self.counts: dict[str, int] = {"commands": 0, "refused": 0, "loaded": 0,
                                       "rejected": 0}

    # ------------------------------------------------------------------ lifecycle

    def reset(self) -> bool:
        """Device reset or removal: every map and the program go, a pending job is
        cancelled.  True when a program was loaded (the datapath must drop it)."""
        had = self.program is not None
        if self.pending is not None:
            self.pending.cancelled = True
        self.pending = None
        self.program = None
        self.maps.clear()
        return had

    @property
    def mem_kib(self) -> int:
        return sum(m.mem_kib for m in self.maps.values())

    # ------------------------------------------------------------------ dispatch

    def handle(self, command: int, body: Any, room: int) -> OffloadOutcome:
        """Answer one parsed command of class VIRTIO_NET_CTRL_EBPF (`room`: writable bytes
        after the ack)."""
        self.counts["commands"] += 1
        table: dict[tuple[int, int], Callable[[Any, int], OffloadOutcome]] = {
            (VirtioNetCtrlEbpf.VIRTIO_NET_CTRL_EBPF_PROG, _P.VIRTIO_NET_BPF_CMD_SET_OFFLOAD):
                self._set,
            (VirtioNetCtrlEbpf.VIRTIO_NET_CTRL_EBPF_PROG, _P.VIRTIO_NET_BPF_CMD_UNSET_OFFLOAD):
                self._unset,
            (VirtioNetCtrlEbpf.VIRTIO_NET_CTRL_EBPF_PROG, _P.VIRTIO_NET_BPF_CMD_QUERY):
                self._query,
            (VirtioNetCtrlEbpf.VIRTIO_NET_CTRL_EBPF_MAP, _M.VIRTIO_NET_BPF_CMD_CREATE_MAP):
                self._create,
            (VirtioNetCtrlEbpf.VIRTIO_NET_CTRL_EBPF_MAP, _M.VIRTIO_NET_BPF_CMD_FREE_MAP):
                self._free,
        }
        elem = {_M.VIRTIO_NET_BPF_CMD_UPDATE_ELEM, _M.VIRTIO_NET_BPF_CMD_LOOKUP_ELEM,
                _M.VIRTIO_NET_BPF_CMD_DELETE_ELEM, _M.VIRTIO_NET_BPF_CMD_GET_FIRST,
                _M.VIRTIO_NET_BPF_CMD_GET_NEXT}
        cmd = int(body.cmd)
        kind = "prog" if command == VirtioNetCtrlEbpf.VIRTIO_NET_CTRL_EBPF_PROG else "map"
        handler = table.get((command, cmd))
        if handler is None and kind == "map" and cmd in elem:
            handler = self._element
        if handler is None:
            return self._failed(E.EINVAL, f"unknown {kind} sub-command {cmd}")
        try:
            return handler(body, room)
        except OffloadRefused as exc:
            return self._failed(exc.errno, str(exc))
        except RemoteProtocolError as exc:
            return self._failed(E.EINVAL, str(exc))

    def _failed(self, errno: int, message: str, result: bytes | None = None
                ) -> OffloadOutcome:
        """VIRTIO_NET_ERR with `errno` (or the given result, which starts with it)."""
        self.counts["refused"] += 1
        if result is None:
            result = virtio_net_ebpf_result.build({"errno": errno})
        return OffloadOutcome(int(VIRTIO_NET_ERR), result,
                              f"{errno_name(errno)}: {message}")

    @staticmethod
    def _ok(result: bytes, detail: str, *, changed: bool = False) -> OffloadOutcome:
        return OffloadOutcome(int(VIRTIO_NET_OK), result, detail, changed=changed)

    @staticmethod
    def _need_room(room: int, size: int, what: str) -> None:
        if room < size:
            raise _refuse(E.EMSGSIZE, f"{what}: the result takes {size} bytes, the driver "
                                      f"left {room} writable bytes after the ack")

    def _map(self, handle: int) -> OffloadedMap:
        m = self.maps.get(handle)
        if m is None:
            raise _refuse(E.EBADF, f"map handle {handle} is not a map of this device "
                                   f"(handles: {sorted(self.maps) or 'none'})")
        return m

    # ------------------------------------------------------------------ maps

    def _create(self, body: Any, room: int) -> OffloadOutcome:
        self._need_room(room, virtio_net_ebpf_map_create_result.sizeof(), "CREATE_MAP")
        mtype = int(body.map_type)
        if not self.caps.allows_map_type(mtype):
            name = MapType(mtype).name if mtype in MapType._value2member_map_ else str(mtype)
            raise _refuse(E.EOPNOTSUPP, f"map type {name} is not offered by device profile "
                                        f"{self.profile.name} (xdp_map_types "
                                        f"{self.caps.xdp_map_types:#x})")
        if len(self.maps) >= self.caps.xdp_max_maps:
            raise _refuse(E.ENOSPC, f"the device holds {len(self.maps)} maps, its "
                                    f"xdp_max_maps")
        spec = MapSpec(f"map{self._next_handle}", MapType(mtype), int(body.key_size),
                       int(body.value_size), int(body.max_entries), int(body.map_flags))
        need = -(-spec.max_entries * (spec.key_size + spec.value_size) // 1024)
        if self.mem_kib + need > self.caps.xdp_max_map_mem_kib:
            raise _refuse(E.ENOMEM, f"a map of {need} KiB on top of {self.mem_kib} KiB "
                                    f"exceeds xdp_max_map_mem_kib "
                                    f"{self.caps.xdp_max_map_mem_kib}")
        try:
            core = CoreMap(spec)
        except MapError as exc:
            raise _refuse(exc.errno, str(exc)) from None
        handle = self._next_handle
        self._next_handle += 1
        self.maps[handle] = OffloadedMap(handle, spec, core)
        result = virtio_net_ebpf_map_create_result.build({"errno": 0, "map_handle": handle})
        return self._ok(result, f"map {handle} created: {spec.type.name} key {spec.key_size} "
                                f"value {spec.value_size} max_entries {spec.max_entries}")

    def _in_use(self, handle: int) -> bool:
        return any(job is not None and handle in job_handles(job)
                   for job in (self.program, self.pending))

    def _free(self, body: Any, room: int) -> OffloadOutcome:
        self._need_room(room, virtio_net_ebpf_result.sizeof(), "FREE_MAP")
        handle = int(body.map_fd)
        self._map(handle)
        if self._in_use(handle):
            raise _refuse(E.EBUSY, f"map {handle} is used by the offloaded program: "
                                   f"UNSET_OFFLOAD first")
        del self.maps[handle]
        return self._ok(virtio_net_ebpf_result.build({"errno": 0}), f"map {handle} freed")

    def _element(self, body: Any, room: int) -> OffloadOutcome:
        cmd = _M(int(body.cmd))
        handle = int(body.map_fd)
        m = self._map(handle)
        spec = m.spec
        if (int(body.key_size), int(body.value_size)) != (spec.key_size, spec.value_size):
            raise _refuse(E.EINVAL, f"map {handle}: key_size {int(body.key_size)} value_size "
                                    f"{int(body.value_size)}, the map has {spec.key_size} and "
                                    f"{spec.value_size}")
        key, rest = split_map_buf(body)
        name = cmd.name.removeprefix("VIRTIO_NET_BPF_CMD_")
        size = {_M.VIRTIO_NET_BPF_CMD_LOOKUP_ELEM: spec.value_size,
                _M.VIRTIO_NET_BPF_CMD_GET_FIRST: spec.key_size,
                _M.VIRTIO_NET_BPF_CMD_GET_NEXT: spec.key_size}.get(cmd)
        self._need_room(room, 4 + (size or 0), name)
        try:
            if cmd is _M.VIRTIO_NET_BPF_CMD_UPDATE_ELEM:
                m.map.update(key, rest[:spec.value_size], int(body.flags))
                return self._ok(virtio_net_ebpf_result.build({"errno": 0}),
                                f"map {handle}: updated key {key.hex()}")
            if cmd is _M.VIRTIO_NET_BPF_CMD_DELETE_ELEM:
                m.map.delete(key)
                return self._ok(virtio_net_ebpf_result.build({"errno": 0}),
                                f"map {handle}: deleted key {key.hex()}")
            if cmd is _M.VIRTIO_NET_BPF_CMD_LOOKUP_ELEM:
                value = m.map.lookup(key)
                if value is None:
                    raise _refuse(E.ENOENT, f"map {handle}: no entry for key {key.hex()}")
                assert isinstance(value, bytes)  # offload profiles hold no per-CPU maps
                return self._ok(_data(value, spec.value_size), f"map {handle}: looked up "
                                                               f"key {key.hex()}")
            nxt = m.map.next_key(None if cmd is _M.VIRTIO_NET_BPF_CMD_GET_FIRST else key)
        except MapError as exc:
            raise _refuse(exc.errno, str(exc)) from None
        if nxt is None:
            raise _refuse(E.ENOENT, f"map {handle}: no key after "
                                    f"{'the start' if cmd is _M.VIRTIO_NET_BPF_CMD_GET_FIRST else key.hex()}")
        return self._ok(_data(nxt, spec.key_size), f"map {handle}: {name.lower()} -> "
                                                   f"{nxt.hex()}")

    # ------------------------------------------------------------------ the program

    def _rebind(self, insns: bytes) -> tuple[bytes, tuple[OffloadedMap, ...]]:
        """Map handles in LD_IMM64 imm -> indices into the program's maps, in order of
        first use."""
        used: list[int] = []

        def index(pc: int, handle: int) -> int:
            if handle not in self.maps:
                raise _refuse(E.EBADF, f"LD_IMM64 at pc {pc} names map handle {handle}, "
                                       f"which this device does not hold")
            if handle not in used:
                used.append(handle)
            return used.index(handle)
        out = rebind_map_refs(insns, index)
        return out, tuple(self.maps[h] for h in used)

    def _set(self, body: Any, room: int) -> OffloadOutcome:
        self._need_room(room, 8, "SET_OFFLOAD")
        sent = bytes(body.insns)
        count = len(sent) // BPF_INSN_SIZE
        if count == 0:
            raise _refuse(E.EINVAL, "SET_OFFLOAD without instructions")
        if count > self.caps.xdp_max_insns:
            raise _refuse(E.E2BIG, f"program of {count} insns exceeds xdp_max_insns "
                                   f"{self.caps.xdp_max_insns}")
        insns, maps = self._rebind(sent)
        license = "GPL" if int(body.gpl_compatible) else "Proprietary"
        program = Program(PROGRAM_NAME, "xdp", insns, tuple(m.spec for m in maps), license)
        job = VerifyJob(program, maps, sent, self.profile, self.engine, room)
        self.pending = job
        return OffloadOutcome(int(VIRTIO_NET_OK), b"", f"verifying {count} insns under "
                                                       f"profile {self.profile.name}", job=job)

    def finish(self, job: VerifyJob) -> OffloadOutcome:
        """The answer to a SET_OFFLOAD whose job ran (see the module docstring)."""
        if job is not self.pending or job.cancelled:
            raise ValueError("finish() of a job this device is not waiting for")
        self.pending = None
        report = job.report
        if report is None:
            raise ValueError("finish() of a job that did not run")
        gone = [m.handle for m in job.maps if self.maps.get(m.handle) is not m]
        if gone:  # cannot happen while the control queue is held; kept as a guard
            return self._failed(E.EBADF, f"maps {gone} went away during verification")
        count = job.program.insn_count
        if not report.accepted:
            self.counts["rejected"] += 1
            pc = report.errors[0][0] if report.errors else -1
            line = (f"[{self.name}] program of {count} insns refused under device profile "
                    f"{self.profile.name}: pc {pc}: {report.reason}")
            return self._failed(E.EACCES, f"verifier: pc {pc}: {report.reason}",
                                _set_result(E.EACCES, _log(report, line), job.room))
        self.program = OffloadedProgram(job.program, job.maps, job.sent, report, job.engine,
                                        job.image_len)
        self.counts["loaded"] += 1
        note = f" ({job.engine_note})" if job.engine_note else ""
        line = (f"[{self.name}] program of {count} insns loaded on engine {job.engine}{note} "
                f"under device profile {self.profile.name}")
        return self._ok(_set_result(0, _log(report, line), job.room),
                        f"program of {count} insns offloaded (engine {job.engine}, "
                        f"{len(job.maps)} maps)", changed=True)

    def _unset(self, body: Any, room: int) -> OffloadOutcome:
        self._need_room(room, virtio_net_ebpf_result.sizeof(), "UNSET_OFFLOAD")
        had = self.program is not None
        self.program = None  # removing what is not there is a silent no-op (kernel)
        return self._ok(virtio_net_ebpf_result.build({"errno": 0}),
                        "program removed" if had else "no program: nothing to remove",
                        changed=had)

    def _query(self, body: Any, room: int) -> OffloadOutcome:
        self._need_room(room, 4 + virtio_net_ebpf_prog_info.sizeof(), "QUERY")
        p = self.program
        if p is None:
            raise _refuse(E.ENOENT, "no program is offloaded on this device")
        info = {"state": XdpProgState.LOADED, "engine": ENGINES[p.engine],
                "flags": XDP_PROG_INFO_GPL if p.program.gpl_compatible else 0,
                "insn_cnt": len(p.sent) // BPF_INSN_SIZE,
                "xlated_cnt": p.program.insn_count, "image_len": p.image_len,
                "map_cnt": len(p.maps), "tag": bytes.fromhex(p.program.tag),
                "digest": p.digest}
        result = virtio_net_ebpf_prog_query_result.build({"errno": 0, "info": info})
        return self._ok(result, f"program {p.program.tag}: {len(p.sent) // 8} insns, "
                                f"engine {p.engine}")

    # ------------------------------------------------------------------ views

    def describe(self) -> dict[str, Any]:
        """JSON-ready: the program and the maps, as the host's control socket shows them."""
        p = self.program
        return {
            "profile": self.profile.name, "engine": self.engine,
            "program": None if p is None else {
                "tag": p.program.tag, "digest": p.digest.hex(), "insns": p.program.insn_count,
                "engine": p.engine, "gpl_compatible": p.program.gpl_compatible,
                "maps": list(p.handles), "image_len": p.image_len},
            "maps": [{"handle": m.handle, "type": m.spec.type.name.lower(),
                      "key_size": m.spec.key_size, "value_size": m.spec.value_size,
                      "max_entries": m.spec.max_entries, "flags": m.spec.flags}
                     for m in self.maps.values()],
            "counts": dict(self.counts),
        }


class OffloadRun:
    """The offloaded program on the device model's receive path (pairs the C datapath
    does not run): one engine call per burst over the device's own maps.  Faults and
    return values outside enum xdp_action count as ABORTED, as the kernel's
    bpf_warn_invalid_xdp_action and trace_xdp_exception paths do."""

    def __init__(self, offloaded: OffloadedProgram, ifindex: int) -> None:
        from vxdp.bpf.engine import create_engine
        self.offloaded = offloaded
        self.ifindex = ifindex
        self.engine = create_engine(offloaded.engine, offloaded.program,
                                    [m.map for m in offloaded.maps])

    def run(self, frames: list[bytes], rx_queue: int
            ) -> list[tuple[XdpAction | None, bytes, int | None]]:
        """(action, frame after the run, redirect target) per frame; None: aborted."""
        try:
            results = self.engine.run_xdp(frames, ingress_ifindex=self.ifindex,
                                          rx_queue_index=rx_queue)
        except ProgramFault:
            out: list[tuple[XdpAction | None, bytes, int | None]] = []
            for frame in frames:
                try:
                    r = self.engine.run_xdp([frame], ingress_ifindex=self.ifindex,
                                            rx_queue_index=rx_queue)[0]
                    out.append((r.action, r.data, r.redirect))
                except ProgramFault:
                    out.append((None, frame, None))
            return out
        return [(r.action, r.data, r.redirect) for r in results]


def job_handles(obj: OffloadedProgram | VerifyJob) -> tuple[int, ...]:
    return tuple(m.handle for m in obj.maps)


def _data(data: bytes, size: int) -> bytes:
    return bytes(virtio_net_ebpf_map_data_result.build({"errno": 0, "data": data},
                                                        size=size))


def _log(report: VerifierReport, line: str) -> str:
    text = report.log if report.log.endswith("\n") or not report.log else report.log + "\n"
    return text + line + "\n"


def _set_result(errno: int, log: str, room: int) -> bytes:
    """SET_OFFLOAD's result, the log cut (from its start) to what fits `room`: the last
    lines say why, so they are the ones kept."""
    raw = log.encode()
    keep = max(room - 8, 0)
    if len(raw) > keep:
        raw = raw[len(raw) - keep:]
    return bytes(virtio_net_ebpf_prog_set_result.build({"errno": errno, "log": raw}))


__all__ = ["ENGINES", "PROGRAM_NAME", "DeviceOffload", "OffloadOutcome", "OffloadRun",
           "OffloadedMap", "OffloadedProgram", "VerifyJob"]
