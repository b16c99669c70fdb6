"""Compile BPF C with clang, cached by content (tests, the demo and the bench share it).

    obj = compile_c(Path("prog.c"))          # -> Path to the .o, rebuilt only when needed

The cache key covers the source text, the headers next to it, the flags and clang's version,
so a changed source or compiler never serves a stale object.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from vxdp.errors import UsageError

CACHE_DIR = Path(os.environ.get("VXDP_CACHE", Path.home() / ".cache" / "vxdp")) / "bpf-objs"
DEFAULT_FLAGS = ("-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror",
                 "-Wno-unused-function")


@functools.cache
def clang_path() -> str | None:
    return shutil.which(os.environ.get("CLANG", "clang"))


@functools.cache
def clang_version() -> str:
    path = clang_path()
    if path is None:
        return ""
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else ""


def clang_unavailable() -> str | None:
    """Why BPF C cannot be compiled here, or None when it can."""
    if clang_path() is None:
        return "clang not found (Debian package clang; `make test` installs it when root)"
    return None


def _include_flags() -> list[str]:
    # <linux/bpf.h> pulls in <asm/types.h>, which Debian keeps under the multiarch triplet.
    triplet = f"/usr/include/{platform.machine()}-linux-gnu"
    return [f"-I{triplet}"] if Path(triplet).is_dir() else []


def compile_c(source: Path, *, flags: Sequence[str] = (), cache_dir: Path = CACHE_DIR) -> Path:
    """Compile one BPF C file to an object; return the cached object's path."""
    reason = clang_unavailable()
    if reason:
        raise UsageError(reason)
    source = source.resolve()
    all_flags = [*DEFAULT_FLAGS, *flags, *_include_flags(), f"-I{source.parent}"]
    h = hashlib.sha256()
    h.update(source.read_bytes())
    for header in sorted(source.parent.glob("*.h")):
        h.update(header.name.encode() + header.read_bytes())
    h.update("\0".join(all_flags).encode() + clang_version().encode())
    out = cache_dir / f"{source.stem}-{h.hexdigest()[:16]}.o"
    if out.exists():
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    proc = subprocess.run([clang_path() or "clang", *all_flags, "-c", str(source), "-o", str(tmp)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"clang failed on {source.name}:\n{proc.stderr.strip()}")
    tmp.replace(out)
    return out
