"""The one module that talks to the cffi extension's `lib` and `ffi`.

Everything else in vxdp, guest and host calls the thin wrappers here: each checks lengths
and types before the call and turns a negative return code into an exception, so no other
module has to know how the C core reports errors.

Handles (`ProgHandle`, `MapHandle`, `EnvHandle`) are cffi pointers that free their C object
when collected; the core counts references, so a map outlives the programs that use it.

`VXDP_CORE=asan` selects the sanitizer build (`make test-asan` builds and preloads it).
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Sequence
from typing import Any, NewType

from vxdp.errors import CoreError, InvalidProgram, MapError, ProgramFault

if os.environ.get("VXDP_CORE") == "asan":
    from vxdp._vxdp_core_asan import ffi, lib
else:
    from vxdp._vxdp_core import ffi, lib

ABI = 2

MODE_RAW = 0
MODE_XDP = 1
XDP_HEADROOM = 256
XDP_MAX_DATA = 4096 - 256 - 320  # the longest packet a test run takes
ETH_HLEN = 14

ProgHandle = NewType("ProgHandle", Any)
MapHandle = NewType("MapHandle", Any)
EnvHandle = NewType("EnvHandle", Any)


def core_version() -> str:
    """Version string compiled into the C core."""
    return ffi.string(lib.vxdp_core_version()).decode()


def check_abi() -> None:
    """Refuse to run against a core built from other headers than this module expects."""
    got = lib.vxdp_core_abi()
    if got != ABI:
        raise CoreError(f"packet core ABI {got}, this vxdp expects {ABI}: rebuild with `make build`")


def _errbuf() -> Any:
    return ffi.new("char[]", 256)


def _text(buf: Any) -> str:
    return ffi.string(buf).decode(errors="replace")


# ---------------------------------------------------------------- programs

def prog_load(insns: bytes, mode: int, maps: Sequence[MapHandle] = ()) -> ProgHandle:
    """Load `insns` (map references: LD_IMM64 imm = index into `maps`); InvalidProgram."""
    if len(insns) == 0 or len(insns) % 8:
        raise InvalidProgram(f"program of {len(insns)} bytes is not a whole number of "
                             "8-byte instructions")
    if mode not in (MODE_RAW, MODE_XDP):
        raise ValueError(f"unknown program mode {mode}")
    out = ffi.new("struct vxdp_prog **")
    arr = ffi.new("struct vxdp_map *[]", list(maps) or [ffi.NULL])
    err = _errbuf()
    rc = lib.vxdp_prog_load(out, insns, len(insns), mode, arr, len(maps), err, 256)
    if rc < 0:
        raise InvalidProgram(_text(err))
    return ProgHandle(ffi.gc(out[0], lib.vxdp_prog_free))


def prog_id(prog: ProgHandle) -> int:
    """The id a PROG_ARRAY slot holds to reach `prog`."""
    return int(lib.vxdp_prog_id(prog))


def run_raw(prog: ProgHandle, mem: bytes, env: EnvHandle | None = None) -> tuple[int, bytes]:
    """One run in the bpf_conformance harness's setting; returns (r0, mem after the run)."""
    buf = ffi.new("uint8_t[]", bytes(mem) or b"\0")
    ret = ffi.new("uint64_t *")
    err = _errbuf()
    rc = lib.vxdp_run_raw(prog, env if env is not None else ffi.NULL, buf, len(mem), ret,
                          err, 256)
    if rc < 0:
        raise ProgramFault(_text(err), -rc)
    return int(ret[0]), bytes(ffi.buffer(buf, len(mem)))


# ---------------------------------------------------------------- environments

def env_new(seed: int = 0) -> EnvHandle:
    """Per-engine state of the helpers: CPU number, prandom state, trace_printk buffer."""
    env = lib.vxdp_env_new(seed & (2**64 - 1))
    if env == ffi.NULL:
        raise CoreError("out of memory")
    return EnvHandle(ffi.gc(env, lib.vxdp_env_free))


def env_set_cpu(env: EnvHandle, cpu: int) -> None:
    if not 0 <= cpu < 2**32:
        raise ValueError(f"cpu {cpu} out of range")
    lib.vxdp_env_set_cpu(env, cpu)


def env_set_seed(env: EnvHandle, seed: int) -> None:
    lib.vxdp_env_set_seed(env, seed & (2**64 - 1))


def env_trace_read(env: EnvHandle) -> bytes:
    """Take what trace_printk wrote since the last read."""
    buf = ffi.new("char[]", 64 << 10)
    n = lib.vxdp_env_trace_read(env, buf, 64 << 10)
    return bytes(ffi.buffer(buf, n))


XdpRun = tuple[int, bytes, "int | None"]  # (retval, data_meta..data_end, redirect target)
_nozero = ffi.new_allocator(should_clear_after_alloc=False)


