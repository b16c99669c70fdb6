"""The host's control socket: `vxdp prog`, `vxdp map` and `vxdp link` against a running
`vxdp host`.

    server = ControlServer(runtime, "/run/vxdp/host0.ctl")
    await nursery.start(server.serve)          # HostRuntime.run does this for --control

The trio edge of `vxdp.control.protocol`: one task per client feeds received bytes into a
server `Connection`, runs each request through `ControlHandler` and writes the reply.
The handler works on the runtime the guests are served by, so a program attached here
is the one the C ports run, and the maps changed here are the maps the datapath reads
and writes (`XdpHook.engine_maps`: the engine's maps, which `HostRuntime.attach` hands
to every C port).

Operations (the `OPS` table of the protocol names their arguments):

* `prog.attach` loads an ELF object (an absolute path on the host) with the project's
  loader, verifies the program with our verifier under the host's profile (the device
  profile's XDP capabilities when it offers the offload, else `native`: everything the
  C core runs) in a worker thread, then attaches it; a refusal answers EACCES with the
  verifier's log and leaves the attached program in place.
* `prog.detach`, `prog.show`, `prog.dump_xlated` (kernel syntax, maps as `map[id:N]`),
  `prog.dump_jited` (the C the jit engine compiled; EOPNOTSUPP with the reason otherwise).
* `map.show|dump|lookup|update|delete` on the attached program's maps, named by name or
  id, with the kernel's errnos: ENOENT for a lookup miss or a delete of nothing, E2BIG
  for a full map, EEXIST / ENOENT under noexist / exist, EPERM on a frozen map.
* `stats`: what `--stats-json` writes.
* `guest.list`: every guest (`GuestPort.link_info`: number, socket, MAC, link, live,
  device status, negotiated features, announce pending).  `guest.link` {guest, up} sets a
  guest's carrier (kept across its reconnects; `GuestPort.set_link`), `guest.announce`
  {guest} asks it to announce itself; both answer the guest's entry and `signalled`,
  whether a config change went to the front-end (`guest.link` also `changed`).  ENODEV (usage) for a guest number the
  host does not serve, ENOTCONN for announce without a live device, EOPNOTSUPP for
  announce to a driver without VIRTIO_NET_F_GUEST_ANNOUNCE.

Ids: a program gets the next program id when it is first seen attached (bpftool's `id`),
its maps the next map ids; both only grow for the life of the host.

Hostile clients: a malformed frame is answered with an error and the connection goes on;
a frame over the limit or a stream that ends mid-frame is answered (when possible) and
closed; an op that raises anything unexpected answers EIO and is logged.  At most
`MAX_CLIENTS` clients at once; one more has its first request answered EUSERS ("too
many users", naming the limit) and is closed.  None of it touches the guests' tasks.
`prog.attach` reads a regular file only, MAX_OBJECT_BYTES of it at most, opened without
waiting: a FIFO or /dev/zero is refused as what it is.
"""

from __future__ import annotations

import errno as E
import itertools
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from vxdp.bpf import mapjson
from vxdp.bpf.disasm import default_map_name, insn_text
from vxdp.bpf.elf import load_object, object_name, select_program
from vxdp.bpf.isa import decode, iter_insns
from vxdp.bpf.maps import Map
from vxdp.bpf.profiles import Profile
from vxdp.bpf.program import BPF_ANY, BPF_EXIST, BPF_NOEXIST, Program, ProgType
from vxdp.bpf.verifier import VerifierReport, verify
from vxdp.control.protocol import (
    UPDATE_FLAGS,
    BadMessage,
    Closed,
    Connection,
    ErrorInfo,
    NeedData,
    Reply,
    Request,
    RequestFailed,
)
from vxdp.errors import UsageError, VhostUserLocalError, VxdpError
from vxdp.vhost_user.fds import describe as describe_fd
from vxdp.vhost_user.transport import check_socket_path

from .xdp import host_verifier_profile

