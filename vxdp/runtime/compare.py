"""The same XDP program on the host (offload) and in the guest (driver mode), measured.

`compare()` runs one host and one guest runtime in this process over a socketpair (real
vhost-user: memfd memory, eventfd kicks and calls), once per placement, and sends the
same seeded traffic from the host's wire each time:

    host (C datapath)       the program attached on the host; the C port runs it and
                            fills the guest's buffers in one call per burst
    host (Python datapath)  the program attached on the host; the device model delivers
    guest (driver mode)     no program on the host; the guest's driver runs it on what it
                            reaps (XDP_TX goes back out through the device), on the
                            guest's C datapath (the host's is C too)

Each run ends when every frame is accounted for: the action counts add up to the frames
sent, the guest's stack holds the PASS frames and the wire the TX frames.  The numbers
(elapsed time, Mpps, microseconds per 32-frame burst) are measured in that run; nothing
is precomputed.  A reference run of the program over the traffic (no virtio) gives the
action counts every placement must reproduce.
"""

from __future__ import annotations

import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import trio

from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.program import Program
from vxdp.packets import TrafficGenerator

from .guest import GuestRuntime
from .host import HostRuntime
from .wire import NullPort, WireSpec
from .xdp import ACTION_NAMES, XdpHook

#: The demo's program (no toolchain needed): IPv4 (no options) UDP with an odd destination
#: port is dropped, IPv4 TCP is bounced back (MACs swapped, XDP_TX), the rest passes.
DEMO_PROGRAM_ASM = """
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r0, 2
mov %r4, %r2
add %r4, 38
jgt %r4, %r3, out
ldxh %r5, [%r2+12]
jne %r5, 0x8, out
ldxb %r5, [%r2+14]
jne %r5, 0x45, out
ldxb %r5, [%r2+23]
jeq %r5, 6, tcp
jne %r5, 17, out
ldxb %r5, [%r2+37]
and %r5, 1
jeq %r5, 0, out
mov %r0, 1
exit
tcp:
ldxw %r6, [%r2+0]
ldxh %r7, [%r2+4]
ldxw %r8, [%r2+6]
ldxh %r9, [%r2+10]
stxw [%r2+0], %r8
stxh [%r2+4], %r9
stxw [%r2+6], %r6
stxh [%r2+10], %r7
mov %r0, 3
out:
exit
"""

PLACEMENTS = (("host", "c"), ("host", "python"), ("guest", "c"))
BURST = 32


def demo_program() -> Program:
    return Program("xdp_demo_mix", "xdp", encode(assemble(DEMO_PROGRAM_ASM)))


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
    complete: bool = False

    @property
    def mpps(self) -> float:
        return self.frames / self.elapsed_s / 1e6 if self.elapsed_s else 0.0

    @property
    def us_per_burst(self) -> float:
        bursts = -(-self.frames // BURST)
        return self.elapsed_s * 1e6 / bursts if bursts else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "mpps": round(self.mpps, 4),
                "us_per_burst": round(self.us_per_burst, 1)}


def reference_actions(program: Program, frames: list[bytes]) -> dict[str, int]:
    hook = XdpHook()
    hook.attach(program)
    for at in range(0, len(frames), BURST):
        hook.run(frames[at:at + BURST])
    hook.close()
    return dict(hook.actions)


async def _run(placement: str, datapath: str, program: Program, frames: list[bytes],
               expected: dict[str, int], profile: str, timeout: float) -> Row:
    row = Row(placement, datapath, len(frames))
    host = HostRuntime(["demo-guest"], profile=profile, wire=NullPort(WireSpec("null")),
                       datapath=datapath)
    guest_hook = XdpHook()
    if placement == "host":
        host.attach(program)
    else:
        guest_hook.attach(program)
    guest = GuestRuntime(None, xdp=guest_hook, port=NullPort(WireSpec("null")),
                         datapath=datapath)
    a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    served = False

    async def dial() -> trio.socket.SocketType:
        nonlocal served
        if served:
            await trio.sleep_forever()
        served = True
        return b

    def actions() -> dict[str, int]:
        return host.actions() if placement == "host" else guest.actions()

    def done() -> bool:
        return (sum(actions().values()) == len(frames)
                and guest.stack["packets"] >= expected["pass"]
                and host.wire.tx_packets >= expected["tx"])
    port = host.guests[0]
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(port.serve_socket, a)
            await nursery.start(lambda task_status: guest.run(dial=dial,
                                                              task_status=task_status))
            with trio.move_on_after(timeout):
                while not (guest.ready.is_set() and port.rx_posted):
                    await trio.sleep(0.001)
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
            row.actions = actions()
            row.in_guest = guest.stack["packets"]
            row.wire_tx = host.wire.tx_packets
            nursery.cancel_scope.cancel()
    finally:
        guest.close()
        host.close()
    return row


def compare(program: Program | None = None, *, count: int = 512, seed: int = 7,
            profile: str = "default", timeout: float = 10.0) -> tuple[dict[str, int], list[Row]]:
    """Run every placement; returns the reference action counts and one row each."""
    prog = program if program is not None else demo_program()
    frames = TrafficGenerator(seed, mix={"udp4": 0.5, "tcp4": 0.3, "udp6": 0.1, "icmp4": 0.1},
                              vlan_share=0.0).packets(count)
    expected = reference_actions(prog, frames)

    async def main() -> list[Row]:
        return [await _run(p, d, prog, frames, expected, profile, timeout)
                for p, d in PLACEMENTS]
    return expected, trio.run(main)


def table(rows: list[Row]) -> list[str]:
    """The rows as aligned text lines (a header first)."""
    head = ["placement", "datapath", "frames", *ACTION_NAMES, "in guest", "wire tx",
            "ms", "Mpps", "us/burst"]
    body = [[r.placement, r.datapath, str(r.frames),
             *(str(r.actions.get(a, 0)) for a in ACTION_NAMES), str(r.in_guest),
             str(r.wire_tx), f"{r.elapsed_s * 1e3:.1f}" if r.complete else "timeout",
             f"{r.mpps:.3f}", f"{r.us_per_burst:.0f}"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    return ["  ".join(x.rjust(w) if i >= 2 else x.ljust(w)
                      for i, (x, w) in enumerate(zip(line, widths))).rstrip()
            for line in [head, *body]]


__all__ = ["DEMO_PROGRAM_ASM", "PLACEMENTS", "Row", "compare", "demo_program",
           "reference_actions", "table"]
