"""The BPF machine: ISA, ELF loader, maps, helpers, verifier, engines, kernel oracle.

Imports nothing of guest, host or virtio_spec.
"""

from vxdp.bpf.helpers import HELPERS, Arg, Helper, Ret
from vxdp.bpf.program import MapSpec, MapType, Program, ProgType, XdpAction

__all__ = ["HELPERS", "Arg", "Helper", "MapSpec", "MapType", "ProgType", "Program", "Ret",
           "XdpAction"]
