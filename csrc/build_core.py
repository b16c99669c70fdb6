"""The one build script of the C packet core (cffi out-of-line API mode).

The declarations cffi sees are the part of `vxdp_core.h` between the CDEF markers, so the
header stays the single source of truth.  Every `.c` file in this folder is compiled in.

    VXDP_SANITIZE=1  builds `vxdp._vxdp_core_asan` with ASan + UBSan instead of the
                     optimised `vxdp._vxdp_core` (see `make test-asan`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADER = HERE / "vxdp_core.h"


def cdef_text(header: Path = HEADER) -> str:
    """The declarations between the CDEF markers, preprocessor lines removed."""
    text = header.read_text()
    m = re.search(r"/\* CDEF-BEGIN \*/(.*?)/\* CDEF-END \*/", text, re.S)
    if m is None:
        raise SystemExit(f"{header}: CDEF-BEGIN/CDEF-END markers not found")
    body = m.group(1)
    return "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("#"))


def _builder() -> FFI:
    sanitize = os.environ.get("VXDP_SANITIZE") == "1"
    ffi = FFI()
    ffi.cdef(cdef_text())
    sources = sorted(str(p.relative_to(HERE.parent)) for p in HERE.glob("*.c"))
    cflags = ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    ldflags: list[str] = []
    if sanitize:
        cflags += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                   "-fno-sanitize-recover=undefined"]
        ldflags += ["-fsanitize=address,undefined"]
    else:
        cflags += ["-O2", "-g"]
    ffi.set_source(
        "vxdp._vxdp_core_asan" if sanitize else "vxdp._vxdp_core",
        '#include "vxdp_core.h"',
        sources=sources,
        include_dirs=[str(HERE.relative_to(HERE.parent))],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )
    return ffi


ffibuilder = _builder()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
