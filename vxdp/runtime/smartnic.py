"""The SmartNIC process: a virtio-net device the guest's driver reaches directly.

Passthrough, as vDPA or an SR-IOV virtual function gives it: no host device model sits
between the guest's virtio driver and the NIC, so the guest offloads its XDP program
straight to the NIC over the control virtqueue, and the NIC decides.  Each `--socket` is
one virtual function (a vhost-user back-end: what a vDPA device looks like to a VMM).

What makes it a NIC rather than a host is the profile, the engine and the limits, not a
fork of the host's runtime: `SmartNicRuntime` is a `HostRuntime` with

* the device profile `smartnic`: the capabilities of virtio_spec.offload.SMARTNIC in
  config space (HASH and ARRAY maps, six helpers, 2800 instructions, 8 maps in 2 MiB),
  which the guest checks its program against before it sends it;
* the `smartnic` engine: every program the device's verifier accepts is translated for
  the NIC's micro-engine (vxdp.bpf.nic, VXME-32), which refuses with its own errno and
  `[vxme]` log line what it has no mapping for, and holds the image in its code store;
  CREATE_MAP is refused past the firmware's element size;
* no program of its own: the NIC runs what its guest offloads (`vxdp prog attach` is not
  served), and no host-attached hook sits in front of it.

The control socket (`--control`) serves `vxdp prog show|dump xlated|dump jited` (the
image, its machine and the words per BPF instruction), `vxdp map ...` on the offloaded
maps, `vxdp link`, and `stats`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from host import get_profile
from vxdp.bpf.nic import CODE_STORE, LM_STACK, MACHINE, MAX_ELEM_SIZE

from .control import ControlHandler, ControlServer
from .host import BURST, HostRuntime
from .wire import WirePort
from .xdp import XdpHook

#: The device profile every virtual function gets.
PROFILE = "smartnic"
ENGINE = "smartnic"


class NicControlHandler(ControlHandler):
    """The host's control operations minus those that attach a program of the host's
    own: a NIC runs only what its guest offloads (OpsHandler answers EOPNOTSUPP)."""

    serves = "a SmartNIC (it runs what its guest offloads)"

    def __init__(self, runtime: HostRuntime) -> None:
        super().__init__(runtime)
        for op in ("prog.attach", "prog.detach"):
            del self.ops[op]


class SmartNicRuntime(HostRuntime):
    """The SmartNIC: one virtual function per socket (see the module docstring)."""

    def __init__(self, sockets: Sequence[str | os.PathLike[str]], *,
                 wire: WirePort | None = None, burst: int = BURST, datapath: str = "c",
                 control: str | os.PathLike[str] | None = None) -> None:
        super().__init__(sockets, profile=get_profile(PROFILE), wire=wire, xdp=XdpHook(),
                         burst=burst, datapath=datapath, engine=ENGINE)
        self.control = ControlServer(NicControlHandler(self), control) \
            if control is not None else None

    @staticmethod
    def machine() -> dict[str, Any]:
        """The micro-engine's limits (vxdp.bpf.nic.machine): what the stats and the
        start-up line show."""
        return {"type": MACHINE, "code_store_insns": CODE_STORE, "stack_bytes": LM_STACK,
                "max_elem_bytes": MAX_ELEM_SIZE}

    def describe(self) -> str:
        caps = self.profile.xdp
        assert caps is not None
        return (f"machine {MACHINE} (code store {CODE_STORE} insns, stack {LM_STACK} B, "
                f"map elements up to {MAX_ELEM_SIZE} B); offload capabilities "
                f"max_insns={caps.xdp_max_insns} max_maps={caps.xdp_max_maps} "
                f"map_mem={caps.xdp_max_map_mem_kib} KiB map_types="
                f"{sorted(caps.map_type_ids)} helpers={sorted(caps.helper_ids)}")

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "machine": self.machine()}


__all__ = ["ENGINE", "PROFILE", "NicControlHandler", "SmartNicRuntime"]
