"""The host's control socket in process: the blocking client (in a worker thread) against
`ControlServer` on a real Unix socket, with guests served beside it."""

from __future__ import annotations

import errno as E
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from vxdp.bpf.disasm import disassemble
from vxdp.bpf.isa import decode
from vxdp.control import ControlClient, HostUnreachable, RequestFailed
from vxdp.control.protocol import MAX_REQUEST, VERSION
from vxdp.errors import UsageError
from vxdp.packets import udp_packet
from vxdp.runtime import HostRuntime, XdpHook, open_port
from vxdp.runtime.control import MAX_CLIENTS, ControlHandler, ControlServer

from .conftest import PROGS, Rig, core_unavailable, until

pytestmark = pytest.mark.skipif(core_unavailable() is not None,
                                reason=str(core_unavailable()))

RigFactory = Callable[..., Rig]


def obj(name: str) -> Path:
    from vxdp.bpf.clang import clang_unavailable, compile_c
    reason = clang_unavailable()
    if reason:
        pytest.skip(reason)
    return compile_c(PROGS / f"{name}.c")


async def ctl(path: Path, op: str, /, **args: Any) -> Any:
    """One request over a fresh connection, from a worker thread (the client blocks)."""
    def go() -> Any:
        with ControlClient(path, timeout=20) as client:
            return client.call(op, **args)
    return await trio.to_thread.run_sync(go)


async def refused(path: Path, op: str, /, **args: Any) -> RequestFailed:
    with pytest.raises(RequestFailed) as info:
        await ctl(path, op, **args)
    return info.value


def flow_key(src: str, dst: str, sport: int, dport: int, proto: int = 17) -> str:
    return (socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport)
            + bytes([proto, 0, 0, 0])).hex()


def policy(action: int, hits: int = 0, nbytes: int = 0) -> str:
    return struct.pack("<IIQ", action, hits, nbytes).hex()


async def serving(nursery: trio.Nursery, host: HostRuntime, path: Path, **kw: Any) -> None:
    host.control = ControlServer(ControlHandler(host), path, **kw)
    await nursery.start(host.control.serve)


@asynccontextmanager
async def served_host(path: Path, sockets: Sequence[str] = ("unused.sock",), *,
                      max_clients: int = MAX_CLIENTS, **kw: Any) -> AsyncIterator[HostRuntime]:
    """A HostRuntime (no guests connected) serving its control socket at `path`."""
    host = HostRuntime(list(sockets), **kw)
    try:
        async with trio.open_nursery() as nursery:
            await serving(nursery, host, path, max_clients=max_clients)
            yield host
            nursery.cancel_scope.cancel()
    finally:
        host.close()


async def test_map_updates_through_the_socket_steer_the_datapath(
        rig_factory: RigFactory, tmp_path: Path, datapath: str) -> None:
    path = tmp_path / "host.ctl"
    with trio.fail_after(30):
        rig = rig_factory()
        await serving(rig.nursery, rig.host, path)
        guest = await rig.add_guest(port=open_port("null"))
        prog = await ctl(path, "prog.attach", path=str(obj("xdp_flow_hash")))
        assert prog["name"] == "xdp_flow_lookup" and prog["maps"] == ["flows", "misses"]
        blocked = udp_packet("10.0.0.1", "10.0.0.2", 4000, 53, b"dns?")
        other = udp_packet("10.0.0.1", "10.0.0.2", 4000, 54, b"other")
        key = flow_key("10.0.0.1", "10.0.0.2", 4000, 53)
        assert await ctl(path, "map.update", map="flows", key=key, value=policy(1)) is None
        rig.host.from_wire([blocked, other, blocked])
        await until(lambda: guest.stack["packets"] == 1, "the unlisted flow in the guest")
        await trio.sleep(0.05)
        assert guest.stack["packets"] == 1  # both listed frames were dropped
        # the program counted into the very value the socket wrote
        got = await ctl(path, "map.lookup", map="flows", key=key)
        assert got == {"key": key, "value": policy(1, 2, 2 * len(blocked))}
        dump = await ctl(path, "map.dump", map="misses")
        assert dump["entries"] == [{"key": "00000000", "value": struct.pack("<Q", 1).hex()}]
        # flip the flow to PASS (it exists: `exist` is allowed), then it reaches the guest
        await ctl(path, "map.update", map="flows", key=key, value=policy(2), flags="exist")
        rig.host.from_wire([blocked])
        await until(lambda: guest.stack["packets"] == 2, "the flow passing after the update")
        await ctl(path, "map.delete", map="flows", key=key)
        assert (await refused(path, "map.lookup", map="flows", key=key)).error.errno == E.ENOENT
        actions = rig.host.stats()["xdp"]["actions"]
        assert (actions["drop"], actions["pass"]) == (2, 2)


