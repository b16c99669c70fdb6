"""Build hook: the cffi packet core and the compiled verifier are built at install time.

Everything else about the package lives in pyproject.toml; setuptools needs this file
because `cffi_modules` has no pyproject spelling, and for the verifier's second build:

- `vxdp/_vxdp_core` (csrc/, cffi out-of-line API mode): always.
- the verifier (`vxdp/bpf/verifier/*` and the instruction set it decodes,
  `vxdp/bpf/isa.py`) compiled with mypyc, when mypyc is importable and VXDP_MYPYC is not
  0.  The Python modules stay beside the compiled ones and are the reference: an install
  without mypyc, or VXDP_VERIFIER=python at run time, verifies with them, with the same
  verdicts and logs (tests/vxdp/verifier/test_build.py), a few times slower.  The
  packages' __init__ files are left uncompiled: vxdp/bpf/__init__.py makes the choice.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
VERIFIER = "vxdp/bpf/verifier"


def compiled_modules() -> list[str]:
    """The modules mypyc compiles (relative paths, as mypycify wants them); the same list
    as vxdp.bpf.COMPILED."""
    return ["vxdp/bpf/isa.py", *sorted(str(p.relative_to(HERE)) for p in
                                       (HERE / VERIFIER).glob("*.py")
                                       if p.name != "__init__.py")]


class BuildExt(build_ext):
    """build_ext that adds the mypyc extensions when the command is set up to run, not
    when setup.py is read (an sdist or a metadata query never runs mypy)."""

    def finalize_options(self) -> None:
        added = any(e.name.endswith("__mypyc") for e in self.distribution.ext_modules or [])
        if os.environ.get("VXDP_MYPYC", "1") != "0" and not added:
            try:
                from mypyc.build import mypycify
            except ImportError:
                print("vxdp: mypyc not installed: the verifier stays pure Python",
                      file=sys.stderr)
            else:
                cwd = os.getcwd()
                os.chdir(HERE)  # mypycify works on paths relative to the project
                try:
                    exts = mypycify(compiled_modules(), opt_level="3", debug_level="0",
                                     group_name="vxdp.bpf.verifier")
                finally:
                    os.chdir(cwd)
                for ext in exts:
                    ext.sources = [str(HERE / s) if not os.path.isabs(s) else s
                                   for s in ext.sources]
                    ext.include_dirs = [str(HERE / d) if not os.path.isabs(d) else d
                                        for d in ext.include_dirs]
                self.distribution.ext_modules = [*(self.distribution.ext_modules or []),
                                                 *exts]
        super().finalize_options()

    def run(self) -> None:
        super().run()
        if self.inplace and any(e.name.endswith("__mypyc") for e in self.extensions):
            # what the compiled modules were built from: tests/vxdp/verifier/test_build.py
            # compares it with the sources (a timestamp says nothing when an unchanged
            # module is not rewritten)
            sources = {m: hashlib.sha256((HERE / m).read_bytes()).hexdigest()
                       for m in compiled_modules()}
            (HERE / "vxdp/bpf/verifier__mypyc.sources").write_text(
                json.dumps(sources, indent=1, sort_keys=True) + "\n")


setup(cffi_modules=["csrc/build_core.py:ffibuilder"], cmdclass={"build_ext": BuildExt})
