"""The BPF machine: ISA, ELF loader, maps, helpers, verifier, engines, kernel oracle.

Imports nothing of guest, host or virtio_spec.  The names below are re-exported from the
module that defines them on first use (PEP 562), so importing one module of the machine
(`vxdp.bpf.program`, say) does not import the assembler and the rest besides.
"""

# ruff: noqa: F401 - the imports under TYPE_CHECKING give the re-exports their types;
# at run time the names resolve through __getattr__ below.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vxdp.bpf.asm import assemble, to_asm
    from vxdp.bpf.disasm import disassemble
    from vxdp.bpf.helpers import HELPERS, Arg, Helper, Ret
    from vxdp.bpf.isa import Insn, check_program, decode, encode
    from vxdp.bpf.program import MapSpec, MapType, Program, ProgType, XdpAction

#: The re-exported names, by the module that defines them.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "asm": ("assemble", "to_asm"),
    "disasm": ("disassemble",),
    "helpers": ("HELPERS", "Arg", "Helper", "Ret"),
    "isa": ("Insn", "check_program", "decode", "encode"),
    "program": ("MapSpec", "MapType", "Program", "ProgType", "XdpAction"),
}
_MODULE_OF = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """A re-exported name, imported from its module on first use."""
    mod = _MODULE_OF.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
