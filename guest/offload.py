"""The guest side of the XDP offload: its objects on one device and the commands that
make them (sans-I/O).  The protocol is docs/offload-spec.md.

An operation is a generator: it yields the control commands it needs one at a time
(`OffloadRequest`: class, command, body, result room) and is sent each one's `Answer`;
its return value is the operation's result.  The caller moves commands (the driver's
control queue: `Driver.ctrl_command`, then the completion) and never decides anything:

    client = OffloadClient(driver.xdp_caps)
    op = client.load(program)                # maps first, then SET_OFFLOAD
    request = next(op)
    while True:
        answer = Answer.of(await carry(request))
        try:
            request = op.send(answer)
        except StopIteration as done:
            offloaded = done.value
            break

Operations: `create_map`, `free_map`, `update`, `lookup`, `delete`, `next_key`, `dump`
(GET_FIRST / GET_NEXT and a LOOKUP per key), `load` (every map of the program created,
global data and any carried-over entries written, then SET_OFFLOAD with each map
reference's imm set to the device's map handle), `unload` (UNSET_OFFLOAD, then the maps freed), `query`.

A device's refusal raises `OffloadError` with the errno, the device's detail and (for
SET_OFFLOAD) the verifier log; `load` frees the maps it created before it raises, so a
refused program leaves nothing behind on the device.  The client's view of the device
(`maps`, `offloaded`) changes only on success; `forget()` drops it when the device went
(a reset or a new device after a reconnect destroys every offloaded object).

The caller may check a program against the device's advertised capabilities first
(`check(program)`): the same rules the device verifies with, derived from the same
config fields, so a guest in `auto` mode can fall back before it sends anything.
"""

from __future__ import annotations

import errno as E
import os
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from virtio_spec.ctrl import VIRTIO_NET_ERR, VIRTIO_NET_OK
from virtio_spec.offload import (
    VIRTIO_NET_CTRL_EBPF,
    VirtioNetBpfMapCmd,
    VirtioNetBpfProgCmd,
    VirtioNetCtrlEbpf,
    XdpCapabilities,
    XdpEngine,
    XdpProgState,
    map_buf_len,
    virtio_net_ctrl_ebpf_map,
    virtio_net_ctrl_ebpf_prog,
    virtio_net_ebpf_map_create_result,
    virtio_net_ebpf_prog_info,
    virtio_net_ebpf_prog_query_result,
    virtio_net_ebpf_result,
)
from vxdp.bpf.profiles import Profile
from vxdp.bpf.program import BPF_ANY, MapSpec, Program, rebind_map_refs
from vxdp.bpf.verifier import VerifierReport, verify
from vxdp.errors import VxdpError, errno_name

_M, _P = VirtioNetBpfMapCmd, VirtioNetBpfProgCmd
_PROG, _MAP = VirtioNetCtrlEbpf.VIRTIO_NET_CTRL_EBPF_PROG, VirtioNetCtrlEbpf.VIRTIO_NET_CTRL_EBPF_MAP
#: Room for SET_OFFLOAD's result: errno, log length and the log (the device cuts the log
#: from its start to fit, keeping the lines that say why).
LOG_ROOM = 64 * 1024
#: QUERY's result: errno and the 60-byte info block.
QUERY_ROOM = 4 + virtio_net_ebpf_prog_info.sizeof()


class OffloadError(VxdpError):
    """An offload command failed: `errno` (a Linux errno) and `log` (the device's log
    for SET_OFFLOAD, the verifier's, ending with the device's own line; else the detail).

    The message says who ended the command: `answered` when the errno is the device's
    answer ("SET_OFFLOAD: device answered EACCES (...)"); otherwise the guest ended it
    itself, before or without an answer (its own checks, a broken answer, its transport
    or agent: "UPDATE_ELEM: the device went away"), and the detail is the message."""

    def __init__(self, what: str, errno: int, log: str = "", *,
                 answered: bool = False) -> None:
        name = errno_name(errno)
        reason = log.strip().splitlines()[-1] if log.strip() else os.strerror(errno)
        super().__init__(f"{what}: device answered {name} ({reason})" if answered
                         else f"{what}: {reason}")
        self.what = what
        self.errno = errno
        self.log = log
        self.answered = answered


@dataclass(frozen=True)
class OffloadRequest:
    """One control command to send: class, command, the body, and the writable bytes
    after the ack the answer needs."""

    cls: int
    command: int
    body: bytes
    room: int
    what: str  # for messages: "CREATE_MAP", "SET_OFFLOAD", ...

    def describe(self) -> str:
        return f"{self.what} ({len(self.body)}-byte body, {self.room}-byte result room)"