async def test_a_refused_program_keeps_the_attached_one(tmp_path: Path) -> None:
    path = tmp_path / "host.ctl"
    async with served_host(path, profile="rfc2019") as host:
        first = await ctl(path, "prog.attach", path=str(obj("xdp_flow_hash")))
        err = (await refused(path, "prog.attach", path=str(obj("xdp_percpu_hash")))).error
        assert (err.errno, err.kind) == (E.EACCES, "failed")
        assert "rejected by the verifier (profile rfc2019) at pc 0" in err.message
        assert "map type PERCPU_HASH is not offered by device profile rfc2019" in err.log
        assert "still attached: xdp_flow_lookup" in err.message
        assert await ctl(path, "prog.show") == [first]
        assert host.xdp.program is not None and host.xdp.program.name == "xdp_flow_lookup"


async def test_prog_show_dump_and_detach(tmp_path: Path) -> None:
    path = tmp_path / "host.ctl"
    async with served_host(path) as host:
        assert await ctl(path, "prog.show") == []
        assert await ctl(path, "map.show") == []
        o = obj("xdp_flow_hash")
        shown = await ctl(path, "prog.attach", path=str(o))
        program = host.xdp.program
        assert program is not None
        assert shown == {
            "id": 1, "type": "xdp", "name": "xdp_flow_lookup", "tag": program.tag,
            "gpl_compatible": True, "loaded_at": shown["loaded_at"],
            "bytes_xlated": len(program.insns), "insns": program.insn_count,
            "jited": False, "engine": "interp", "section": "xdp",
            "digest": program.digest, "map_ids": [1, 2], "maps": ["flows", "misses"]}
        maps = await ctl(path, "map.show")
        assert [(m["id"], m["name"], m["type"], m["bytes_key"], m["bytes_value"],
                 m["max_entries"]) for m in maps] == [(1, "flows", "hash", 16, 16, 4096),
                                                      (2, "misses", "array", 4, 8, 1)]
        assert await ctl(path, "map.show", map=2) == [maps[1]]
        xlated = await ctl(path, "prog.dump_xlated")
        lines = [f"{i['pc']}: ({i['opcode']}) {i['disasm']}" for i in xlated["insns"]]
        ours = disassemble(decode(program.insns), map_name=lambda i: f"id:{i + 1}")
        assert lines == ours
        assert any("map[id:1]" in line for line in lines)
        err = (await refused(path, "prog.dump_jited")).error
        assert err.errno == E.EOPNOTSUPP and "runs on the interp engine" in err.message
        # attaching again replaces it: new program id, new map ids
        again = await ctl(path, "prog.attach", path=str(o), program="xdp_flow_lookup")
        assert (again["id"], again["map_ids"]) == (2, [3, 4])
        assert await ctl(path, "prog.detach") == {"id": 2, "name": "xdp_flow_lookup"}
        assert host.xdp.program is None
        err = (await refused(path, "prog.detach")).error
        assert (err.errno, err.message) == (E.ENOENT, "no program is attached on this host")
        assert (await refused(path, "map.dump", map="flows")).error.errno == E.ENOENT
        stats = await ctl(path, "stats")
        assert stats["xdp"]["attached"] is False and stats["profile"] == "default"


