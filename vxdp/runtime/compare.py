"""The same XDP program offloaded, attached on the host, and in the guest's driver, measured.

`compare()` runs one host and one guest runtime in this process over a socketpair (real
vhost-user: memfd memory, eventfd kicks and calls), once per placement, and sends the
same seeded traffic from the host's wire each time:

    offload (C datapath)          the guest hands the program to its device over the
                                  control virtqueue (docs/offload-spec.md); the host's C
                                  port runs it and fills the guest's buffers in one call
                                  per burst
    offload (Python datapath)     the same, the device model running it
    host-attached (C datapath)    the host's operator attaches the program instead (the
                                  guest has no say): the datapath work of the offload
                                  without the control queue
    driver (C datapath)           no program on the host; the guest's driver runs it on
                                  what it reaps (XDP_TX goes back out through the device)

The offload rows also time the setup: from the guest's DRIVER_OK to the program running
on the host (maps created, program sent, verified by the device, attached).
`run_placement` also offloads over the agents (`via="agent"`) and times map updates
from the guest: `vxdp.runtime.paths` compares the two paths with it.

Each run ends when every frame is accounted for: the action counts add up to the frames
sent, the guest's stack holds the PASS frames and the wire the TX frames.  The numbers
(elapsed time, Mpps, microseconds per 32-frame burst) are measured in that run; nothing
is precomputed.  A reference run of the program over the traffic (no virtio) gives the
action counts every placement must reproduce.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import trio

from host import get_profile
from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.program import MapSpec, MapType, Program
from vxdp.errors import UsageError
from vxdp.packets import TrafficGenerator

from .guest import GuestRuntime
from .host import HostRuntime
from .wire import NullPort, WireSpec
from .xdp import ACTION_NAMES, XdpHook

#: The demo's program (no toolchain needed): IPv4 (no options) UDP with an odd destination
#: port is dropped, IPv4 TCP is bounced back (MACs swapped, XDP_TX), the rest passes; the
#: frames of each action are counted in the ARRAY map `actions` (key: the action).
DEMO_PROGRAM_ASM = """
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r6, 2
mov %r4, %r2
add %r4, 38
jgt %r4, %r3, count
ldxh %r5, [%r2+12]
jne %r5, 0x8, count
ldxb %r5, [%r2+14]
jne %r5, 0x45, count
ldxb %r5, [%r2+23]
jeq %r5, 6, tcp
jne %r5, 17, count
ldxb %r5, [%r2+37]
and %r5, 1
jeq %r5, 0, count
mov %r6, 1
ja count
tcp:
ldxw %r7, [%r2+0]
ldxh %r8, [%r2+4]
ldxw %r9, [%r2+6]
ldxh %r0, [%r2+10]
stxw [%r2+0], %r9
stxh [%r2+4], %r0
stxw [%r2+6], %r7
stxh [%r2+10], %r8
mov %r6, 3
count:
stxw [%r10-4], %r6
mov %r2, %r10
add %r2, -4
lddw %r1, map_fd(0)
call 1
jeq %r0, 0, out
ldxdw %r1, [%r0+0]
add %r1, 1
stxdw [%r0+0], %r1
out:
mov %r0, %r6
exit
"""
#: The program's map: frames per XDP action (key 0..4, a le64 count each).
DEMO_MAP = MapSpec("actions", MapType.ARRAY, 4, 8, 5)

PLACEMENTS = (("offload", "c"), ("offload", "python"), ("host-attached", "c"),
              ("driver", "c"))
BURST = 32


def demo_program() -> Program:
    return Program("xdp_demo_count", "xdp", encode(assemble(DEMO_PROGRAM_ASM)), (DEMO_MAP,))


@dataclass
class Row:
    """One placement's run."""

    placement: str
    datapath: str
    frames: int
    actions: dict[str, int] = field(default_factory=dict)
    in_guest: int = 0
    wire_tx: int = 0
    elapsed_s: float = 0.0
    setup_s: float | None = None  # offload: DRIVER_OK to the program running on the host
    complete: bool = False
    via: str = "controlq"  # offload: what carried its commands (controlq, agent); else ""
    updates: int = 0  # offload: map updates the guest made after the traffic
    updates_s: float = 0.0  # ... and the time they took, round trip after round trip

    @property
    def mpps(self) -> float:
        return self.frames / self.elapsed_s / 1e6 if self.elapsed_s else 0.0

    @property
    def updates_per_s(self) -> float:
        return self.updates / self.updates_s if self.updates_s else 0.0

    @property
    def us_per_burst(self) -> float:
        bursts = -(-self.frames // BURST)
        return self.elapsed_s * 1e6 / bursts if bursts else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "mpps": round(self.mpps, 4),
                "us_per_burst": round(self.us_per_burst, 1),
                "updates_per_s": round(self.updates_per_s, 1),
                "setup_ms": None if self.setup_s is None else round(self.setup_s * 1e3, 1)}


def reference_actions(program: Program, frames: list[bytes]) -> dict[str, int]:
    hook = XdpHook()
    hook.attach(program)
    for at in range(0, len(frames), BURST):
        hook.run(frames[at:at + BURST])
    hook.close()
    return dict(hook.actions)


async def run_placement(placement: str, datapath: str, program: Program,
                        frames: list[bytes], expected: dict[str, int], profile: str,
                        timeout: float, *,
                        via: str = "controlq", updates: int = 0) -> Row:
    """One placement's run; an offload goes `via` the control queue or the agents (the
    host agent on a socket in a temporary directory), and makes `updates` map updates
    after the traffic, timed."""
    offload = placement == "offload"
    row = Row(placement, datapath, len(frames), via=via if offload else "")
    with tempfile.TemporaryDirectory(prefix="vxdp-agent-") as tmp:
        agent = os.path.join(tmp, "guest0.agent") if offload and via == "agent" else None
        return await _run_in(row, program, frames, expected, profile, timeout, agent,
                             updates)