@dataclass(frozen=True)
class Answer:
    """The device's answer to an OffloadRequest: the ack (None: no valid ack came, the
    command failed on the way) and the result bytes after it."""

    ack: int | None
    result: bytes = b""
    error: str = ""

    @classmethod
    def of(cls, command: Any) -> Answer:
        """From a completed `guest.CtrlCommand`."""
        return cls(command.ack, bytes(command.result), command.error)


@dataclass(frozen=True)
class GuestMap:
    """A map this guest created on the device."""

    handle: int
    spec: MapSpec


@dataclass
class Offloaded:
    """The program this guest offloaded: its maps on the device (in program order) and
    what the device said when it loaded it."""

    program: Program
    maps: tuple[GuestMap, ...]
    log: str

    @property
    def handles(self) -> tuple[int, ...]:
        return tuple(m.handle for m in self.maps)


@dataclass(frozen=True)
class ProgInfo:
    """QUERY's answer."""

    state: XdpProgState
    engine: XdpEngine
    gpl_compatible: bool
    insn_cnt: int
    xlated_cnt: int
    image_len: int
    map_cnt: int
    tag: str
    digest: str

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state.name.lower(), "engine": self.engine.name.lower(),
                "gpl_compatible": self.gpl_compatible, "insn_cnt": self.insn_cnt,
                "xlated_cnt": self.xlated_cnt, "image_len": self.image_len,
                "map_cnt": self.map_cnt, "tag": self.tag, "digest": self.digest}


Op = Generator[OffloadRequest, Answer, Any]