async def test_map_errors_are_the_kernels(tmp_path: Path) -> None:
    path = tmp_path / "host.ctl"
    async with served_host(path):
        await ctl(path, "prog.attach", path=str(obj("xdp_lb_dnat")))
        vips = (await ctl(path, "map.show", map="vips"))[0]
        ks, vs, n = vips["bytes_key"], vips["bytes_value"], vips["max_entries"]

        def key(i: int) -> str:
            return i.to_bytes(ks, "little").hex()
        value = bytes(vs).hex()
        for i in range(n):
            await ctl(path, "map.update", map="vips", key=key(i), value=value,
                      flags="noexist")
        cases = [
            ({"op": "map.update", "map": "vips", "key": key(n), "value": value}, E.E2BIG),
            ({"op": "map.update", "map": "vips", "key": key(0), "value": value,
              "flags": "noexist"}, E.EEXIST),
            ({"op": "map.update", "map": "vips", "key": key(n + 1), "value": value,
              "flags": "exist"}, E.ENOENT),
            ({"op": "map.delete", "map": "vips", "key": key(n + 1)}, E.ENOENT),
            ({"op": "map.delete", "map": "backends", "key": "00000000"}, E.EINVAL),
            ({"op": "map.update", "map": "backends", "key": "ffff0000",
              "value": "00" * (await ctl(path, "map.show", map="backends"))[0][
                  "bytes_value"]}, E.E2BIG),
        ]
        for args, errno in cases:
            op = args.pop("op")
            err = (await refused(path, op, **args)).error
            assert (err.errno, err.kind) == (errno, "failed"), (op, args, err)
        usage = [
            ("map.lookup", {"map": "vips", "key": "00"}, f"1 bytes, expected {ks}"),
            ("map.lookup", {"map": "vips", "key": "zz"}, "'zz' is not hex"),
            ("map.lookup", {"map": "nope", "key": "00"}, "no map named 'nope' (maps: 1 "),
            ("map.dump", {"map": 99}, "no map id 99"),
            ("prog.attach", {"path": "relative.o"}, "is not absolute"),
            ("prog.attach", {"path": str(tmp_path / "none.o")}, "cannot read"),
            ("prog.attach", {"path": str(obj("xdp_drop")), "program": "nope"},
             "has no program 'nope'"),
        ]
        for op, args, words in usage:
            err = (await refused(path, op, **args)).error
            assert (err.errno, err.kind) == (E.EINVAL, "usage"), (op, args, err)
            assert words in err.message
        assert len((await ctl(path, "map.dump", map="vips"))["entries"]) == n


async def test_per_cpu_values_are_lists(tmp_path: Path) -> None:
    path = tmp_path / "host.ctl"
    async with served_host(path) as host:
        await ctl(path, "prog.attach", path=str(obj("xdp_percpu_hash")))
        m = (await ctl(path, "map.show", map="src_acct"))[0]
        ncpus = host.xdp.engine_maps[0].ncpus
        one = "11" * m["bytes_value"]
        await ctl(path, "map.update", map="src_acct", key="0a000001", value=one)
        got = await ctl(path, "map.lookup", map="src_acct", key="0a000001")
        assert got["value"] == [one] * ncpus
        each = [f"{cpu:02x}" * m["bytes_value"] for cpu in range(ncpus)]
        await ctl(path, "map.update", map="src_acct", key="0a000002", value="".join(each))
        got = await ctl(path, "map.lookup", map="src_acct", key="0a000002")
        assert got["value"] == each
        await ctl(path, "map.update", map="src_acct", key="0a000003", value=each)
        dump = await ctl(path, "map.dump", map="src_acct")
        assert [e["key"] for e in dump["entries"]] == ["0a000001", "0a000002", "0a000003"]


