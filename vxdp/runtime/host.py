"""The host process: one vhost-user back-end per guest socket, a wire port, and the
host-attached XDP program.

Theory of operation
-------------------
`HostRuntime` serves one vhost-user socket per guest (`--socket` may repeat); each is a
`guestport.GuestPort`, which bridges that guest's sessions to a `host.Device` (see there
for the message-to-device table).

Frames from the wire are switched by destination MAC (broadcast, multicast and unknown
unicast go to every live guest), then enter each guest through the host XDP program, on
the path into that guest as the offload has it (ingress ifindex 2 + n for guest n):
DROP and ABORTED end there, TX goes back out of the wire, REDIRECT goes to ifindex 1 (the
wire) or to another guest's queues, PASS goes into the guest's receive queue.  Two
datapaths do this: `c` (default) hands receiveq1/transmitq1 of a live split-ring device
to the C packet core (`cpath.CPath`, one C call per burst, program included); `python`
leaves them to the device model with the program on `XdpHook`.  Frames a guest transmits
go to another guest when addressed to its MAC, else to the wire.

The wire pump works as vhost-net's receive handler does.  It reads the wire once a guest
has posted receive buffers, in rounds of at most `burst` frames (256, vhost-net's weight), each
as large as every live guest has buffers for (`wait_for_room`), so a replay or a
generator goes as fast as the guests take frames and is not spent on nobody.  While a
guest's ring holds buffers its C port turns the driver's receive kicks off; when none are
left the pump turns them on and waits for the kick (at most ROOM_WAIT, then the round
goes and what finds no buffer drops).  Rounds run back to back for up to TURN seconds
before the pump lets the other tasks (kicks, control requests) in.

Fairness between guests (the rule): a guest that had no receive buffers for a whole
ROOM_WAIT is *stalled* and stops holding the wire back for the others: the pump leaves it
out of the room it waits for until it has buffers again (its frames drop meanwhile, as a
NIC's full ring drops, counted in its stats), so one guest that stops refilling costs the
others one ROOM_WAIT, not one a round.  With no other guest to serve, the pump waits for
the stalled ones as before (ROOM_WAIT a round): nothing is gained by reading the wire
for nobody.

Attach and detach the host-attached program at run time with
`HostRuntime.attach(program)` / `detach()` (the control socket's `prog.attach` does).
`stats()` is the JSON the CLI writes on SIGINT/SIGTERM.
With `control=PATH`, `run` also serves that control socket (`vxdp.runtime.control`);
with `agents` (one path per guest socket, in order), each guest's host agent, the agent
path of the offload (`vxdp.runtime.agent`), before the vhost-user sockets.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import trio

from host import DeviceProfile, get_profile
from host.datapath import HostSwitch, SwitchOut
from vxdp import native
from vxdp.bpf.program import Program
from vxdp.errors import UsageError, VhostUserLocalError
from vxdp.vhost_user.transport import check_socket_path

from .agent import agent_server
from .control import ControlHandler, ControlServer
from .guestport import (
    FIRST_GUEST_IFINDEX,
    PROTOCOL_FEATURES,
    WIRE_IFINDEX,
    GuestPort,
    guest_mac,
    status_steps,
)
from .wire import NullPort, PackedRun, WirePort, WireSpec
from .xdp import XdpHook

log = logging.getLogger("vxdp.runtime.host")

#: Frames the wire pump moves per round at most: vhost-net's per-round weight
#: (VHOST_NET_PKT_WEIGHT).  A round carries what the guests have buffers for, so a guest
#: that refills in 32s gets rounds of about 32.
BURST = 256
DATAPATHS = ("c", "python")
#: The longest the wire pump runs rounds without letting other tasks in, as the kernel's
#: net_rx_action bounds a softirq run in time as well as in packets (netdev_budget_usecs,
#: 2 ms by default; ours is shorter: kicks and control requests share the thread).
TURN = 0.0005
#: How long a wire burst waits for guests to post receive buffers.
ROOM_WAIT = 0.05
#: How often a waiting burst rechecks room between receive kicks.
ROOM_POLL = 0.0005
#: How long the C pump polls the guests' rings for receive room before it leaves the
#: wait to `wait_for_room` (vhost-net's busy-poll): a guest that refills from another
#: core (a polling driver) is back within microseconds.
PUMP_SPIN = 0.00005


class HostRuntime:
    """The host process's state: guests, wire, XDP hook."""

    def __init__(self, sockets: Sequence[str | os.PathLike[str]], *,
                 profile: DeviceProfile | str = "default", wire: WirePort | None = None,
                 xdp: XdpHook | None = None, burst: int = BURST,
                 datapath: str = "c", control: str | os.PathLike[str] | None = None,
                 engine: str | None = None,
                 agents: Sequence[str | os.PathLike[str]] = ()) -> None:
        prof = get_profile(profile) if isinstance(profile, str) else profile
        paths = [os.fspath(s) for s in sockets]
        if not paths:
            raise ValueError("a host serves at least one guest socket")
        for path in paths:  # before anything runs: a path no server can use is a usage error
            if paths.count(path) > 1:
                raise UsageError(f"--socket {path} is given {paths.count(path)} times")
            try:
                check_socket_path(path, "--socket")
            except VhostUserLocalError as exc:
                raise UsageError(str(exc)) from None
        if agents and len(agents) != len(paths):
            raise UsageError(f"{len(agents)} agent socket(s) for {len(paths)} guest "
                             f"socket(s): give one --agent per --socket, in the same order")
        if datapath not in DATAPATHS:
            raise UsageError(f"datapath {datapath!r} is not one of {', '.join(DATAPATHS)}")
        self.profile = prof
        self.datapath = datapath
        self.switch = HostSwitch(WIRE_IFINDEX) if datapath == "c" else None
        # switching (and the wire pump's rounds) in C for the guests on C ports; False
        # keeps the per-frame Python switch in front of the ports (a bench's reference)
        self.c_switch = True
        self.c_pumped = self.c_rounds = 0  # wire frames (rounds) the C pump took
        self.guests = [GuestPort(self, n, p, prof) for n, p in enumerate(paths)]
        self._macs = {g.mac: g for g in self.guests}
        self.wire = wire if wire is not None else NullPort(WireSpec("null"))
        self.xdp = xdp if xdp is not None else XdpHook()
        # what offloaded programs run on (interp or jit; the host-attached hook's unless
        # told otherwise: the kernel engine cannot run them on a device)
        self.engine = engine or (self.xdp.engine_name if self.xdp.engine_name in ("interp", "jit")
                                 else "interp")
        self.burst = burst
        self.wire_done = trio.Event()
        self.redirect_failed = 0
        self.room_timeouts = 0  # rounds that waited ROOM_WAIT for guests without buffers
        self._live = trio.Event()
        self._room_kicked = trio.Event()  # set by a receive kick; renewed by each wait
        self.control = ControlServer(ControlHandler(self), control) \
            if control is not None else None
        # the agent path: guest n's host agent on the n-th agent socket, bound to it
        self.agents = [agent_server(g, path) for g, path in zip(self.guests, agents)]

    # -- the host-attached program -----------------------------------------------------

    def attach(self, program: Program) -> None:
        """Attach (or replace) the host XDP program; InvalidProgram keeps the old one."""
        self.xdp.attach(program)
        for g in self.guests:
            if g.cpath is not None:
                g.cpath.attach(program, self.xdp.maps, self.xdp.core_engine)
        log.info("host XDP program attached: %s", self.xdp.describe())

    def detach(self) -> bool:
        for g in self.guests:
            if g.cpath is not None:
                g.cpath.attach(None, None)
        return self.xdp.detach()

    def remap_macs(self) -> None:
        """A guest's MAC changed (a migrated device keeps its own): switch by the new."""
        self._macs = {g.mac: g for g in self.guests}

    def by_ifindex(self, ifindex: int) -> GuestPort | None:
        n = ifindex - FIRST_GUEST_IFINDEX
        return self.guests[n] if 0 <= n < len(self.guests) else None

    def redirect(self, ifindex: int, frame: bytes) -> None:
        """XDP_REDIRECT on the Python datapath: the wire, or another guest's queues."""
        target = self.by_ifindex(ifindex)
        if ifindex == WIRE_IFINDEX:
            self.wire.send([frame])
        elif target is not None:
            target.deliver([frame])
        else:
            self.redirect_failed += 1

    # -- running -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve every socket and pump the wire until cancelled."""
        async with trio.open_nursery() as nursery:
            # the agents first: a guest that finds its device asks its agent at once
            await nursery.start(self.serve_agents)
            for g in self.guests:
                await nursery.start(g.serve)
            nursery.start_soon(self.pump_wire)
            if self.control is not None:  # vxdp prog / vxdp map (vxdp.runtime.control)
                await nursery.start(self.control.serve)
            task_status.started()

    async def serve_agents(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                           ) -> None:
        """Serve every guest's agent socket (none without `agents`) until cancelled."""
        async with trio.open_nursery() as nursery:
            for server in self.agents:
                await nursery.start(server.serve)
            task_status.started()

    def note_live(self) -> None:
        if any(g.live and g.rx_posted for g in self.guests):
            self._live.set()

    def rx_kicked(self) -> None:
        """A guest kicked its receiveq1 (buffers posted): wake a burst waiting for room."""
        self._room_kicked.set()

    def _room(self, n: int, *, arm: bool = False) -> int:
        """Frames (up to `n`) every live guest can take now, stalled guests left out while
        another is served (see the fairness rule); with `arm`, a guest with none is
        first asked to kick when it posts some (its C port keeps those kicks off while
        it has buffers) and asked again."""
        room = n
        served = stalled = False
        for g in self.guests:
            if g.live and g.link_up:  # a guest with its link down takes nothing
                have = g.rx_room()
                if have == 0 and arm and g.rx_arm():
                    have = g.rx_room()
                if g.rx_stalled:
                    if have == 0:
                        stalled = True
                        continue
                    g.rx_unstall()
                served = True
                room = min(room, have)
        return 0 if stalled and not served else room

    async def wait_for_room(self, n: int) -> int:
        """How many frames (1 to `n`) the next burst may carry: what every live guest has
        receive buffers for, so that a replay or a generator goes as fast as the guests
        take frames.  With no room anywhere it waits for a receive kick (rechecking every
        ROOM_POLL seconds, for a driver that suppresses kicks or a guest that leaves), at
        most ROOM_WAIT seconds; then the guests still without buffers are stalled (the
        fairness rule above): their frames drop, `n` is answered, and the next rounds go
        at the pace of the others."""
        room = self._room(n)
        if room:
            return room  # the common case: no cancel scope, no checkpoint
        with trio.move_on_after(ROOM_WAIT):
            while True:
                self._room_kicked = kicked = trio.Event()
                room = self._room(n, arm=True)
                if room:
                    return room
                with trio.move_on_after(ROOM_POLL):
                    await kicked.wait()
        self.room_timeouts += 1
        for g in self.guests:
            if g.live and g.link_up and not g.rx_stalled and g.rx_room() == 0:
                g.rx_stall(ROOM_WAIT)
        return self._room(n) or n  # the others' room, now the stalled are left out

    async def pump_wire(self) -> None:
        """Read the wire once a guest is live, in rounds of at most `burst` frames (as
        many as the guests have buffers for), letting the other tasks (kicks, control)
        run at least every TURN seconds; stops when the source ends."""
        await self._live.wait()
        clock = time.perf_counter
        turn_ends = clock() + TURN
        while True:
            run = self.wire.packed_run() if self.switch is not None else None
            if run is not None and self.c_pump_ready():
                # a whole turn of rounds in one C call; without room the round below
                # waits for the guests' kicks (and the fairness rule)
                if self._pump_c(run) != native.PUMP_NO_ROOM:
                    if clock() >= turn_ends:
                        await trio.lowlevel.checkpoint()
                        turn_ends = clock() + TURN
                    continue
            frames = await self.wire.receive(await self.wait_for_room(self.burst))
            if frames is None:
                self.wire_done.set()
                return
            self.from_wire(frames)
            if clock() >= turn_ends:
                await trio.lowlevel.checkpoint()
                turn_ends = clock() + TURN

    # -- the switch in C ---------------------------------------------------------------

    def c_table(self) -> bool:
        """Give the C switch its forwarding table from the guests' state now (a C call
        only when it changed); True when at least one guest is served in C.  A guest is
        when its pair 1 is on a C port, its link is up and it runs one queue pair; the
        others' frames come back to `GuestPort.receive` (the device model, a link down,
        several pairs, no device: counted there as before)."""
        switch = self.switch
        if switch is None or not self.c_switch:
            return False
        table = []
        any_c = False
        for g in self.guests:
            port = g.cpath.port if g.cpath is not None else None
            live = g.live
            if port is not None and not (live and g.link_up and g.device is not None
                                         and g.device.net.curr_queue_pairs == 1):
                port = None
            any_c = any_c or port is not None
            table.append((g.mac, live, live and g.link_up and not g.rx_stalled,
                          port))
        switch.set_table(table)
        return any_c

    def c_pump_ready(self) -> bool:
        """The C pump may take the wire's rounds: every guest the wire waits for is served
        in C and has posted receive buffers, and none is stalled (the fairness rule stays
        with `wait_for_room`)."""
        if not self.c_table():
            return False
        assert self.switch is not None
        for g, (_, live, _wait, port) in zip(self.guests, self.switch.table):
            if g.rx_stalled or (live and g.link_up and (port is None or not g.rx_posted)):
                return False
        return True

    def c_out(self, out: SwitchOut) -> None:
        """Carry out what a C switch call left: frames for the wire, frames for guests
        the edge serves (their own receive path), interrupts and rings newly broken."""
        if out.wire:
            self.wire.send(out.wire)
        for index, frames in out.edge.items():
            self.guests[index].receive(frames)
        self.c_events(out.events)

    def c_events(self, events: Sequence[tuple[int, int]]) -> None:
        for ifindex, mask in events:
            g = self.by_ifindex(ifindex)
            if g is None:
                continue
            if g.session is not None:
                for queue, bit in ((0, native.EV_RX_IRQ), (1, native.EV_TX_IRQ)):
                    if mask & bit:
                        g.interrupts += 1
                        g.session.notify(queue)
            if g.cpath is not None:
                if mask & native.EV_RX_BROKEN:
                    g._c_broken("rx")
                if mask & native.EV_TX_BROKEN:
                    g._c_broken("tx")

    def c_transmit(self, guest: GuestPort, *, spin: float = 0.0) -> bool:
        """A kick on `guest`'s transmitq1 served through the C switch (its frames for
        other guests go through their ports in the same call): bursts while the ring
        has chains, for up to TURN, and when it runs dry, polled for `spin` seconds
        more, in C until the edge has something to do.  False when the sender is not in
        the table (the caller takes the per-port path)."""
        port = guest.cpath.port if guest.cpath is not None else None
        if port is None or not self.c_table():
            return False
        switch = self.switch
        assert switch is not None
        if switch.table[guest.number][3] is not port:
            return False
        clock = time.perf_counter
        turn_ends = clock() + TURN
        while True:
            # the laps of the turn in one C call (csrc/switch.c, vxdp_switch_tx_turn):
            # it stops where a lap here stopped the loop, and when `out` must be emptied
            out = switch.tx_turn(port, turn=turn_ends - clock(), spin=spin)
            for dest, frames in out.runs:
                if dest is None:
                    self.wire.send(frames)
                else:
                    self.guests[dest].receive(frames)
            self.c_events(out.events)
            if out.events or out.edge_served or switch.table[guest.number][3] is not port:
                break  # the edge did something: the table may be out of date
            if out.why != native.TXT_FULL or clock() >= turn_ends:
                break
        if not self._live.is_set():
            self.note_live()
        return True

    def _pump_c(self, run: PackedRun) -> int:
        """One turn of the wire's rounds in C from `run`; why it stopped (PUMP_*)."""
        assert self.switch is not None
        res = self.switch.pump(run.frames, run.at, cycle=run.cycle, limit=run.limit,
                               round_max=self.burst, turn=TURN, spin=PUMP_SPIN)
        self.wire.took(run, res.taken, res.taken_bytes, res.at)
        self.c_pumped += res.taken
        self.c_rounds += res.rounds
        self.c_out(res.out)
        return res.why

    def from_wire(self, frames: Sequence[bytes]) -> None:
        """One burst from the wire, switched to the guests (each runs the program)."""
        if self.c_table():
            assert self.switch is not None
            self.c_out(self.switch.rx(frames))
            return
        self.switch_frames(frames, source=None)

    def switch_frames(self, frames: Sequence[bytes], source: GuestPort | None) -> None:
        """Deliver by destination MAC; flood broadcast, multicast and unknown unicast
        to every live guest but the source (frames from the wire only): the switch's
        Python path (the C one: `from_wire` and `c_transmit`)."""
        if len(self.guests) == 1:
            # one guest: every frame is its own or flooded to it (no per-frame sorting)
            g = self.guests[0]
            if g is source:
                return
            mac = g.mac
            burst = frames if source is None and g.live \
                else [f for f in frames if f[:6] == mac]
            if burst:
                g.receive(burst)
            return
        per_guest: dict[int, list[bytes]] = {}
        macs = self._macs
        live = [g.number for g in self.guests if g.live] if source is None else []
        for frame in frames:
            target = macs.get(frame[:6])
            if target is not None:
                per_guest.setdefault(target.number, []).append(frame)
            else:
                for number in live:
                    per_guest.setdefault(number, []).append(frame)
        for number, burst in sorted(per_guest.items()):
            if self.guests[number] is not source:
                self.guests[number].receive(burst)

    def from_guest(self, guest: GuestPort, frames: Sequence[bytes]) -> None:
        """Frames a guest transmitted: to a local guest addressed by MAC, else the wire."""
        if len(self.guests) == 1:
            to_wire = frames  # no other guest to address
        else:
            local = {g.mac for g in self.guests if g is not guest}
            to_guests = [f for f in frames if f[:6] in local]
            to_wire = [f for f in frames if f[:6] not in local] if to_guests \
                else list(frames)
            if to_guests:
                self.switch_frames(to_guests, source=guest)
        self.wire.send(to_wire)
        if not self._live.is_set():
            self.note_live()

    def stats(self) -> dict[str, Any]:
        return {
            "profile": self.profile.name,
            "guests": [g.stats() for g in self.guests],
            "wire": self.wire.stats(),
            "room_timeouts": self.room_timeouts,
            "switch": {"c": self.switch is not None and self.c_switch,
                       "c_frames": self.c_pumped, "c_rounds": self.c_rounds},
            "datapath": self.datapath,
            "xdp": {**self.xdp.stats(), "actions": self.actions(),
                    "attached": self.xdp.attached, "redirect_failed": self.redirect_failed},
        }

    def actions(self) -> dict[str, int]:
        """XDP action counts of both datapaths, every guest."""
        out = dict(self.xdp.actions)
        for g in self.guests:
            if g.cpath is not None:
                for name, n in g.cpath.actions().items():
                    out[name] += n
        return out

    def close(self) -> None:
        for g in self.guests:
            g.close()
        self.wire.close()
        self.xdp.close()


__all__ = ["BURST", "DATAPATHS", "FIRST_GUEST_IFINDEX", "PROTOCOL_FEATURES", "WIRE_IFINDEX",
           "GuestPort", "HostRuntime", "guest_mac", "status_steps"]
