"""The guest's control socket: `vxdp prog` and `vxdp map` against a running `vxdp guest`.

    vxdp guest --socket S --xdp prog.o --mode offload --control /run/vxdp/guest0.ctl
    vxdp prog show --guest /run/vxdp/guest0.ctl
    vxdp map dump cnt --guest /run/vxdp/guest0.ctl

What bpftool shows inside a guest whose virtio_net offloaded a program: the program
(with its device-side info from QUERY when offloaded: state, engine, translated size)
and its maps.  The maps of an offloaded program live on the device: every read or write
here is a command over the control virtqueue (LOOKUP, UPDATE, DELETE, GET_FIRST and
GET_NEXT), answered from the very maps the host's datapath runs on.  The maps of a
driver-mode program are the driver's own.

Ids: the program is id 1; an offloaded map's id is its device handle, a driver-mode
map's its position in the program (1, 2, ...).  Maps go by name too (the object's names:
the guest knows them, the device does not).  Ops of the host's control socket that do
not exist here (guest.list, guest.link, guest.announce, wire.inject) answer EOPNOTSUPP;
`guest.migrate {to, policy, agent}` is this socket's own: the guest's back-end moves to
the host serving `to`, an agent path's channel to that host's agent at `agent` (`vxdp
migrate`, vxdp.runtime.migration).
"""

from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING, Any

import trio

from guest.offload import GuestMap, OffloadClient, OffloadError
from vxdp.bpf import mapjson
from vxdp.bpf.maps import Map
from vxdp.bpf.program import Program

from .control import FLAGS, OpsHandler, failed, object_path, value_arg
from .migration import POLICIES
from .xdp import load_program

if TYPE_CHECKING:
    from .guest import GuestRuntime

PROG_ID = 1


