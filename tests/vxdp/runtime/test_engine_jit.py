"""`vxdp host --engine jit` / `vxdp guest --engine jit`: the C ports run the program the
hook compiled, not the interpreter, with the same verdicts.

The host-attached program reaches a guest's C port two ways (attached before the port
takes the rings, and attached while it runs); the guest's driver-mode program reaches its
C port when the driver lends pair 1.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from vxdp import native
from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.program import Program
from vxdp.packets import udp_packet
from vxdp.runtime import XdpHook, open_port

from .conftest import Rig, core_unavailable, until

pytest.importorskip("vxdp.bpf.jit", exc_type=ImportError)

PASS = Program("pass_all", "xdp", encode(assemble("mov %r0, 2\nexit")))
DROP = Program("drop_all", "xdp", encode(assemble("mov %r0, 1\nexit")))
FRAMES = [udp_packet("10.0.0.1", "10.0.0.2", 1, 2, b"x" * i) for i in range(7)]


@pytest.fixture
def datapath() -> str:
    """The C datapath only (the Python one runs programs through the hook's engine)."""
    if (why := core_unavailable()) is not None:
        pytest.skip(why)
    return "c"


def compiled(handle: native.PortHandle | native.GportHandle) -> bool:
    """Whether the program a C port runs has compiled code attached."""
    return native.prog_has_jit(handle.prog[0])  # type: ignore[attr-defined]


async def test_c_ports_run_the_compiled_program(rig_factory: Callable[..., Rig]) -> None:
    with trio.fail_after(20):
        rig = rig_factory(xdp=XdpHook("jit"))
        rig.host.attach(PASS)  # before the guest's port exists: taken with the rings
        guest_hook = XdpHook("jit")
        guest_hook.attach(DROP)
        guest = await rig.add_guest(port=open_port("null"), xdp=guest_hook)
        port = rig.host.guests[0].cpath
        await until(lambda: port.active and guest.cport is not None, "both C ports")
        assert compiled(port.port.handle) and compiled(guest.cport.handle)
        rig.host.from_wire(FRAMES)
        await until(lambda: guest.stats()["xdp"]["actions"]["drop"] == 7,
                    "7 drops in the guest's driver")
        rig.host.attach(DROP)  # while the port runs
        assert compiled(port.port.handle)
        rig.host.from_wire(FRAMES)
    assert rig.host.actions() == {"aborted": 0, "drop": 7, "pass": 7, "tx": 0, "redirect": 0}