def run_xdp(prog: ProgHandle, env: EnvHandle, packets: Sequence[bytes], ingress_ifindex: int,
            rx_queue_index: int) -> list[XdpRun]:
    """Run a batch in one call; a fault raises ProgramFault naming the packet and pc."""
    n = len(packets)
    for i, p in enumerate(packets):
        if not ETH_HLEN <= len(p) <= XDP_MAX_DATA:
            raise ValueError(f"packet {i}: {len(p)} bytes, an XDP test run takes "
                             f"{ETH_HLEN} to {XDP_MAX_DATA}")
    if not (0 <= ingress_ifindex < 2**32 and 0 <= rx_queue_index < 2**32):
        raise ValueError("ingress_ifindex and rx_queue_index are u32")
    if n == 0:
        return []
    b = ffi.new("struct vxdp_xdp_batch *")
    inbuf = ffi.from_buffer(b"".join(packets))
    cap = n * XDP_MAX_OUT
    lens = ffi.new("uint32_t[]", [len(p) for p in packets])
    out = _nozero("uint8_t[]", cap)
    off, olen, ret = _nozero("uint32_t[]", n), _nozero("uint32_t[]", n), _nozero("uint32_t[]", n)
    redirect = _nozero("int64_t[]", n)
    b.pkts, b.pkt_len, b.count = inbuf, lens, n
    b.out, b.out_cap, b.out_off, b.out_len, b.retval, b.redirect = out, cap, off, olen, ret, redirect
    b.ingress_ifindex = ingress_ifindex
    b.rx_queue_index = rx_queue_index
    err = _errbuf()
    rc = lib.vxdp_run_xdp(prog, env, b, err, 256)
    if rc < 0:
        raise ProgramFault(_text(err), -rc)
    offs, lens_out = ffi.unpack(off, n), ffi.unpack(olen, n)
    blob = ffi.buffer(out, offs[-1] + lens_out[-1])[:]
    return [(r, blob[o:o + ln], None if d < 0 else d)
            for r, o, ln, d in zip(ffi.unpack(ret, n), offs, lens_out, ffi.unpack(redirect, n),
                                   strict=True)]


# ---------------------------------------------------------------- maps

def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, flags: int,
               ncpus: int) -> MapHandle:
    for name, v in (("key_size", key_size), ("value_size", value_size),
                    ("max_entries", max_entries), ("flags", flags), ("ncpus", ncpus)):
        if not 0 <= v < 2**32:
            raise MapError(f"{name} {v} out of range", _errno.EINVAL)
    out = ffi.new("struct vxdp_map **")
    err = _errbuf()
    rc = lib.vxdp_map_create(out, map_type, key_size, value_size, max_entries, flags, ncpus,
                             err, 256)
    if rc < 0:
        raise MapError(_text(err), -rc)
    return MapHandle(ffi.gc(out[0], lib.vxdp_map_free))


def _fail(err: Any, rc: int) -> MapError:
    return MapError(_text(err), -rc)


def map_lookup(m: MapHandle, key: bytes, key_size: int, value_len: int,
               cpu_values: int) -> bytes | None:
    """The value bytes (cpu_values values of value_len bytes each), None when absent."""
    if len(key) != key_size:
        raise MapError(f"key is {len(key)} bytes, key_size is {key_size}", _errno.EINVAL)
    val = ffi.new("uint8_t[]", max(1, value_len * cpu_values))
    err = _errbuf()
    rc = lib.vxdp_map_lookup(m, key, val, cpu_values, err, 256)
    if rc == -_errno.ENOENT:
        return None
    if rc < 0:
        raise _fail(err, rc)
    return bytes(ffi.buffer(val, value_len * cpu_values))


def map_update(m: MapHandle, key: bytes, key_size: int, value: bytes, value_len: int,
               cpu_values: int, flags: int) -> None:
    if len(key) != key_size:
        raise MapError(f"key is {len(key)} bytes, key_size is {key_size}", _errno.EINVAL)
    if len(value) != value_len * cpu_values:
        raise MapError(f"value is {len(value)} bytes, expected {value_len * cpu_values}",
                       _errno.EINVAL)
    if not 0 <= flags < 2**64:
        raise MapError(f"invalid update flags {flags}", _errno.EINVAL)
    err = _errbuf()
    rc = lib.vxdp_map_update(m, key, value, cpu_values, flags, err, 256)
    if rc < 0:
        raise _fail(err, rc)


def map_delete(m: MapHandle, key: bytes, key_size: int) -> None:
    if len(key) != key_size:
        raise MapError(f"key is {len(key)} bytes, key_size is {key_size}", _errno.EINVAL)
    err = _errbuf()
    rc = lib.vxdp_map_delete(m, key, err, 256)
    if rc < 0:
        raise _fail(err, rc)


def map_next_key(m: MapHandle, key: bytes | None, key_size: int) -> bytes | None:
    if key is not None and len(key) != key_size:
        raise MapError(f"key is {len(key)} bytes, key_size is {key_size}", _errno.EINVAL)
    nxt = ffi.new("uint8_t[]", max(1, key_size))
    err = _errbuf()
    rc = lib.vxdp_map_next_key(m, ffi.NULL if key is None else key, nxt, err, 256)
    if rc == -_errno.ENOENT:
        return None
    if rc < 0:
        raise _fail(err, rc)
    return bytes(ffi.buffer(nxt, key_size))


def map_freeze(m: MapHandle) -> None:
    lib.vxdp_map_freeze(m)


def ringbuf_read(m: MapHandle, max_record: int) -> bytes | None:
    """The next committed ringbuf record, None when none is ready."""
    buf = ffi.new("uint8_t[]", max(1, max_record))
    rc = lib.vxdp_ringbuf_read(m, buf, max_record)
    if rc == -_errno.ENOENT:
        return None
    if rc < 0:
        raise MapError(f"ringbuf read failed: {os.strerror(-rc)}", -rc)
    return bytes(ffi.buffer(buf, rc))


check_abi()
XDP_MAX_OUT = int(lib.vxdp_xdp_max_out())  # the longest output: meta, headroom and growth
