"""The `jit` engine: programs translated to C (vxdp.bpf.jitgen), compiled, run by the core.

    run_raw(insns, mem) -> r0             # the ubpf / bpf_conformance harness setting
    JitEngine(program).run_xdp(pkts)      # XDP in the frame of BPF_PROG_TEST_RUN

A program is loaded into the packet core exactly as the `interp` engine loads it (the core
checks its structure and binds its maps), then compiled into a shared object of its own and
attached to the loaded program (native.prog_set_jit): from then on the core's batch loop
calls the compiled function where it would have interpreted, still one FFI crossing per
batch.  Helpers, maps, tail calls, fault messages and the XDP frame are the core's, so the
engines differ only in how fast the instructions run.

Compiled objects are cached on disk under `$VXDP_JIT_CACHE` (default
`$XDG_CACHE_HOME/vxdp/jit`, i.e. ~/.cache/vxdp/jit), one folder per key: the program digest
(sha256 of its instructions, maps as indices), the mode, the generator version, the ABI
header and the compiler (`$CC`, default cc, and its version).  Each folder keeps the
generated `prog.c` beside `prog.so` for reading.  Loaded objects stay loaded for the life
of the process (a program may outlive the engine that compiled it in a PROG_ARRAY slot).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cffi import FFI  # type: ignore[import-untyped]

from vxdp import native
from vxdp.bpf import jitgen
from vxdp.bpf.interp import InterpEngine
from vxdp.bpf.program import Program
from vxdp.errors import CoreError, InvalidProgram

JIT_MAX_INSNS = 8192  # compile time grows faster than the program (4096 random insns: ~7 s)
# -foptimize-sibling-calls (-O2's, not -O1's): faults and frame pops leave a program's
# function by a tail call, so short programs need no stack frame (jitgen's PRELUDE)
CFLAGS = ("-std=gnu11", "-O1", "-foptimize-sibling-calls", "-fPIC", "-shared",
          "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter")
COMPILE_TIMEOUT = 300.0



def unavailable() -> str | None:
    """Why this machine cannot compile programs, None when it can."""
    if shutil.which(compiler()) is None:
        return f"no C compiler {compiler()!r} on PATH (set CC)"
    if not jitgen.JIT_HEADER.is_file():
        return (f"the ABI header {jitgen.JIT_HEADER} is missing (package data of vxdp: "
                f"reinstall the package)")
    return None


_INFO_STRUCT = """
struct vxdp_jit_info { uint32_t abi; uint32_t mode; uint32_t ninsns; uint32_t reserved;
                       void *entry; };
"""  # const in C; cffi reads it as a variable


@dataclass(frozen=True)
class Compiled:
    """A compiled program, loaded into this process."""

    key: str
    so_path: Path
    source_path: Path
    info_addr: int  # address of its vxdp_jit_info, what native.prog_set_jit takes
    warnings: str  # what the compiler said while building it ("" when read from the cache)
    lib: Any  # the loaded library; holding it keeps the code mapped


_loaded: dict[str, Compiled] = {}
_lock = threading.Lock()
_key_locks: dict[str, threading.Lock] = {}
_compiles = 0


def cache_dir() -> Path:
    if env := os.environ.get("VXDP_JIT_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vxdp" / "jit"


def compiler() -> str:
    return os.environ.get("CC", "cc")


@functools.cache
def _compiler_identity(cc: str) -> str:
    path = shutil.which(cc)
    if path is None:
        raise CoreError(f"jit: no C compiler {cc!r} on PATH (set CC)")
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                             check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CoreError(f"jit: cannot run {cc}: {exc}") from None
    first = (out.stdout or out.stderr).splitlines()
    return f"{os.path.realpath(path)} {first[0] if first else ''}"


def cache_key(code: bytes, mode: int) -> str:
    """Digest, mode, generator, ABI header and compiler: what the object depends on."""
    h = hashlib.sha256()
    for part in (hashlib.sha256(code).hexdigest(), str(mode), str(jitgen.GENERATOR_VERSION),
                 hashlib.sha256(jitgen.jit_header().encode()).hexdigest(),
                 _compiler_identity(compiler()), " ".join(CFLAGS)):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def compile_count() -> int:
    """Compiler runs of this process (cache hits do not count; a bundle counts once)."""
    return _compiles


def _run_compiler(source: str, so: Path) -> str:
    """Compile `source` into the shared object `so`, atomically; the compiler's warnings."""
    try:
        return _compile_in(source, so)
    except OSError as exc:  # the cache folder: permissions, disk space
        raise CoreError(f"jit: cannot build in {so.parent}: {exc}") from None


