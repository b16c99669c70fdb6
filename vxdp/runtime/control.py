"""The host's control socket: `vxdp prog`, `vxdp map` and `vxdp link` against a running
`vxdp host`.

    server = ControlServer(ControlHandler(runtime), "/run/vxdp/host0.ctl")
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
  `prog.dump_jited` (the C the jit engine compiled, or a SmartNIC's image: its machine
  and, per BPF instruction, the machine words; EOPNOTSUPP with the reason otherwise).
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
waiting: a FIFO or /dev/zero is refused as what it is (`xdp.read_object`).
"""

from __future__ import annotations

import errno as E
import itertools
import logging
import os
import socket
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import trio

from vxdp.bpf import mapjson
from vxdp.bpf.disasm import default_map_name, insn_text
from vxdp.bpf.isa import decode, iter_insns
from vxdp.bpf.maps import Map, MapValue
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
from vxdp.packets import TrafficGenerator, parse_mix
from vxdp.vhost_user.transport import check_socket_path

from .xdp import host_verifier_profile, load_program

if TYPE_CHECKING:
    from .guestport import GuestPort
    from .host import HostRuntime

log = logging.getLogger("vxdp.runtime.control")

MAX_CLIENTS = 16
#: Seconds a client over MAX_CLIENTS gets to send its request, then to take the refusal.
TURN_AWAY_WAIT = 1.0
MAX_INJECT = 1_000_000  # frames one wire.inject may ask for
FLAGS = dict(zip(UPDATE_FLAGS, (BPF_ANY, BPF_NOEXIST, BPF_EXIST), strict=True))


def failed(errno: int, message: str, log_text: str = "", *,
           kind: Literal["failed", "usage"] = "failed") -> RequestFailed:
    return RequestFailed(ErrorInfo(errno, message, kind, log_text))


@dataclass
class Shown:
    """A program as the control socket shows it: the host-attached one (`guest` None) or
    the one a guest offloaded to its device."""

    id: int
    program: Program
    maps: list[Map]
    map_ids: list[int]
    loaded_at: float
    engine: str
    guest: GuestPort | None = None
    image: Any = None  # a SmartNIC's translated image (vxdp.bpf.nic.Image)


class Ids:
    """bpftool-style ids: the next number the first time an object is seen, for as long
    as it lives (kept by weak reference, so a freed object's id is never reused)."""

    def __init__(self) -> None:
        self._next = itertools.count(1)
        self._seen: list[tuple[weakref.ref[Any], int]] = []

    def of(self, obj: Any) -> int:
        self._seen = [(r, n) for r, n in self._seen if r() is not None]
        for ref, n in self._seen:
            if ref() is obj:
                return n
        n = next(self._next)
        self._seen.append((weakref.ref(obj), n))
        return n


def object_path(args: dict[str, Any]) -> str:
    """The object file of a prog.attach: an absolute path (the server's working
    directory is not the client's)."""
    path = str(args["path"])
    if not os.path.isabs(path):
        raise UsageError(f"object path {path!r} is not absolute (the server's working "
                         f"directory is not the client's)")
    return path


def _load_and_verify(path: str, section: str | None, name: str | None, profile: Profile,
                     engine: str) -> tuple[Program, VerifierReport]:
    """Worker thread: load, verify, and for the jit engine compile ahead (the attach on
    the event loop then finds the compiled object in the process cache)."""
    try:
        program = load_program(path, section=section, name=name)
    except UsageError:
        raise
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


