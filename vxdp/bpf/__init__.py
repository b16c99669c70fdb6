"""The BPF machine: ISA, ELF loader, maps, helpers, verifier, engines, kernel oracle.

Imports nothing of guest, host or virtio_spec.  The names below are re-exported from the
module that defines them on first use (PEP 562), so importing one module of the machine
(`vxdp.bpf.program`, say) does not import the assembler and the rest besides.

The verifier and the instruction set (`COMPILED`) may also be built with mypyc (setup.py):
the compiled modules sit beside the Python ones and are imported instead of them, unless
VXDP_VERIFIER=python is in the environment, which makes this package's imports take the
Python source (the reference the compiled build is tested against).
"""

# ruff: noqa: F401 - the imports under TYPE_CHECKING give the re-exports their types;
# at run time the names resolve through __getattr__ below.

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vxdp.bpf.asm import assemble, to_asm
    from vxdp.bpf.disasm import disassemble
    from vxdp.bpf.helpers import HELPERS, Arg, Helper, Ret
    from vxdp.bpf.isa import Insn, check_program, decode, encode
    from vxdp.bpf.program import MapSpec, MapType, Program, ProgType, XdpAction

#: The modules a mypyc build compiles (setup.py's list): these and the verifier's.
COMPILED = ("vxdp.bpf.isa", "vxdp.bpf.verifier.")


def _take_python_source() -> None:
    """Make the COMPILED modules import as Python source only (the compiled ones beside
    them are passed over): a finder ahead of the standard ones."""
    import importlib.machinery
    import sys
    from collections.abc import Sequence
    from importlib.abc import MetaPathFinder
    from importlib.machinery import ModuleSpec
    from types import ModuleType

    class PythonSource(MetaPathFinder):
        def find_spec(self, fullname: str, path: Sequence[str] | None,
                      target: ModuleType | None = None) -> ModuleSpec | None:
            if not path or not any(fullname == m or (m.endswith(".") and fullname.startswith(m))
                                   for m in COMPILED):
                return None
            details = (importlib.machinery.SourceFileLoader,
                       importlib.machinery.SOURCE_SUFFIXES)
            for entry in path:
                spec = importlib.machinery.FileFinder(entry, details).find_spec(fullname)
                if spec is not None:
                    return spec
            return None

    if not any(type(f).__name__ == "PythonSource" for f in sys.meta_path):
        sys.meta_path.insert(0, PythonSource())


if os.environ.get("VXDP_VERIFIER", "") == "python":
    _take_python_source()

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