if TYPE_CHECKING:
    from .guestport import GuestPort
    from .host import HostRuntime

log = logging.getLogger("vxdp.runtime.control")

MAX_CLIENTS = 16
#: Seconds a client over MAX_CLIENTS gets to send its request, then to take the refusal.
TURN_AWAY_WAIT = 1.0
#: The largest object file prog.attach reads: BPF objects are kilobytes, a few MiB with
#: BTF and debug info.
MAX_OBJECT_BYTES = 64 << 20
FLAGS = dict(zip(UPDATE_FLAGS, (BPF_ANY, BPF_NOEXIST, BPF_EXIST), strict=True))


def failed(errno: int, message: str, log_text: str = "") -> RequestFailed:
    return RequestFailed(ErrorInfo(errno, message, "failed", log_text))


@dataclass
class Attached:
    """The attached program as the control socket shows it."""

    id: int
    program: Program
    map_ids: list[int]
    loaded_at: float


def read_object(path: str) -> bytes:
    """The bytes of the object file at `path`, read whole, never waiting on the file nor
    taking more than MAX_OBJECT_BYTES: anything but a regular file (a FIFO, whose open
    waits for a writer; /dev/zero, which never ends; a directory) is a usage error."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{path} is {describe_fd(fd)}, not a regular file: an object "
                             f"file is read whole")
        data = bytearray()
        while len(data) <= min(st.st_size, MAX_OBJECT_BYTES) \
                and (chunk := os.read(fd, 1 << 20)):
            data += chunk  # (a file that grows while read is read as far as the limit)
        if max(st.st_size, len(data)) > MAX_OBJECT_BYTES:
            raise UsageError(f"{path} is larger than the {MAX_OBJECT_BYTES >> 20} MiB an "
                             f"object file may have")
        return bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _load_and_verify(path: str, section: str | None, name: str | None, profile: Profile,
                     engine: str) -> tuple[Program, VerifierReport]:
    """Worker thread: load, verify, and for the jit engine compile ahead (the attach on
    the event loop then finds the compiled object in the process cache)."""
    data = read_object(path)
    try:
        program = select_program(load_object(data, name=object_name(path)), section, name)
    except ValueError as exc:  # ElfError, InvalidProgram: an object we cannot use
        raise UsageError(f"{path}: {exc}") from None
    if program.prog_type != ProgType.XDP:
        raise UsageError(f"program {program.name!r} (section {program.section}) is "
                         f"{program.prog_type.name.lower()}, not xdp")
    report = verify(program, profile=profile)
    if report.accepted and engine == "jit":
        from vxdp import native
        from vxdp.bpf import jit
        jit.compile_program(program.insns, native.MODE_XDP, name=program.name)
    return program, report


class ControlHandler:
    """The operations, on one HostRuntime (see the module docstring)."""

    def __init__(self, runtime: HostRuntime) -> None:
        self.runtime = runtime
        self._prog_ids = itertools.count(1)
        self._map_ids = itertools.count(1)
        self._attached: Attached | None = None
        self._attach_lock = trio.Lock()
        self.ops: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "prog.attach": self.prog_attach, "prog.detach": self.prog_detach,
            "prog.show": self.prog_show, "prog.dump_xlated": self.prog_dump_xlated,
            "prog.dump_jited": self.prog_dump_jited, "map.show": self.map_show,
            "map.dump": self.map_dump, "map.lookup": self.map_lookup,
            "map.update": self.map_update, "map.delete": self.map_delete,
            "stats": self.stats, "guest.list": self.guest_list,
            "guest.link": self.guest_link, "guest.announce": self.guest_announce,
        }

    async def handle(self, request: Request) -> Any:
        """The result of `request`; RequestFailed carries the error reply of a failure
        (a UsageError is EINVAL "usage"; any other VxdpError "failed", with its errno
        when it has one: MapError's is the kernel's)."""
        try:
            return await self.ops[request.op](request.args)
        except RequestFailed:
            raise
        except UsageError as exc:
            raise RequestFailed(ErrorInfo(E.EINVAL, str(exc), "usage")) from None
        except VxdpError as exc:  # a map op, an engine refusing a program, a core error
            raise failed(getattr(exc, "errno", E.EINVAL), str(exc)) from None

    # -- the attached program ------------------------------------------------------------

    def current(self) -> Attached | None:
        program = self.runtime.xdp.program
        if program is None:
            return None
        if self._attached is None or self._attached.program is not program:
            self._attached = Attached(next(self._prog_ids), program,
                                      [next(self._map_ids) for _ in program.maps], time.time())
        return self._attached

    def _need(self) -> Attached:
        att = self.current()
        if att is None:
            raise failed(E.ENOENT, "no program is attached on this host")
        return att

    def describe(self, att: Attached) -> dict[str, Any]:
        p = att.program
        engine = self.runtime.xdp.engine_name
        return {"id": att.id, "type": "xdp", "name": p.name, "tag": p.tag,
                "gpl_compatible": p.gpl_compatible, "loaded_at": int(att.loaded_at),
                "bytes_xlated": len(p.insns), "insns": p.insn_count, "jited": engine == "jit",
                "engine": engine, "section": p.section, "digest": p.digest,
                "map_ids": list(att.map_ids), "maps": [m.name for m in p.maps]}

    async def prog_attach(self, args: dict[str, Any]) -> Any:
        path = args["path"]
        if not os.path.isabs(path):
            raise UsageError(f"object path {path!r} is not absolute (the host's working "
                             f"directory is not the client's)")
        profile = host_verifier_profile(self.runtime.profile)
        async with self._attach_lock:
            program, report = await trio.to_thread.run_sync(
                _load_and_verify, path, args.get("section"), args.get("program"), profile,
                self.runtime.xdp.engine_name, abandon_on_cancel=True)
            if not report.accepted:
                pc = report.errors[0][0] if report.errors else -1
                keeps = self.runtime.xdp.describe()
                raise failed(E.EACCES, f"program {program.name!r} rejected by the verifier "
                                       f"(profile {profile.name}) at pc {pc}: {report.reason}; "
                                       f"still attached: {keeps}", report.log)
            self.runtime.attach(program)
        return self.describe(self._need())

    async def prog_detach(self, args: dict[str, Any]) -> Any:
        att = self._need()
        self.runtime.detach()
        self._attached = None
        return {"id": att.id, "name": att.program.name}

    async def prog_show(self, args: dict[str, Any]) -> Any:
        att = self.current()
        return [] if att is None else [self.describe(att)]

    async def prog_dump_xlated(self, args: dict[str, Any]) -> Any:
        att = self._need()
        insns = decode(att.program.insns)

        def map_name(index: int) -> str:
            ok = 0 <= index < len(att.map_ids)
            return f"id:{att.map_ids[index]}" if ok else default_map_name(index)
        return {"id": att.id, "name": att.program.name, "insns": [
            {"pc": pc, "opcode": f"{insns[pc].opcode:02x}",
             "disasm": insn_text(insns, pc, map_name=map_name)} for pc in iter_insns(insns)]}

    async def prog_dump_jited(self, args: dict[str, Any]) -> Any:
        att = self._need()
        engine = self.runtime.xdp.engine_name
        if engine != "jit":
            from vxdp.bpf.engine import engine_class
            try:
                engine_class("jit")
                hint = "start the host with --engine jit"
            except UsageError as exc:
                hint = str(exc)
            raise failed(E.EOPNOTSUPP, f"program {att.program.name!r} runs on the {engine} "
                                       f"engine: no jited image ({hint})")
        from vxdp import native
        from vxdp.bpf import jit
        compiled = jit.compile_program(att.program.insns, native.MODE_XDP,
                                       name=att.program.name)
        return {"id": att.id, "name": att.program.name, "engine": engine,
                "source_path": str(compiled.source_path),
                "source": compiled.source_path.read_text()}

    # -- maps ----------------------------------------------------------------------------

    def _maps(self) -> list[tuple[int, Map]]:
        att = self._need()
        return list(zip(att.map_ids, self.runtime.xdp.engine_maps, strict=True))

    def _map(self, ref: str | int) -> tuple[int, Map]:
        maps = self._maps()
        for map_id, m in maps:
            if ref == (map_id if isinstance(ref, int) else m.name):
                return map_id, m
        have = ", ".join(f"{i} {m.name}" for i, m in maps) or "none"
        what = f"id {ref}" if isinstance(ref, int) else f"named {ref!r}"
        raise UsageError(f"no map {what} (maps: {have})")

    @staticmethod
    def _show_map(map_id: int, m: Map) -> dict[str, Any]:
        s = m.spec
        return {"id": map_id, "type": mapjson.type_name(s.type), "name": m.name,
                "flags": s.flags, "bytes_key": s.key_size, "bytes_value": s.value_size,
                "max_entries": s.max_entries, "frozen": int(s.frozen)}

    async def map_show(self, args: dict[str, Any]) -> Any:
        if "map" in args:
            return [self._show_map(*self._map(args["map"]))]
        if self.current() is None:
            return []
        return [self._show_map(i, m) for i, m in self._maps()]

    async def map_dump(self, args: dict[str, Any]) -> Any:
        map_id, m = self._map(args["map"])
        return {"id": map_id, "name": m.name, **mapjson.dump_map(m)}

    async def map_lookup(self, args: dict[str, Any]) -> Any:
        _, m = self._map(args["map"])
        key = mapjson.parse_key(m, args["key"])
        value = m.lookup(key)
        if value is None:
            raise failed(E.ENOENT, f"map {m.name!r}: lookup: no entry for key {key.hex()}")
        return {"key": key.hex(),
                "value": mapjson.value_hex(value)}

    async def map_update(self, args: dict[str, Any]) -> Any:
        _, m = self._map(args["map"])
        key = mapjson.parse_key(m, args["key"])
        given = args["value"]
        size = m.spec.value_size
        compact = "".join(given.split()) if isinstance(given, str) else ""
        if m.spec.percpu and len(compact) == 2 * size * m.ncpus:
            # every CPU's value, one after another (else one value for all, as map JSON)
            given = [compact[i:i + 2 * size] for i in range(0, len(compact), 2 * size)]
        value = mapjson.parse_value(m, given)
        m.update(key, value, FLAGS[args.get("flags", "any")])
        return None

    async def map_delete(self, args: dict[str, Any]) -> Any:
        _, m = self._map(args["map"])
        m.delete(mapjson.parse_key(m, args["key"]))
        return None

    async def stats(self, args: dict[str, Any]) -> Any:
        return self.runtime.stats()

    # -- guests --------------------------------------------------------------------------

    def _guest(self, number: int) -> GuestPort:
        guests = self.runtime.guests
        if not 0 <= number < len(guests):
            have = f"0..{len(guests) - 1}" if guests else "none"
            raise RequestFailed(ErrorInfo(E.ENODEV, f"no guest {number} on this host (guests: "
                                              f"{have})", "usage"))
        return guests[number]

    async def guest_list(self, args: dict[str, Any]) -> Any:
        return [g.link_info() for g in self.runtime.guests]

    async def guest_link(self, args: dict[str, Any]) -> Any:
        port = self._guest(args["guest"])
        changed = port.link_up != args["up"]
        signalled = port.set_link(args["up"])
        return {**port.link_info(), "changed": changed, "signalled": signalled}

    async def guest_announce(self, args: dict[str, Any]) -> Any:
        port = self._guest(args["guest"])
        signalled = port.announce()
        return {**port.link_info(), "signalled": signalled}


class ControlServer:
    """Listens on `path` and serves control clients for `runtime`."""

    def __init__(self, runtime: HostRuntime, path: str | os.PathLike[str], *,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.path = os.fspath(path)
        self.handler = ControlHandler(runtime)
        self.max_clients = max_clients
        self._check_path()  # before the event loop: a live socket there is a UsageError
        self.clients = 0

    def _check_path(self) -> None:
        try:
            check_socket_path(self.path, "--control")
        except VhostUserLocalError as exc:
            raise UsageError(str(exc)) from None

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Listen (bound under a temporary name, renamed once listening, mode 0600) and
        serve clients until cancelled; the socket file goes with the server."""
        self._check_path()
        staging = f"{self.path}.{os.getpid()}.binding"
        listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await listener.bind(staging)
            os.chmod(staging, 0o600)
            listener.listen(16)
            os.replace(staging, self.path)
            task_status.started(self.path)
            async with trio.open_nursery() as nursery:
                while True:
                    sock, _ = await listener.accept()
                    if self.clients >= self.max_clients:
                        nursery.start_soon(self._turn_away, sock)
                    else:
                        self.clients += 1
                        nursery.start_soon(self._client, sock)
        finally:
            listener.close()
            for name in (staging, self.path):
                try:
                    os.unlink(name)
                except FileNotFoundError:
                    pass

    async def _turn_away(self, sock: trio.socket.SocketType) -> None:
        """A client over the limit: its first request (sent within TURN_AWAY_WAIT) is
        answered EUSERS naming the limit, then the connection closes.  Read first, so
        that the client gets the answer rather than a reset on its write."""
        conn = Connection("server")
        request_id: int | None = None
        with sock:
            with trio.move_on_after(TURN_AWAY_WAIT):
                while isinstance(event := conn.next_event(), NeedData):
                    conn.receive_data(await sock.recv(65536))
                if isinstance(event, Request):
                    request_id = event.id
            error = ErrorInfo(E.EUSERS, f"the host serves at most {self.max_clients} control "
                                        f"clients at once and {self.clients} are connected: "
                                        f"this one is turned away (try again once one has "
                                        f"closed)", "failed")
            with trio.move_on_after(TURN_AWAY_WAIT):
                try:
                    await _send_all(sock, conn.send_error(request_id, error))
                except OSError:
                    pass  # it left already

    async def _client(self, sock: trio.socket.SocketType) -> None:
        conn = Connection("server")
        try:
            with sock:
                await self._converse(sock, conn)
        except OSError as exc:  # the client went away while we wrote
            log.info("control client gone: %s", exc.strerror or exc)
        finally:
            self.clients -= 1

    async def _converse(self, sock: trio.socket.SocketType, conn: Connection) -> None:
        while True:
            event = conn.next_event()
            if isinstance(event, NeedData):
                conn.receive_data(await sock.recv(65536))
                continue
            if isinstance(event, Closed):
                return
            if isinstance(event, BadMessage):
                log.info("control client sent a bad message: %s", event.message)
                await _send_all(sock, conn.send_error(event.id, event.error()))
                if event.fatal:
                    return
                continue
            if isinstance(event, Reply):  # a server Connection never yields one
                return
            await _send_all(sock, await self._answer(conn, event))

    async def _answer(self, conn: Connection, request: Request) -> bytes:
        try:
            result = await self.handler.handle(request)
        except RequestFailed as exc:
            return conn.send_error(request.id, exc.error)
        except Exception as exc:  # never let one request take the host down
            log.exception("control op %s failed unexpectedly", request.op)
            return conn.send_error(request.id, ErrorInfo(
                E.EIO, f"{request.op}: internal error: {type(exc).__name__}: {exc}"))
        return conn.send_result(request.id, result)


async def _send_all(sock: trio.socket.SocketType, data: bytes) -> None:
    view = memoryview(data)
    while view:
        sent = await sock.send(view)
        view = view[sent:]


__all__ = ["MAX_CLIENTS", "ControlHandler", "ControlServer"]