@dataclass
class OffloadClient:
    """This guest's offload objects on one device, and the operations on them."""

    caps: XdpCapabilities | None
    ebpf_class: int = VIRTIO_NET_CTRL_EBPF
    maps: dict[int, GuestMap] = field(default_factory=dict)
    offloaded: Offloaded | None = None

    @property
    def profile(self) -> Profile:
        if self.caps is None:
            raise OffloadError("offload", E.EOPNOTSUPP,
                               "the device does not offer VIRTIO_NET_F_XDP_OFFLOAD")
        return Profile.from_capabilities(self.caps)

    def check(self, program: Program) -> VerifierReport:
        """Verify `program` under the device's advertised capabilities (what the device
        will check again on SET_OFFLOAD)."""
        return verify(program, profile=self.profile)

    def forget(self) -> None:
        """The device is gone or was reset: it holds none of our objects any more."""
        self.maps.clear()
        self.offloaded = None

    # ------------------------------------------------------------------ exchanges

    def _exchange(self, request: OffloadRequest) -> Generator[OffloadRequest, Answer, bytes]:
        """Send one command; the result bytes after the errno when it is 0, else raise."""
        answer = yield request
        if answer.ack is None:
            raise OffloadError(request.what, E.EIO, answer.error or "no answer")
        if len(answer.result) < 4:
            if answer.ack == VIRTIO_NET_ERR:
                # no errno: a device that does not know the class (the RFC probed so)
                raise OffloadError(request.what, E.EOPNOTSUPP,
                                   "VIRTIO_NET_ERR without a result: the device does not "
                                   "implement the offload")
            raise OffloadError(request.what, E.EPROTO, f"ack {answer.ack} with "
                                                       f"{len(answer.result)} result bytes, "
                                                       f"no errno")
        errno = virtio_net_ebpf_result.parse(answer.result[:4]).errno
        if (errno == 0) != (answer.ack == VIRTIO_NET_OK) or answer.ack not in (
                VIRTIO_NET_OK, VIRTIO_NET_ERR):
            raise OffloadError(request.what, E.EPROTO,
                               f"ack {answer.ack} does not agree with errno {errno}")
        if errno:
            log = ""
            if request.command == _PROG and request.what == "SET_OFFLOAD":
                log = _set_log(answer.result)
            raise OffloadError(request.what, errno, log, answered=True)
        return answer.result[4:]

    def _unless_missing(self, request: OffloadRequest
                        ) -> Generator[OffloadRequest, Answer, bytes | None]:
        """`_exchange`, with ENOENT (no such key, no more keys, no program) as None."""
        try:
            return (yield from self._exchange(request))
        except OffloadError as exc:
            if exc.errno == E.ENOENT:
                return None
            raise

    def _map_request(self, cmd: VirtioNetBpfMapCmd, spec: MapSpec, handle: int = 0, *,
                     key: bytes = b"", value: bytes = b"", flags: int = 0,
                     room: int = 4) -> OffloadRequest:
        buf = key + value
        if key or value:
            # the RFC's layout: key || value-or-next-key, buf_len key + max(key, value)
            buf = buf.ljust(map_buf_len(spec.key_size, spec.value_size), b"\0")
        body = virtio_net_ctrl_ebpf_map.build(dict(
            cmd=cmd, map_type=int(spec.type), key_size=spec.key_size,
            value_size=spec.value_size, max_entries=spec.max_entries,
            map_flags=spec.flags, map_fd=handle, flags=flags, buf=buf))
        return OffloadRequest(self.ebpf_class, _MAP, bytes(body), room,
                              cmd.name.removeprefix("VIRTIO_NET_BPF_CMD_"))

    def _prog_request(self, cmd: VirtioNetBpfProgCmd, insns: bytes = b"", gpl: bool = False,
                      room: int = 4) -> OffloadRequest:
        body = virtio_net_ctrl_ebpf_prog.build(dict(cmd=cmd, gpl_compatible=int(gpl),
                                                    insns=insns))
        return OffloadRequest(self.ebpf_class, _PROG, bytes(body), room,
                              cmd.name.removeprefix("VIRTIO_NET_BPF_CMD_"))

    def _guest_map(self, handle: int) -> GuestMap:
        m = self.maps.get(handle)
        if m is None:
            raise OffloadError("map", E.EBADF, f"this guest holds no map {handle} on the "
                                              f"device (maps: {sorted(self.maps) or 'none'})")
        return m

    # ------------------------------------------------------------------ maps

    def create_map(self, spec: MapSpec) -> Generator[OffloadRequest, Answer, GuestMap]:
        """MAP CREATE; the map's initial contents (global data) written after it."""
        req = self._map_request(_M.VIRTIO_NET_BPF_CMD_CREATE_MAP, spec, room=8)
        out = yield from self._exchange(req)
        handle = virtio_net_ebpf_map_create_result.parse(bytes(4) + out[:4]).map_handle
        m = GuestMap(int(handle), spec)
        self.maps[m.handle] = m
        if spec.initial is not None:
            value = spec.initial.ljust(spec.value_size, b"\0")
            yield from self.update(m.handle, bytes(4), value)
        return m

    def free_map(self, handle: int) -> Generator[OffloadRequest, Answer, None]:
        m = self._guest_map(handle)
        yield from self._exchange(self._map_request(_M.VIRTIO_NET_BPF_CMD_FREE_MAP, m.spec,
                                                    handle))
        del self.maps[handle]

    def update(self, handle: int, key: bytes, value: bytes,
               flags: int = BPF_ANY) -> Generator[OffloadRequest, Answer, None]:
        m = self._guest_map(handle)
        _sizes(m, key, value)
        yield from self._exchange(self._map_request(_M.VIRTIO_NET_BPF_CMD_UPDATE_ELEM, m.spec,
                                                    handle, key=key, value=value,
                                                    flags=flags))

    def delete(self, handle: int, key: bytes) -> Generator[OffloadRequest, Answer, None]:
        m = self._guest_map(handle)
        _sizes(m, key)
        yield from self._exchange(self._map_request(_M.VIRTIO_NET_BPF_CMD_DELETE_ELEM, m.spec,
                                                    handle, key=key))

    def lookup(self, handle: int, key: bytes
               ) -> Generator[OffloadRequest, Answer, bytes | None]:
        """The value, or None when the map has no such key (ENOENT)."""
        m = self._guest_map(handle)
        _sizes(m, key)
        req = self._map_request(_M.VIRTIO_NET_BPF_CMD_LOOKUP_ELEM, m.spec, handle, key=key,
                                room=4 + m.spec.value_size)
        out = yield from self._unless_missing(req)
        return None if out is None else _data(out, m.spec.value_size)

    def next_key(self, handle: int, key: bytes | None
                 ) -> Generator[OffloadRequest, Answer, bytes | None]:
        """GET_FIRST (key None) or GET_NEXT; None at the end (ENOENT)."""
        m = self._guest_map(handle)
        cmd = _M.VIRTIO_NET_BPF_CMD_GET_FIRST if key is None else _M.VIRTIO_NET_BPF_CMD_GET_NEXT
        if key is not None:
            _sizes(m, key)
        req = self._map_request(cmd, m.spec, handle, key=key or bytes(m.spec.key_size),
                                room=4 + m.spec.key_size)
        out = yield from self._unless_missing(req)
        return None if out is None else _data(out, m.spec.key_size)

    def dump(self, handle: int, limit: int = 1 << 20
             ) -> Generator[OffloadRequest, Answer, list[tuple[bytes, bytes]]]:
        """Every entry: GET_FIRST, GET_NEXT until ENOENT, a LOOKUP per key (an entry
        deleted meanwhile is skipped, as bpftool does)."""
        m = self._guest_map(handle)
        out: list[tuple[bytes, bytes]] = []
        key = yield from self.next_key(handle, None)
        while key is not None and len(out) < max(limit, m.spec.max_entries):
            value = yield from self.lookup(handle, key)
            if value is not None:
                out.append((key, value))
            key = yield from self.next_key(handle, key)
        return out

    # ------------------------------------------------------------------ the program

    def load(self, program: Program, contents: Mapping[str, Iterable[tuple[bytes, bytes]]]
             | None = None) -> Generator[OffloadRequest, Answer, Offloaded]:
        """Offload `program`: its maps created on the device first, global data written,
        `contents` (entries by map name: what a move carries over) written, then
        SET_OFFLOAD with every map reference's imm the device's handle, so the program
        never runs on maps still being filled.  It replaces a program this guest
        offloaded before (whose maps are then freed).  On a refusal the maps created
        here are freed again and OffloadError raised."""
        created: list[GuestMap] = []
        try:
            for spec in program.maps:
                m = yield from self.create_map(spec)
                created.append(m)
                for key, value in (contents or {}).get(spec.name, ()):
                    yield from self.update(m.handle, key, value)
            handles = [m.handle for m in created]
            insns = rebind_map_refs(program.insns, lambda pc, index: handles[index])
            req = self._prog_request(_P.VIRTIO_NET_BPF_CMD_SET_OFFLOAD, insns,
                                     program.gpl_compatible, room=LOG_ROOM)
            out = yield from self._exchange(req)
        except OffloadError:
            yield from self._free_quietly(created)
            raise
        old = self.offloaded
        self.offloaded = Offloaded(program, tuple(created), _log_of(out))
        if old is not None:
            yield from self._free_quietly(old.maps)
        return self.offloaded

    def unload(self) -> Generator[OffloadRequest, Answer, bool]:
        """UNSET_OFFLOAD, then free the program's maps; False when none was offloaded."""
        old = self.offloaded
        yield from self._exchange(self._prog_request(_P.VIRTIO_NET_BPF_CMD_UNSET_OFFLOAD))
        self.offloaded = None
        if old is None:
            return False
        yield from self._free_quietly(old.maps)
        return True

    def query(self) -> Generator[OffloadRequest, Answer, ProgInfo | None]:
        """QUERY: the device's view of the offloaded program; None when it has none."""
        req = self._prog_request(_P.VIRTIO_NET_BPF_CMD_QUERY, room=QUERY_ROOM)
        out = yield from self._unless_missing(req)
        if out is None:
            return None
        if len(out) < QUERY_ROOM - 4:
            raise OffloadError("QUERY", E.EPROTO, f"info of {len(out)} bytes, not "
                                                  f"{QUERY_ROOM - 4}")
        info = virtio_net_ebpf_prog_query_result.parse(bytes(4) + out).info
        return ProgInfo(XdpProgState(info.state), XdpEngine(info.engine),
                        bool(info.flags & 1), int(info.insn_cnt), int(info.xlated_cnt),
                        int(info.image_len), int(info.map_cnt), bytes(info.tag).hex(),
                        bytes(info.digest).hex())

    def _free_quietly(self, maps: tuple[GuestMap, ...] | list[GuestMap]
                      ) -> Generator[OffloadRequest, Answer, None]:
        for m in maps:
            if m.handle in self.maps:
                try:
                    yield from self.free_map(m.handle)
                except OffloadError:
                    self.maps.pop(m.handle, None)  # the device has it no longer, or never