def _compile_in(source: str, so: Path) -> str:
    global _compiles
    so.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=so.parent, prefix=".build-") as tmp:
        tmp_src, tmp_so = Path(tmp) / "prog.c", Path(tmp) / "prog.so"
        tmp_src.write_text(source)
        cmd = [compiler(), *CFLAGS, "-o", str(tmp_so), str(tmp_src)]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT,
                                 check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise CoreError(f"jit: cannot run {cmd[0]}: {exc}") from None
        if out.returncode != 0:
            raise CoreError(f"jit: {cmd[0]} failed on the generated C:\n{out.stderr[-4000:]}")
        os.replace(tmp_so, so)
    with _lock:
        _compiles += 1
    return out.stderr


def _write(path: Path, text: str) -> None:
    """Write a cache file atomically (readers never see half of it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise CoreError(f"jit: cannot write {path}: {exc}") from None


def _on_disk(key: str) -> tuple[Path, str] | None:
    """Where the object of `key` is cached: (shared object, symbol of its info)."""
    folder = cache_dir() / key[:32]
    if (folder / "prog.so").is_file():
        return folder / "prog.so", "vxdp_jit_info"
    try:
        rel, symbol = (folder / "bundle").read_text().split()
    except (OSError, ValueError):
        return None
    so = cache_dir() / rel
    return (so, symbol) if so.is_file() else None


_libs: dict[Path, tuple[FFI, Any, set[str]]] = {}  # by path; never closed (module docstring)


def _load(key: str, so: Path, symbol: str, mode: int, n: int, warnings: str) -> Compiled:
    with _lock:
        if (entry := _libs.get(so)) is None:
            ffi = FFI()
            ffi.cdef(_INFO_STRUCT)
            try:
                entry = _libs[so] = (ffi, ffi.dlopen(str(so)), set())
            except OSError as exc:
                raise CoreError(f"jit: cannot load {so}: {exc}") from None
        ffi, handle, declared = entry
        if symbol not in declared:
            ffi.cdef(f"extern struct vxdp_jit_info {symbol};")
            declared.add(symbol)
        info = ffi.addressof(handle, symbol)
    if info.abi != native.jit_abi() or info.mode != mode or info.ninsns != n:
        raise CoreError(f"jit: {so} is not what its key says (abi {info.abi}, mode "
                        f"{info.mode}, {info.ninsns} insns): remove {cache_dir()}")
    done = Compiled(key, so, cache_dir() / key[:32] / "prog.c",
                    int(ffi.cast("uintptr_t", info)), warnings, handle)
    with _lock:
        _loaded[key] = done
    return done


def _check_size(code: bytes) -> int:
    n = len(code) // 8
    if n > JIT_MAX_INSNS:
        raise InvalidProgram(f"jit: program of {n} instructions exceeds the jit's limit of "
                             f"{JIT_MAX_INSNS} (run it on the interp engine)")
    return n


def compile_program(code: bytes, mode: int, *, name: str = "") -> Compiled:
    """The compiled form of `code` for `mode`: from this process, the disk cache or `cc`."""
    n = _check_size(code)
    key = cache_key(code, mode)
    with _lock:
        if (done := _loaded.get(key)) is not None:
            return done
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:  # one compile per key, however many threads ask
        if (done := _loaded.get(key)) is not None:
            return done
        warnings = ""
        if (found := _on_disk(key)) is None:
            source = jitgen.generate(code, mode, name=name)
            folder = cache_dir() / key[:32]
            warnings = _run_compiler(source, folder / "prog.so")
            _write(folder / "prog.c", source)
            found = folder / "prog.so", "vxdp_jit_info"
        return _load(key, *found, mode, n, warnings)


def precompile(codes: Iterable[bytes], mode: int, *, jobs: int | None = None,
               bundle: int = 64) -> None:
    """Compile many programs at once: up to `bundle` programs share one object (one
    compiler run), `jobs` compilers run in parallel (default: CPU count).  Programs the
    generator refuses are left for their own compile to report."""
    todo: dict[str, tuple[bytes, str]] = {}
    for code in dict.fromkeys(codes):
        try:
            _check_size(code)
            key = cache_key(code, mode)
            if key in _loaded or key in todo or _on_disk(key) is not None:
                continue
            todo[key] = (code, jitgen.program_source(code, mode, suffix="_" + key[:16]))
        except InvalidProgram:
            continue
    if not todo:
        return
    workers = max(1, jobs or os.cpu_count() or 1)
    keys = list(todo)
    per = min(bundle, -(-len(keys) // workers))
    groups = [keys[i:i + per] for i in range(0, len(keys), per)]

    def build(group: list[str]) -> None:
        name = hashlib.sha256("".join(group).encode()).hexdigest()[:32]
        so = cache_dir() / "bundles" / f"{name}.so"
        source = "\n".join([jitgen.source_head(), *(todo[k][1] for k in group)])
        warnings = _run_compiler(source, so)
        for k in group:
            code = todo[k][0]
            folder = cache_dir() / k[:32]
            _write(folder / "prog.c", jitgen.generate(code, mode))
            _write(folder / "bundle", f"bundles/{name}.so vxdp_jit_info_{k[:16]}\n")
            _load(k, so, f"vxdp_jit_info_{k[:16]}", mode, len(code) // 8, warnings)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(build, groups))


def attach(prog: native.ProgHandle, code: bytes, mode: int, *, name: str = "") -> Compiled:
    """Compile `code` (the bytes `prog` was loaded from) and run `prog` through it."""
    compiled = compile_program(code, mode, name=name)
    native.prog_set_jit(prog, compiled.info_addr)
    return compiled


def load(code: bytes, mode: int, maps: Sequence[native.MapHandle] = ()) -> native.ProgHandle:
    """Load into the core (its structural checks first), then compile and attach."""
    prog = native.prog_load(code, mode, maps)
    attach(prog, code, mode)
    return prog


def run_raw(insns: bytes, mem: bytes = b"") -> int:
    """As vxdp.bpf.interp.run_raw, on compiled code: r0 as a u64."""
    ret, _ = native.run_raw(load(insns, native.MODE_RAW), mem)
    return ret


def run_raw_mem(insns: bytes, mem: bytes = b"") -> tuple[int, bytes]:
    """As run_raw, also returning the memory as the program left it."""
    return native.run_raw(load(insns, native.MODE_RAW), mem)


class JitEngine(InterpEngine):
    """XDP programs compiled to native code, over CoreMaps; tail-call targets compiled too."""

    name = "jit"

    def _load(self, program: Program) -> native.ProgHandle:
        prog = super()._load(program)
        try:
            attach(prog, program.insns, native.MODE_XDP, name=program.name)
        except InvalidProgram as exc:
            raise InvalidProgram(f"program {program.name!r}: {exc}") from None
        return prog


if (_why := unavailable()) is not None:  # the engine registry reports this as unavailable
    raise ImportError(f"the jit cannot compile here: {_why}")
