"""The BPF machine: ISA, ELF loader, maps, helpers, verifier, engines, kernel oracle.

Imports nothing of guest, host or virtio_spec.
"""

from vxdp.bpf.asm import assemble, to_asm
from vxdp.bpf.disasm import disassemble
from vxdp.bpf.helpers import HELPERS, Arg, Helper, Ret
from vxdp.bpf.isa import Insn, check_program, decode, encode
from vxdp.bpf.program import MapSpec, MapType, Program, ProgType, XdpAction

__all__ = ["HELPERS", "Arg", "Helper", "Insn", "MapSpec", "MapType", "ProgType", "Program", "Ret",
           "XdpAction", "assemble", "check_program", "decode", "disassemble", "encode", "to_asm"]