def _sizes(m: GuestMap, key: bytes, value: bytes | None = None) -> None:
    if len(key) != m.spec.key_size or (value is not None and len(value) != m.spec.value_size):
        got = f"key {len(key)}" + ("" if value is None else f", value {len(value)}")
        raise OffloadError("map", E.EINVAL, f"map {m.handle} has key_size {m.spec.key_size} "
                                            f"value_size {m.spec.value_size}; got {got} bytes")


def _data(out: bytes, size: int) -> bytes:
    if len(out) < size:
        # a hostile or broken device: fewer result bytes than the map's key or value
        raise OffloadError("map", E.EPROTO, f"result of {len(out)} bytes where the map's "
                                            f"{size} were due")
    return out[:size]


def _log_of(out: bytes) -> str:
    return _set_log(bytes(4) + out)


def _set_log(result: bytes) -> str:
    """SET_OFFLOAD's log from its whole result (errno first); a log_len past the bytes
    the device wrote gets what is there."""
    if len(result) < 8:
        return ""
    size = int.from_bytes(result[4:8], "little")
    return result[8:8 + size].decode(errors="replace")


__all__ = [
    "LOG_ROOM",
    "QUERY_ROOM",
    "Answer",
    "GuestMap",
    "OffloadClient",
    "OffloadError",
    "OffloadRequest",
    "Offloaded",
    "ProgInfo",
]