class OpsHandler:
    """What every control socket's handler shares: the op table, and errors turned into
    replies.  An op this handler does not serve answers EOPNOTSUPP."""

    ops: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]
    serves = "this process"

    async def handle(self, request: Request) -> Any:
        """The result of `request`; RequestFailed carries the error reply of a failure
        (a UsageError is EINVAL "usage"; any other VxdpError "failed", with its errno
        when it has one: MapError's is the kernel's)."""
        op = self.ops.get(request.op)
        if op is None:
            raise failed(E.EOPNOTSUPP, f"{request.op} is not served by {self.serves}")
        try:
            return await op(request.args)
        except RequestFailed:
            raise
        except UsageError as exc:
            raise RequestFailed(ErrorInfo(E.EINVAL, str(exc), "usage")) from None
        except VxdpError as exc:  # a map op, an engine refusing a program, a core error
            raise failed(getattr(exc, "errno", E.EINVAL), str(exc)) from None


def value_arg(m: Map, given: Any) -> MapValue:
    """A map.update value: one hex string (per-CPU maps: every CPU's value one after
    another, else one value for all, as map JSON) or a list of them."""
    size = m.spec.value_size
    compact = "".join(given.split()) if isinstance(given, str) else ""
    if m.spec.percpu and len(compact) == 2 * size * m.ncpus:
        given = [compact[i:i + 2 * size] for i in range(0, len(compact), 2 * size)]
    return mapjson.parse_value(m, given)