class GuestControlHandler(OpsHandler):
    """The operations, on one GuestRuntime (see the module docstring)."""

    serves = "a guest (ask its host: vxdp ... --host)"

    def __init__(self, runtime: GuestRuntime) -> None:
        self.runtime = runtime
        self.ops = {"prog.show": self.prog_show, "prog.attach": self.prog_attach,
                    "prog.detach": self.prog_detach, "map.show": self.map_show,
                    "map.dump": self.map_dump, "map.lookup": self.map_lookup,
                    "map.update": self.map_update, "map.delete": self.map_delete,
                    "stats": self.stats, "guest.migrate": self.migrate}

    # -- where the program runs ----------------------------------------------------

    def _placed(self) -> tuple[Program, str] | None:
        """The program and where it runs (offload or driver), None without one."""
        off = self.runtime.offload
        client = off.client
        if client is not None and client.offloaded is not None:
            return client.offloaded.program, "offload"
        if self.runtime.xdp.program is not None:
            return self.runtime.xdp.program, "driver"
        return None

    async def prog_show(self, args: dict[str, Any]) -> Any:
        placed = self._placed()
        if placed is None:
            return []
        program, mode = placed
        maps = await self._maps()
        out: dict[str, Any] = {
            "id": PROG_ID, "type": "xdp", "name": program.name, "tag": program.tag,
            "gpl_compatible": program.gpl_compatible, "bytes_xlated": len(program.insns),
            "insns": program.insn_count, "section": program.section, "mode": mode,
            "map_ids": [i for i, _ in maps], "maps": [n for _, n in maps]}
        if mode == "offload":
            info = await self._remote(self._client().query())
            out["dev"] = {"ifname": "virtio0", "mac": self.runtime.driver.mac.hex(":")}
            out["device"] = info.to_json() if info is not None else None
            out["offloaded"] = True
        return [out]

    async def prog_attach(self, args: dict[str, Any]) -> Any:
        """Place a program (driver, offload or auto: the `mode` argument, default the
        guest's own); the answer says where it runs, or why it does not."""
        path = object_path(args)
        program = await trio.to_thread.run_sync(
            lambda: load_program(path, section=args.get("section"), name=args.get("program")),
            abandon_on_cancel=True)
        off = self.runtime.offload
        try:
            await off.attach(program, str(args.get("mode", off.mode)))
        except OffloadError as exc:
            raise failed(exc.errno, str(exc), exc.log) from None
        if off.state == "refused":
            raise failed(E.EACCES, f"program {program.name!r} refused: {off.reason}", off.log)
        return {"name": program.name, "state": off.state, "reason": off.reason,
                "log": off.log}

    async def prog_detach(self, args: dict[str, Any]) -> Any:
        off = self.runtime.offload
        name = off.program.name if off.program is not None else None
        try:
            had = await off.detach()
        except OffloadError as exc:
            raise failed(exc.errno, str(exc), exc.log) from None
        if not had:
            raise failed(E.ENOENT, "no XDP program runs in this guest")
        return {"name": name}

    # -- maps ------------------------------------------------------------------------

    async def _maps(self) -> list[tuple[int, str]]:
        placed = self._placed()
        if placed is None:
            return []
        if placed[1] == "offload":
            return [(m.handle, m.spec.name) for m in self._offloaded_maps()]
        return [(i + 1, m.name) for i, m in enumerate(self.runtime.xdp.engine_maps)]

    def _offloaded_maps(self) -> tuple[GuestMap, ...]:
        client = self.runtime.offload.client
        off = client.offloaded if client is not None else None
        return off.maps if off is not None else ()

    def _map(self, ref: str | int) -> tuple[int, GuestMap | Map]:
        placed = self._placed()
        if placed is None:
            raise failed(E.ENOENT, "no XDP program runs in this guest")
        found: list[tuple[int, GuestMap | Map]] = []
        if placed[1] == "offload":
            found = [(m.handle, m) for m in self._offloaded_maps()]
        else:
            found = [(i + 1, m) for i, m in enumerate(self.runtime.xdp.engine_maps)]
        for map_id, m in found:
            name = m.spec.name
            if ref == (map_id if isinstance(ref, int) else name):
                return map_id, m
        have = ", ".join(f"{i} {m.spec.name}" for i, m in found) or "none"
        raise failed(E.ENOENT, f"no map {ref!r} in this guest (maps: {have})", kind="usage")

    def _client(self) -> OffloadClient:
        client = self.runtime.offload.client
        if client is None:
            raise failed(E.ENODEV, "no device is live in this guest")
        return client

    async def _remote(self, op: Any) -> Any:
        try:
            return await self.runtime.offload.run(op)
        except OffloadError as exc:
            raise failed(exc.errno, str(exc), exc.log) from None

    @staticmethod
    def _show(map_id: int, m: GuestMap | Map) -> dict[str, Any]:
        s = m.spec
        out: dict[str, Any] = {"id": map_id, "type": mapjson.type_name(s.type),
                               "name": s.name, "flags": s.flags, "bytes_key": s.key_size,
                               "bytes_value": s.value_size, "max_entries": s.max_entries}
        if isinstance(m, GuestMap):
            out["dev"] = {"ifname": "virtio0", "handle": m.handle}
        return out

    async def map_show(self, args: dict[str, Any]) -> Any:
        if "map" in args:
            return [self._show(*self._map(args["map"]))]
        out = []
        for map_id, _ in await self._maps():
            out.append(self._show(*self._map(map_id)))
        return out

    async def map_dump(self, args: dict[str, Any]) -> Any:
        map_id, m = self._map(args["map"])
        if isinstance(m, GuestMap):
            entries = await self._remote(self._client().dump(m.handle))
            return {"id": map_id, "name": m.spec.name, **mapjson.map_doc(m.spec, entries)}
        return {"id": map_id, "name": m.name, **mapjson.dump_map(m)}

    async def map_lookup(self, args: dict[str, Any]) -> Any:
        _, m = self._map(args["map"])
        key = _key(m, args["key"])
        if isinstance(m, GuestMap):
            value = await self._remote(self._client().lookup(m.handle, key))
        else:
            value = m.lookup(key)
        if value is None:
            raise failed(E.ENOENT, f"map {m.spec.name!r}: lookup: no entry for key "
                                   f"{key.hex()}")
        return {"key": key.hex(), "value": mapjson.value_hex(value)}

    async def map_update(self, args: dict[str, Any]) -> Any:
        _, m = self._map(args["map"])
        key = _key(m, args["key"])
        flags = FLAGS[args.get("flags", "any")]
        if isinstance(m, GuestMap):
            value = mapjson.hex_bytes(args["value"], m.spec.value_size,
                                      f"map {m.spec.name!r} value")
            await self._remote(self._client().update(m.handle, key, value, flags))
        else:
            m.update(key, value_arg(m, args["value"]), flags)
        return None

    async def map_delete(self, args: dict[str, Any]) -> Any:
        _, m = self._map(args["map"])
        key = _key(m, args["key"])
        if isinstance(m, GuestMap):
            await self._remote(self._client().delete(m.handle, key))
        else:
            m.delete(key)
        return None

    async def stats(self, args: dict[str, Any]) -> Any:
        return self.runtime.stats()

    async def migrate(self, args: dict[str, Any]) -> Any:
        """Move this guest's back-end to the host serving `to` (`vxdp migrate`): the
        report (its `outcome` says whether it moved); a move that broke off on the way
        fails with its errno."""
        policy = args.get("policy", "refuse")
        if policy not in POLICIES:
            raise failed(E.EINVAL, f"policy {policy!r}: choose one of {', '.join(POLICIES)}",
                         kind="usage")
        report = await self.runtime.migrate(args["to"], policy=policy, agent=args.get("agent"))
        return report.to_json()


def _key(m: GuestMap | Map, text: Any) -> bytes:
    if isinstance(m, Map):
        return mapjson.parse_key(m, text)
    return mapjson.hex_bytes(text, m.spec.key_size, f"map {m.spec.name!r} key")


__all__ = ["GuestControlHandler"]