def raw_request(doc: Any) -> bytes:
    body = msgpack.packb(doc, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


async def read_reply(sock: trio.socket.SocketType) -> dict[str, Any] | None:
    """One reply frame, or None when the server closed the connection."""
    buf = b""
    while True:
        if len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
            n = struct.unpack(">I", buf[:4])[0]
            return msgpack.unpackb(buf[4:4 + n])  # type: ignore[no-any-return]
        chunk = await sock.recv(65536)
        if not chunk:
            return None
        buf += chunk


async def test_hostile_clients_get_errors_and_the_host_keeps_serving(
        rig_factory: RigFactory, tmp_path: Path) -> None:
    path = tmp_path / "host.ctl"
    with trio.fail_after(30):
        rig = rig_factory()
        await serving(rig.nursery, rig.host, path)
        guest = await rig.add_guest(port=open_port("null"))

        async def connect() -> trio.socket.SocketType:
            s = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            await s.connect(str(path))
            return s

        # garbage that happens to frame: an error, and the same connection goes on
        with await connect() as s:
            await s.send(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
            reply = await read_reply(s)
            assert reply is not None and reply["ok"] is False
            assert reply["error"]["code"] == "EBADMSG"
            await s.send(raw_request({"v": VERSION, "id": 1, "op": "map.wipe", "args": {}}))
            reply = await read_reply(s)
            assert reply is not None and reply["id"] == 1
            assert reply["error"]["code"] == "EOPNOTSUPP"
            await s.send(raw_request({"v": VERSION, "id": 2, "op": "map.dump",
                                      "args": {"map": [1]}}))
            reply = await read_reply(s)
            assert reply is not None and reply["error"]["code"] == "EINVAL"
            await s.send(raw_request({"v": VERSION, "id": 3, "op": "prog.show"}))
            reply = await read_reply(s)
            assert reply == {"v": VERSION, "id": 3, "ok": True, "result": []}
        # text thrown at it (an HTTP request): the length is absurd, an error and a close
        with await connect() as s:
            await s.send(b"GET / HTTP/1.1\r\n\r\n")
            reply = await read_reply(s)
            assert reply is not None and reply["error"]["code"] == "EMSGSIZE"
            assert await read_reply(s) is None
        # a frame just over the limit
        with await connect() as s:
            await s.send(struct.pack(">I", MAX_REQUEST + 1))
            reply = await read_reply(s)
            assert reply is not None and "over the" in reply["error"]["message"]
        # clients that vanish mid-frame, mid-header, and before sending anything
        for junk in (raw_request({"v": VERSION, "id": 1, "op": "stats"})[:9], b"\0\0", b""):
            s = await connect()
            if junk:
                await s.send(junk)
            s.close()
        # a client that asks and never reads its (large) reply
        s = await connect()
        await s.send(raw_request({"v": VERSION, "id": 9, "op": "stats"}) * 50)
        s.close()
        await until(lambda: rig.host.control is not None and rig.host.control.clients == 0,
                    "the hostile clients' tasks to end")
        # the host still serves control clients and guests
        assert (await ctl(path, "stats"))["guests"][0]["live"] is True
        rig.host.from_wire([udp_packet("10.0.0.1", "10.0.0.2", 1, 2, b"still here")])
        await until(lambda: guest.stack["packets"] == 1, "a frame into the guest")


async def test_too_many_clients_are_turned_away(tmp_path: Path) -> None:
    path = tmp_path / "host.ctl"
    async with served_host(path, max_clients=2) as host:
        held = []
        for _ in range(2):
            s = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            await s.connect(str(path))
            held.append(s)
        await until(lambda: host.control is not None and host.control.clients == 2,
                    "two clients held")
        err = (await refused(path, "stats")).error
        assert err.errno == E.EUSERS and err.message == (
            "the host serves at most 2 control clients at once and 2 are connected: this "
            "one is turned away (try again once one has closed)")
        for s in held:
            s.close()
        await until(lambda: host.control is not None and host.control.clients == 0,
                    "the held clients gone")
        assert (await ctl(path, "stats"))["profile"] == "default"
    assert not path.exists()  # the socket file goes with the server


async def test_the_cli_over_the_limit_is_told_why_not_a_broken_pipe(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`vxdp prog show` as the client over the limit: its request is read and answered
    (exit 1, the limit named), where closing it unread showed "Broken pipe"."""
    from vxdp.cli import main
    path = tmp_path / "host.ctl"
    async with served_host(path, max_clients=1) as host:
        held = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with held:
            await held.connect(str(path))
            await until(lambda: host.control is not None and host.control.clients == 1,
                        "one client held")
            for _ in range(3):  # whatever the timing of its write and our close
                status = await trio.to_thread.run_sync(
                    main, ["prog", "show", "--host", str(path)])
                assert status == 1
                assert capsys.readouterr().err == (
                    "Error: the host serves at most 1 control clients at once and 1 are "
                    "connected: this one is turned away (try again once one has closed) "
                    "(EUSERS)\n")


@pytest.mark.parametrize("what", ["fifo", "/dev/zero", "directory", "huge"])
async def test_attach_reads_only_a_regular_object_file_and_not_forever(
        tmp_path: Path, what: str) -> None:
    """A FIFO (whose open waits for a writer), /dev/zero (which never ends), a directory
    or a file over MAX_OBJECT_BYTES: refused at once, naming it; the host goes on."""
    from vxdp.runtime.xdp import MAX_OBJECT_BYTES
    target = {"fifo": tmp_path / "obj.fifo", "/dev/zero": Path("/dev/zero"),
              "directory": tmp_path, "huge": tmp_path / "huge.o"}[what]
    if what == "fifo":
        os.mkfifo(target)
    elif what == "huge":
        with open(target, "wb") as f:
            f.truncate(MAX_OBJECT_BYTES + 1)  # sparse: nothing is written
    expected = {"fifo": "is a pipe, not a regular file", "/dev/zero":
                "is a character device, not a regular file", "directory":
                "is a directory, not a regular file", "huge": "is larger than the 64 MiB"}[what]
    path = tmp_path / "host.ctl"
    with trio.fail_after(10):
        async with served_host(path):
            err = (await refused(path, "prog.attach", path=str(target))).error
            assert err.errno == E.EINVAL and err.kind == "usage"
            assert err.message.startswith(f"{target} {expected}")
            assert await ctl(path, "prog.show") == []


async def test_socket_paths_that_cannot_be_used(tmp_path: Path) -> None:
    host = HostRuntime(["unused.sock"])
    try:
        (tmp_path / "file").write_text("x")
        with pytest.raises(UsageError, match="exists and is not a socket"):
            ControlServer(ControlHandler(host), tmp_path / "file")
        path = tmp_path / "host.ctl"
        async with trio.open_nursery() as nursery:
            await serving(nursery, host, path)
            with pytest.raises(UsageError, match="another process serves that socket"):
                ControlServer(ControlHandler(host), path)
            nursery.cancel_scope.cancel()
        with pytest.raises(HostUnreachable, match="no vxdp host answers at"):
            ControlClient(path)
    finally:
        host.close()


async def test_dump_jited_shows_the_compiled_c(tmp_path: Path) -> None:
    from vxdp.bpf.jit import unavailable
    if unavailable():
        pytest.skip(str(unavailable()))
    path = tmp_path / "host.ctl"
    async with served_host(path, xdp=XdpHook("jit")):
        shown = await ctl(path, "prog.attach", path=str(obj("xdp_drop")))
        assert shown["jited"] is True and shown["engine"] == "jit"
        jited = await ctl(path, "prog.dump_jited")
        assert Path(jited["source_path"]).read_text() == jited["source"]
        assert "vxdp jit" in jited["source"] and "vxdp_jit_info" in jited["source"]
