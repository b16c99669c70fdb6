"""The `smartnic` engine: a program translated for the NIC's micro-engine and run there.

    engine = create_engine("smartnic", program)     # TranslationRefused: the NIC's "no"
    engine.image.listing()                          # what the code store holds
    engine.run_xdp(frames)                          # the image, on the VXME-32 simulator

`vxdp exec --engine smartnic` and the SmartNIC process's Python datapath run programs this
way; the translation refuses what the micro-engine cannot run (vxdp.bpf.nic.translate).
Maps are core maps (`CoreMap`), shared or created as the interp engine does, so the
NIC's maps are the same objects its control commands read and write.
"""

from __future__ import annotations

from collections.abc import Sequence

from vxdp.bpf.coremaps import CoreMap
from vxdp.bpf.engine import Engine, XdpResult
from vxdp.bpf.maps import Map
from vxdp.bpf.program import Program, ProgType
from vxdp.errors import TranslationRefused, UsageError

from .machine import MACHINE
from .sim import Simulator
from .translate import Image, translate


class NicEngine(Engine):
    """XDP programs as VXME-32 images, run by the simulator over core maps."""

    name = "smartnic"

    def __init__(self, program: Program, maps: Sequence[Map] | None = None, *, seed: int = 0,
                 image: Image | None = None) -> None:
        if program.prog_type != ProgType.XDP:
            raise UsageError(f"program {program.name!r} is {program.prog_type.name}, not xdp")
        super().__init__(program, maps)
        self._owned = maps is None
        try:
            self.image = image if image is not None else translate(program)
        except TranslationRefused as exc:
            raise TranslationRefused(f"program {program.name!r}: the NIC's translator "
                                     f"({MACHINE}) refuses it: {exc}", exc.errno,
                                     exc.pc) from None
        if maps is None:
            self.maps = [CoreMap(spec) for spec in program.maps]
        self.sim = Simulator(self.image, self.maps, seed=seed)

    def seed(self, seed: int) -> None:
        """Restart get_prandom_u32's sequence from `seed`."""
        self.sim.seed(seed)

    def run_xdp(self, packets: Sequence[bytes], *, ingress_ifindex: int = 1,
                rx_queue_index: int = 0) -> list[XdpResult]:
        return self.sim.run_batch(packets, ingress_ifindex=ingress_ifindex,
                                  rx_queue_index=rx_queue_index)

    def load_tail_target(self, program: Program) -> int:
        raise UsageError("the smartnic engine runs no tail calls: the NIC offers no "
                         "PROG_ARRAY maps")

    def close(self) -> None:
        if self._owned:
            super().close()


__all__ = ["NicEngine"]