class ControlHandler(OpsHandler):
    """The operations, on one HostRuntime (see the module docstring)."""

    serves = "a host"

    def __init__(self, runtime: HostRuntime) -> None:
        self.runtime = runtime
        self._prog_ids = Ids()
        self._map_ids = Ids()
        self._loaded_at: dict[int, float] = {}
        self._attach_lock = trio.Lock()
        self.ops: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "prog.attach": self.prog_attach, "prog.detach": self.prog_detach,
            "prog.show": self.prog_show, "prog.dump_xlated": self.prog_dump_xlated,
            "prog.dump_jited": self.prog_dump_jited, "map.show": self.map_show,
            "map.dump": self.map_dump, "map.lookup": self.map_lookup,
            "map.update": self.map_update, "map.delete": self.map_delete,
            "stats": self.stats, "guest.list": self.guest_list,
            "guest.link": self.guest_link, "guest.announce": self.guest_announce,
            "wire.inject": self.wire_inject,
        }

    # -- programs: the host-attached one and the ones guests offloaded -------------------

    def _shown(self, source: Any, program: Program, maps: list[Map], engine: str,
               guest: GuestPort | None, image: Any = None) -> Shown:
        pid = self._prog_ids.of(source)
        loaded = self._loaded_at.setdefault(pid, time.time())
        return Shown(pid, program, maps, [self._map_ids.of(m) for m in maps], loaded,
                     engine, guest, image)

    def current(self) -> Shown | None:
        """The host-attached program."""
        program = self.runtime.xdp.program
        if program is None:
            return None
        return self._shown(program, program, self.runtime.xdp.engine_maps,
                           self.runtime.xdp.engine_name, None)

    def offloaded(self) -> list[Shown]:
        """Every guest's offloaded program, guest by guest."""
        out = []
        for g in self.runtime.guests:
            p = g.device.offloaded if g.device is not None else None
            if p is not None:
                out.append(self._shown(p, p.program, [m.map for m in p.maps], p.engine, g,
                                       p.image))
        return out

    def programs(self) -> list[Shown]:
        current = self.current()
        return ([current] if current is not None else []) + self.offloaded()

    def _need(self) -> Shown:
        att = self.current()
        if att is None:
            raise failed(E.ENOENT, "no program is attached on this host")
        return att

    def _program(self, pid: int | None) -> Shown:
        """The program `pid` names; without one the host-attached program, or the only
        offloaded one."""
        programs = self.programs()
        if pid is not None:
            for shown in programs:
                if shown.id == pid:
                    return shown
            have = ", ".join(str(s.id) for s in programs) or "none"
            raise failed(E.ENOENT, f"no program id {pid} on this host (ids: {have})")
        if self.current() is not None or len(programs) != 1:
            return self._need()
        return programs[0]

    def describe(self, shown: Shown) -> dict[str, Any]:
        p = shown.program
        out = {"id": shown.id, "type": "xdp", "name": p.name, "tag": p.tag,
               "gpl_compatible": p.gpl_compatible, "loaded_at": int(shown.loaded_at),
               "bytes_xlated": len(p.insns), "insns": p.insn_count,
               "jited": shown.engine in ("jit", "smartnic"), "engine": shown.engine,
               "section": p.section, "digest": p.digest, "map_ids": list(shown.map_ids),
               "maps": [m.name for m in shown.maps]}
        if shown.image is not None:  # bpftool's bytes_jited for a device-bound program
            out["bytes_jited"] = shown.image.size
            out["machine"] = shown.image.machine
        if shown.guest is not None:
            # bpftool shows a device-bound program's `dev`; ours names the owning guest
            g = shown.guest
            out["dev"] = {"guest": g.number, "ifindex": g.ifindex, "socket": g.path}
            out["offloaded"] = True
        return out

    async def prog_attach(self, args: dict[str, Any]) -> Any:
        path = object_path(args)
        if "mode" in args:
            raise UsageError("mode places a guest's program (vxdp prog attach --guest); a "
                             "host attaches its own")
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
        return {"id": att.id, "name": att.program.name}

    async def prog_show(self, args: dict[str, Any]) -> Any:
        return [self.describe(shown) for shown in self.programs()]

    async def prog_dump_xlated(self, args: dict[str, Any]) -> Any:
        att = self._program(args.get("id"))
        insns = decode(att.program.insns)

        def map_name(index: int) -> str:
            ok = 0 <= index < len(att.map_ids)
            return f"id:{att.map_ids[index]}" if ok else default_map_name(index)
        return {"id": att.id, "name": att.program.name, "insns": [
            {"pc": pc, "opcode": f"{insns[pc].opcode:02x}",
             "disasm": insn_text(insns, pc, map_name=map_name)} for pc in iter_insns(insns)]}

    async def prog_dump_jited(self, args: dict[str, Any]) -> Any:
        att = self._program(args.get("id"))
        engine = att.engine
        if att.image is not None:  # a SmartNIC's image: its machine, word by word
            image = att.image
            return {"id": att.id, "name": att.program.name, "engine": engine,
                    "machine": image.machine, "description": image.describe(),
                    "bytes_jited": image.size, "stack_size": image.stack_size,
                    "insns": image.listing()}
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

    def _maps(self) -> list[tuple[int, Map, dict[str, Any] | None]]:
        """(id, map, dev) of the host-attached program's maps, then of every map a guest
        created on its device (dev names the guest and the device's handle)."""
        out: list[tuple[int, Map, dict[str, Any] | None]] = []
        att = self.current()
        if att is not None:
            out.extend((i, m, None) for i, m in zip(att.map_ids, att.maps, strict=True))
        for g in self.runtime.guests:
            offload = g.device.offload if g.device is not None else None
            for om in (offload.maps.values() if offload is not None else ()):
                out.append((self._map_ids.of(om.map), om.map,
                            {"guest": g.number, "ifindex": g.ifindex, "handle": om.handle}))
        return out

    def _map(self, ref: str | int) -> tuple[int, Map]:
        maps = self._maps()
        if not maps:
            raise failed(E.ENOENT, "no program is attached on this host and no guest "
                                   "offloaded a map")
        for map_id, m, _ in maps:
            if ref == (map_id if isinstance(ref, int) else m.name):
                return map_id, m
        have = ", ".join(f"{i} {m.name}" for i, m, _ in maps) or "none"
        what = f"id {ref}" if isinstance(ref, int) else f"named {ref!r}"
        raise UsageError(f"no map {what} (maps: {have})")

    @staticmethod
    def _show_map(map_id: int, m: Map, dev: dict[str, Any] | None = None) -> dict[str, Any]:
        s = m.spec
        out = {"id": map_id, "type": mapjson.type_name(s.type), "name": m.name,
               "flags": s.flags, "bytes_key": s.key_size, "bytes_value": s.value_size,
               "max_entries": s.max_entries, "frozen": int(s.frozen)}
        if dev is not None:
            out["dev"] = dev
        return out

    async def map_show(self, args: dict[str, Any]) -> Any:
        maps = self._maps()
        if "map" in args:
            map_id, _ = self._map(args["map"])
            return [self._show_map(i, mm, dev) for i, mm, dev in maps if i == map_id]
        return [self._show_map(i, m, dev) for i, m, dev in maps]

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
        m.update(key, value_arg(m, args["value"]), FLAGS[args.get("flags", "any")])
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

    # -- the wire ------------------------------------------------------------------------

    async def wire_inject(self, args: dict[str, Any]) -> Any:
        """Seeded traffic into the host as if from its wire (the scenario runner's
        `traffic` step): `count` frames of TrafficGenerator(seed, flows, mix, size),
        addressed to guest `guest` when given (else as generated: flooded), in bursts as
        large as the guests have buffers for (the wire pump's pacing).  Answers when the
        last burst went in: {"sent": count}."""
        count = int(args["count"])
        if count > MAX_INJECT:
            raise UsageError(f"wire.inject count {count} is above {MAX_INJECT}")
        size = args.get("size")
        gen = TrafficGenerator(int(args.get("seed", 0)), flows=max(1, int(args.get("flows", 16))),
                               mix=parse_mix(args.get("mix")), vlan_share=0.0,
                               sizes=(int(size),) if size else None)
        frames = gen.packets(count)
        if "guest" in args:
            mac = self._guest(args["guest"]).mac
            frames = [mac + f[6:] for f in frames]
        runtime, sent = self.runtime, 0
        while sent < len(frames):
            room = await runtime.wait_for_room(min(runtime.burst, len(frames) - sent))
            runtime.from_wire(frames[sent:sent + room])
            sent += room
            await trio.lowlevel.checkpoint()
        return {"sent": sent}