async def _run_in(row: Row, program: Program, frames: list[bytes], expected: dict[str, int],
                  profile: str, timeout: float, agent: str | None, updates: int) -> Row:
    placement, datapath = row.placement, row.datapath
    host = HostRuntime(["demo-guest"], profile=profile, wire=NullPort(WireSpec("null")),
                       datapath=datapath, agents=[agent] if agent is not None else [])
    guest_hook = XdpHook()
    if placement == "host-attached":
        host.attach(program)
    elif placement == "driver":
        guest_hook.attach(program)
    offload = program if placement == "offload" else None
    guest = GuestRuntime(None, xdp=guest_hook, port=NullPort(WireSpec("null")),
                         datapath=datapath, offload=offload,
                         mode="offload" if offload is not None else "driver", agent=agent)
    a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    served = False

    async def dial() -> trio.socket.SocketType:
        nonlocal served
        if served:
            await trio.sleep_forever()
        served = True
        return b

    port = host.guests[0]

    def actions() -> dict[str, int]:
        if placement == "offload":
            return port.offload_actions()
        return host.actions() if placement == "host-attached" else guest.actions()

    def done() -> bool:
        return (sum(actions().values()) == len(frames)
                and guest.stack["packets"] >= expected["pass"]
                and host.wire.tx_packets >= expected["tx"])
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(host.serve_agents)
            nursery.start_soon(port.serve_socket, a)
            await nursery.start(lambda task_status: guest.run(dial=dial,
                                                              task_status=task_status))
            with trio.move_on_after(timeout):
                while not (guest.ready.is_set() and port.rx_posted):
                    await trio.sleep(0.001)
                if offload is not None:
                    ready = time.perf_counter()
                    while guest.offload.state != "offloaded":
                        if guest.offload.state == "refused":
                            raise UsageError(f"the device refused the program: "
                                             f"{guest.offload.reason}")
                        await trio.sleep(0.0005)
                    row.setup_s = time.perf_counter() - ready
                start = time.perf_counter()
                at = 0
                while at < len(frames):
                    room = await host.wait_for_room(min(BURST, len(frames) - at))
                    host.from_wire(frames[at:at + room])
                    at += room
                    await trio.lowlevel.checkpoint()
                while not done():
                    await trio.sleep(0.0002)
                row.elapsed_s = time.perf_counter() - start
                row.complete = True
                if offload is not None and updates:
                    row.updates, row.updates_s = updates, await _updates(guest, updates)
            row.actions = actions()
            row.in_guest = guest.stack["packets"]
            row.wire_tx = host.wire.tx_packets
            nursery.cancel_scope.cancel()
    finally:
        guest.close()
        host.close()
    return row


async def _updates(guest: GuestRuntime, count: int) -> float:
    """Seconds `count` updates of the program's first map take from the guest, one
    round trip after another (an array's last key: the demo's XDP_REDIRECT counter,
    which its program never counts)."""
    client = guest.offload.client
    assert client is not None and client.offloaded is not None
    first = client.offloaded.maps[0]
    spec = first.spec
    last = spec.max_entries - 1 if spec.type is MapType.ARRAY else 0
    key = last.to_bytes(spec.key_size, "little")
    start = time.perf_counter()
    for n in range(count):
        value = n.to_bytes(8, "little")[:spec.value_size].ljust(spec.value_size, b"\0")
        await guest.offload.run(client.update(first.handle, key, value))
    return time.perf_counter() - start


def placements_for(profile: str) -> tuple[tuple[str, str], ...]:
    """The placements a device profile allows: no offload rows without
    VIRTIO_NET_F_XDP_OFFLOAD."""
    offers = get_profile(profile).xdp is not None
    return tuple(p for p in PLACEMENTS if offers or p[0] != "offload")


def compare(program: Program | None = None, *, count: int = 512, seed: int = 7,
            profile: str = "host", timeout: float = 10.0) -> tuple[dict[str, int], list[Row]]:
    """Run every placement the profile allows; returns the reference action counts and
    one row each."""
    prog = program if program is not None else demo_program()
    frames = TrafficGenerator(seed, mix={"udp4": 0.5, "tcp4": 0.3, "udp6": 0.1, "icmp4": 0.1},
                              vlan_share=0.0).packets(count)
    expected = reference_actions(prog, frames)

    async def main() -> list[Row]:
        return [await run_placement(p, d, prog, frames, expected, profile, timeout)
                for p, d in placements_for(profile)]
    return expected, trio.run(main)


def table(rows: list[Row]) -> list[str]:
    """The rows as aligned text lines (a header first)."""
    head = ["placement", "datapath", "frames", *ACTION_NAMES, "in guest", "wire tx",
            "setup ms", "ms", "Mpps", "us/burst"]
    body = [[r.placement, r.datapath, str(r.frames),
             *(str(r.actions.get(a, 0)) for a in ACTION_NAMES), str(r.in_guest),
             str(r.wire_tx), "-" if r.setup_s is None else f"{r.setup_s * 1e3:.1f}",
             f"{r.elapsed_s * 1e3:.1f}" if r.complete else "timeout",
             f"{r.mpps:.3f}", f"{r.us_per_burst:.0f}"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    return ["  ".join(x.rjust(w) if i >= 2 else x.ljust(w)
                      for i, (x, w) in enumerate(zip(line, widths))).rstrip()
            for line in [head, *body]]


__all__ = ["DEMO_MAP", "DEMO_PROGRAM_ASM", "PLACEMENTS", "Row", "compare", "demo_program",
           "placements_for", "reference_actions", "run_placement", "table"]