class ControlServer:
    """Listens on `path` and serves control clients with `handler` (a host's
    ControlHandler, a guest's GuestControlHandler)."""

    def __init__(self, handler: OpsHandler, path: str | os.PathLike[str], *,
                 max_clients: int = MAX_CLIENTS, name: str = "control",
                 connection: Callable[[], Connection] | None = None) -> None:
        self.path = os.fspath(path)
        self.handler = handler
        self.max_clients = max_clients
        self.name = name  # what messages call the socket and its option (--agent: agent)
        # a server end of the protocol spoken here (the agent's: vxdp.control.agent)
        self.connection = connection or (lambda: Connection("server"))
        self._check_path()  # before the event loop: a live socket there is a UsageError
        self.clients = 0

    def _check_path(self) -> None:
        try:
            check_socket_path(self.path, f"--{self.name}")
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
        conn = self.connection()
        request_id: int | None = None
        with sock:
            with trio.move_on_after(TURN_AWAY_WAIT):
                while isinstance(event := conn.next_event(), NeedData):
                    conn.receive_data(await sock.recv(65536))
                if isinstance(event, Request):
                    request_id = event.id
            error = ErrorInfo(E.EUSERS, f"the host serves at most {self.max_clients} "
                                        f"{self.name} clients at once and {self.clients} are "
                                        f"connected: "
                                        f"this one is turned away (try again once one has "
                                        f"closed)", "failed")
            with trio.move_on_after(TURN_AWAY_WAIT):
                try:
                    await _send_all(sock, conn.send_error(request_id, error))
                except OSError:
                    pass  # it left already

    async def _client(self, sock: trio.socket.SocketType) -> None:
        conn = self.connection()
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


__all__ = ["MAX_CLIENTS", "ControlHandler", "ControlServer", "OpsHandler", "failed",
           "value_arg"]

