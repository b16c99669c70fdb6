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
from array import array as _array
from collections.abc import Sequence
from typing import Any

from vxdp.errors import CoreError, InvalidProgram, MapError, ProgramFault
from vxdp.frames import PackedFrames

if os.environ.get("VXDP_CORE") == "asan":
    from vxdp._vxdp_core_asan import ffi, lib
else:
    from vxdp._vxdp_core import ffi, lib

ABI = 6

MODE_RAW = 0
MODE_XDP = 1
XDP_HEADROOM = 256
XDP_MAX_DATA = 4096 - 256 - 320  # the longest packet a test run takes
ETH_HLEN = 14

# cffi pointers (`struct vxdp_prog *`, ...) that free their C object when collected
ProgHandle = Any
MapHandle = Any
EnvHandle = Any


def core_version() -> str:
    """Version string compiled into the C core."""
    return str(ffi.string(lib.vxdp_core_version()).decode())


def check_abi() -> None:
    """Refuse to run against a core built from other headers than this module expects."""
    got = lib.vxdp_core_abi()
    if got != ABI:
        raise CoreError(f"packet core ABI {got}, this vxdp expects {ABI}: rebuild with `make build`")


def _errbuf() -> Any:
    return ffi.new("char[]", 256)


def _text(buf: Any) -> str:
    return str(ffi.string(buf).decode(errors="replace"))


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
    return ffi.gc(out[0], lib.vxdp_prog_free)


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
    return ffi.gc(env, lib.vxdp_env_free)


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


def _xdp_batch(packets: Sequence[bytes], ingress_ifindex: int, rx_queue_index: int
               ) -> tuple[Any, list[Any]]:
    """The batch struct of `packets` and the buffers it points into (None, [] for no
    packets); ValueError for a packet an XDP run cannot take."""
    n = len(packets)
    for i, p in enumerate(packets):
        if not ETH_HLEN <= len(p) <= XDP_MAX_DATA:
            raise ValueError(f"packet {i}: {len(p)} bytes, an XDP test run takes "
                             f"{ETH_HLEN} to {XDP_MAX_DATA}")
    if not (0 <= ingress_ifindex < 2**32 and 0 <= rx_queue_index < 2**32):
        raise ValueError("ingress_ifindex and rx_queue_index are u32")
    if n == 0:
        return None, []
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
    return b, [inbuf, lens, out, off, olen, ret, redirect]


def run_xdp(prog: ProgHandle, env: EnvHandle, packets: Sequence[bytes], ingress_ifindex: int,
            rx_queue_index: int) -> list[XdpRun]:
    """Run a batch in one call; a fault raises ProgramFault naming the packet and pc."""
    n = len(packets)
    b, keep = _xdp_batch(packets, ingress_ifindex, rx_queue_index)
    if b is None:
        return []
    _, _, out, off, olen, ret, redirect = keep
    err = _errbuf()
    rc = lib.vxdp_run_xdp(prog, env, b, err, 256)
    if rc < 0:
        raise ProgramFault(_text(err), -rc)
    offs, lens_out = ffi.unpack(off, n), ffi.unpack(olen, n)
    blob = ffi.buffer(out, offs[-1] + lens_out[-1])[:]
    return [(r, blob[o:o + ln], None if d < 0 else d)
            for r, o, ln, d in zip(ffi.unpack(ret, n), offs, lens_out, ffi.unpack(redirect, n),
                                   strict=True)]


def run_xdp_cpu_ns(prog: ProgHandle, env: EnvHandle, packets: Sequence[bytes], repeat: int,
                   ingress_ifindex: int = 1, rx_queue_index: int = 0) -> int:
    """Run the batch `repeat` times in one call; the CPU time this thread spent in the runs,
    in ns (benchmarks: vxdp.bench).  A fault raises ProgramFault."""
    if not packets or not 0 < repeat < 2**32:
        raise ValueError("a timed run needs packets and a repeat count in 1..2**32-1")
    b, keep = _xdp_batch(packets, ingress_ifindex, rx_queue_index)
    cpu_ns = ffi.new("uint64_t *")
    err = _errbuf()
    rc = lib.vxdp_run_xdp_repeat(prog, env, b, repeat, cpu_ns, err, 256)
    del keep
    if rc < 0:
        raise ProgramFault(_text(err), -rc)
    return int(cpu_ns[0])


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
    return ffi.gc(out[0], lib.vxdp_map_free)


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


def map_id(m: MapHandle) -> int:
    """The core's id of a map (what a map-in-map slot holds on the syscall side)."""
    return int(lib.vxdp_map_id(m))


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


# ---------------------------------------------------------------- split virtqueues (vring.c)

VQ_F_EVENT_IDX = 1 << 0
VQ_F_INDIRECT = 1 << 1
VQ_F_DRIVER = 1 << 2
VQ_MAX_SIZE = 32768


class VringError(CoreError):
    """A refusal of the C ring engine.  `errno`: EPROTO (the peer broke a ring rule) and
    EFAULT (an address outside guest memory) break the queue; EPIPE (already broken);
    EINVAL / ENOSPC (our own misuse, nothing changed).  `clause` names the virtio 1.3
    section for the first three."""

    def __init__(self, message: str, errno: int, clause: str = "") -> None:
        super().__init__(message)
        self.errno = errno
        self.clause = clause


class GmemHandle:
    """A guest-memory table in the core; keeps the Python buffers it points into alive."""

    __slots__ = ("_bufs", "ptr")

    def __init__(self, ptr: Any, bufs: list[Any]) -> None:
        self.ptr = ptr
        self._bufs = bufs


class VqHandle:
    """A split queue in the core; keeps its guest memory alive."""

    __slots__ = ("driver", "mem", "ptr", "size")

    def __init__(self, ptr: Any, mem: GmemHandle, size: int, driver: bool) -> None:
        self.ptr = ptr
        self.mem = mem
        self.size = size
        self.driver = driver


def need_event(event_idx: int, new_idx: int, old_idx: int) -> bool:
    """virtio 1.3 Appendix A virtq_need_event, as the C engine decides it."""
    return bool(lib.vxdp_need_event(event_idx & 0xFFFF, new_idx & 0xFFFF, old_idx & 0xFFFF))


def gmem_new(regions: Sequence[tuple[int, Any]]) -> GmemHandle:
    """Hand `(gpa_base, writable buffer)` regions to the core once (SET_MEM_TABLE)."""
    if not regions:
        raise CoreError("guest memory needs at least one region")
    # The core keeps raw pointers; a memoryview held here pins each buffer (a bytearray
    # cannot resize, an mmap cannot close while it is exported).  No from_buffer object
    # is kept: collected in a reference cycle with its memoryview it crashes CPython.
    views = [memoryview(buf).cast("B") for _, buf in regions]
    addrs = []
    for view in views:
        if view.readonly:
            raise CoreError("guest memory regions must be writable")
        cbuf = ffi.from_buffer("uint8_t[]", view, require_writable=True)
        addrs.append(int(ffi.cast("uintptr_t", cbuf)))
        ffi.release(cbuf)
    gpas = ffi.new("uint64_t[]", [gpa for gpa, _ in regions])
    sizes = ffi.new("uint64_t[]", [v.nbytes for v in views])
    hosts = ffi.new("uint8_t *[]", [ffi.cast("uint8_t *", a) for a in addrs])
    out = ffi.new("struct vxdp_gmem **")
    err = _errbuf()
    rc = lib.vxdp_gmem_new(out, len(views), gpas, sizes, hosts, err, 256)
    if rc < 0:
        raise CoreError(_text(err))
    return GmemHandle(ffi.gc(out[0], lib.vxdp_gmem_free), views)


def _vq_error(vq: VqHandle, err: Any, rc: int) -> VringError:
    clause = ""
    if -rc in (_errno.EPROTO, _errno.EFAULT, _errno.EPIPE):
        st = ffi.new("struct vxdp_vq_state *")
        lib.vxdp_vq_get_state(vq.ptr, st)
        clause = ffi.string(st.clause).decode()
    return VringError(_text(err), -rc, clause)


def vq_new(mem: GmemHandle, size: int, desc: int, avail: int, used: int, *,
           event_idx: bool = False, indirect: bool = False, driver: bool = False,
           start_idx: int = 0, name: str = "") -> VqHandle:
    """A split queue over `mem`; the driver side initialises the rings at `start_idx`,
    the device side starts with last_avail_idx = used_idx = `start_idx`."""
    for what, v in (("desc", desc), ("avail", avail), ("used", used)):
        if not 0 <= v < 2**64:
            raise CoreError(f"{what} address {v:#x} is not a u64")
    if not 0 <= size < 2**32:
        raise CoreError(f"queue size {size} out of range")
    flags = ((VQ_F_EVENT_IDX if event_idx else 0) | (VQ_F_INDIRECT if indirect else 0)
             | (VQ_F_DRIVER if driver else 0))
    out = ffi.new("struct vxdp_vq **")
    err = _errbuf()
    rc = lib.vxdp_vq_new(out, mem.ptr, size, desc, avail, used, flags, start_idx & 0xFFFF,
                         name.encode()[:31], err, 256)
    if rc < 0:
        raise VringError(_text(err), -rc, "2.7.1" if rc == -_errno.EPROTO else
                         "2.7" if rc == -_errno.EFAULT else "")
    return VqHandle(ffi.gc(out[0], lib.vxdp_vq_free), mem, size, driver)


VQ_STATE_FIELDS = ("last_avail_idx", "used_idx", "signalled_used", "avail_idx",
                   "last_used_idx", "kicked", "notifications", "interrupts")


def vq_state(vq: VqHandle) -> dict[str, Any]:
    """The queue's counters, in-flight count and break record (GET_VRING_BASE)."""
    st = ffi.new("struct vxdp_vq_state *")
    lib.vxdp_vq_get_state(vq.ptr, st)
    state: dict[str, Any] = {f: int(getattr(st, f)) for f in VQ_STATE_FIELDS}
    state["notifications"] = bool(state["notifications"])
    state["interrupts"] = bool(state["interrupts"])
    state["in_flight"] = int(st.in_flight)
    state["broken"] = int(st.broken)
    state["clause"] = ffi.string(st.clause).decode()
    state["error"] = ffi.string(st.error).decode(errors="replace")
    return state


def vq_broken(vq: VqHandle) -> bool:
    """Whether the queue refused a hostile ring and is broken until reset (one cheap call;
    `vq_state` has the error and the clause)."""
    return bool(lib.vxdp_vq_broken(vq.ptr))


def vq_set_state(vq: VqHandle, state: dict[str, Any]) -> None:
    """Take over counters (SET_VRING_BASE, migration); only with nothing in flight."""
    st = ffi.new("struct vxdp_vq_state *")
    for f in VQ_STATE_FIELDS:
        setattr(st, f, int(state.get(f, 0)) & (0xFFFF if "idx" in f or f in (
            "signalled_used", "kicked") else 0xFF))
    st.broken = int(state.get("broken", 0))
    st.clause = str(state.get("clause", "")).encode()[:15]
    st.error = str(state.get("error", "")).encode()[:255]
    err = _errbuf()
    rc = lib.vxdp_vq_set_state(vq.ptr, st, err, 256)
    if rc < 0:
        raise VringError(_text(err), -rc)


def vq_pending(vq: VqHandle) -> int:
    err = _errbuf()
    rc = lib.vxdp_vq_pending(vq.ptr, err, 256)
    if rc < 0:
        raise _vq_error(vq, err, rc)
    return int(rc)


Seg = tuple[int, int, bool]  # (gpa, len, writable)


def vq_pop(vq: VqHandle) -> tuple[int, int, list[Seg]] | None:
    """The next validated chain as (head, ring descriptors, segments), or None."""
    chain = ffi.new("struct vxdp_vq_chain *")
    segs = ffi.new("struct vxdp_vq_seg[]", vq.size)
    err = _errbuf()
    rc = lib.vxdp_vq_pop(vq.ptr, chain, segs, vq.size, err, 256)
    if rc < 0:
        raise _vq_error(vq, err, rc)
    if rc == 0:
        return None
    return (int(chain.head), int(chain.descriptors),
            [(int(s.gpa), int(s.len), bool(s.writable)) for s in segs[0:chain.nsegs]])


def vq_push(vq: VqHandle, items: Sequence[tuple[int, int]]) -> None:
    """Mark chains used: (head, bytes written); one used.idx update for all."""
    if not items:
        return
    for head, n in items:
        if not (0 <= head < 2**32 and 0 <= n < 2**32):
            raise VringError(f"push of head {head} with {n} bytes: not u32", _errno.EINVAL)
    heads = ffi.new("uint32_t[]", [h for h, _ in items])
    lens = ffi.new("uint32_t[]", [n for _, n in items])
    err = _errbuf()
    rc = lib.vxdp_vq_push(vq.ptr, heads, lens, len(items), err, 256)
    if rc < 0:
        raise _vq_error(vq, err, rc)


def vq_should_interrupt(vq: VqHandle) -> bool:
    return bool(lib.vxdp_vq_should_interrupt(vq.ptr))


def vq_enable_notifications(vq: VqHandle) -> bool:
    err = _errbuf()
    rc = lib.vxdp_vq_enable_notifications(vq.ptr, err, 256)
    if rc < 0:
        raise _vq_error(vq, err, rc)
    return bool(rc)


def vq_disable_notifications(vq: VqHandle) -> None:
    lib.vxdp_vq_disable_notifications(vq.ptr)


def vq_add(vq: VqHandle, segs: Sequence[Seg]) -> int:
    """Driver side: place a chain of (gpa, len, writable) buffers, readable first."""
    arr = ffi.new("struct vxdp_vq_seg[]", max(1, len(segs)))
    for i, (gpa, n, w) in enumerate(segs):
        if not (0 <= gpa < 2**64 and 0 <= n < 2**32):
            raise VringError(f"buffer {i}: {gpa:#x}+{n:#x} out of range", _errno.EINVAL)
        arr[i].gpa, arr[i].len, arr[i].writable = gpa, n, int(w)
    err = _errbuf()
    rc = lib.vxdp_vq_add(vq.ptr, arr, len(segs), err, 256)
    if rc < 0:
        raise _vq_error(vq, err, rc)
    return int(rc)


def vq_publish(vq: VqHandle) -> bool:
    """Driver side: publish added chains; True when the device wants a kick."""
    return bool(lib.vxdp_vq_publish(vq.ptr))


def vq_reap(vq: VqHandle, cap: int | None = None) -> list[tuple[int, int]]:
    """Driver side: used elements (id, len) available now, at most `cap`."""
    cap = vq.size if cap is None else cap
    ids, lens = ffi.new("uint32_t[]", max(1, cap)), ffi.new("uint32_t[]", max(1, cap))
    err = _errbuf()
    rc = lib.vxdp_vq_reap(vq.ptr, ids, lens, cap, err, 256)
    if rc < 0:
        raise _vq_error(vq, err, rc)
    return list(zip(ffi.unpack(ids, rc), ffi.unpack(lens, rc), strict=True))


def vq_enable_interrupts(vq: VqHandle) -> bool:
    err = _errbuf()
    rc = lib.vxdp_vq_enable_interrupts(vq.ptr, err, 256)
    if rc < 0:
        raise _vq_error(vq, err, rc)
    return bool(rc)


def vq_disable_interrupts(vq: VqHandle) -> None:
    lib.vxdp_vq_disable_interrupts(vq.ptr)


# ---------------------------------------------------------------- datapath (datapath.c)

BURST_MAX = 256
assert _array("I").itemsize == 4, "Burst.load packs frame lengths as uint32_t"
DP_MAX_FRAME = 65550


class Burst:
    """Frames back to back in one C buffer with a length each: what one burst call moves.

    Allocated once and reused, so moving a burst costs one FFI crossing and two copies
    each way (`load`, `packed`), whatever the number of frames."""

    __slots__ = ("_buf", "_lens", "max_frames", "ptr")

    def __init__(self, max_frames: int = BURST_MAX, cap: int | None = None) -> None:
        if not 0 < max_frames <= 1 << 20:
            raise CoreError(f"a burst of {max_frames} frames")
        cap = max_frames * 2048 if cap is None else cap
        self.max_frames = max_frames
        self._buf = _nozero("uint8_t[]", max(1, cap))
        self._lens = _nozero("uint32_t[]", max_frames)
        self.ptr = ffi.new("struct vxdp_burst *")
        self.ptr.buf, self.ptr.cap, self.ptr.len, self.ptr.max = self._buf, cap, self._lens, \
            max_frames
        self.clear()

    def clear(self) -> None:
        self.ptr.count = 0
        self.ptr.used = 0

    def load(self, frames: Sequence[bytes]) -> None:
        """Pack `frames` as the burst's contents (two copies in C, whatever the count)."""
        n = len(frames)
        if isinstance(frames, PackedFrames):  # the layout already: no work per frame
            blob: Any = frames.buffer
            lens: Any = frames.lengths
        else:
            blob = b"".join(frames)
            lens = _array("I", map(len, frames))
        if n > self.max_frames or len(blob) > self.ptr.cap:
            raise CoreError(f"{n} frames / {len(blob)} bytes do not fit a burst of "
                            f"{self.max_frames} / {self.ptr.cap}")
        ffi.memmove(self._buf, blob, len(blob))
        ffi.memmove(self._lens, lens, 4 * n)
        self.ptr.count = n
        self.ptr.used = len(blob)

    @property
    def count(self) -> int:
        return int(self.ptr.count)

    def packed(self) -> PackedFrames:
        """The frames in the burst, copied out in two moves (no work per frame)."""
        n = self.ptr.count
        lens = _array("I")
        lens.frombytes(ffi.buffer(self._lens, 4 * n))
        used = int(self.ptr.used)
        return PackedFrames(ffi.buffer(self._buf, used)[:], lens, used)


SWITCH_MAX_PORTS = 256
PUMP_TURN, PUMP_NO_ROOM, PUMP_END, PUMP_EDGE = 0, 1, 2, 3  # why vxdp_switch_pump returned
TXT_DRY, TXT_TURN, TXT_EDGE, TXT_FULL = 0, 1, 2, 3  # why vxdp_switch_tx_turn returned
EV_RX_IRQ, EV_TX_IRQ, EV_RX_BROKEN, EV_TX_BROKEN = 1, 2, 4, 8  # vxdp_switch_events


class SwitchHandle:
    """A host switch, with what its calls fill in allocated once: its forwarding table
    (`switch_set_guests`), the edge's list of frames for guests without a port, the
    events list."""

    __slots__ = ("edge", "edge_frame", "edge_guest", "err", "ev_ifindex", "ev_mask",
                 "nguests", "ports", "ptr", "pump", "src", "table", "turn")

    def __init__(self, ptr: Any) -> None:
        self.ptr = ptr
        self.err = _errbuf()
        self.nguests = 0
        self.ports: tuple[Any, ...] = ()  # the table's ports, kept alive with it
        self.table = ffi.new("struct vxdp_switch_guest[]", SWITCH_MAX_PORTS)
        self.edge = ffi.new("struct vxdp_switch_edge *")
        self.edge_frame = self.edge_guest = ffi.NULL
        self.ev_ifindex = ffi.new("uint32_t[]", SWITCH_MAX_PORTS)
        self.ev_mask = ffi.new("uint32_t[]", SWITCH_MAX_PORTS)
        self.pump = ffi.new("struct vxdp_pump *")
        self.turn = ffi.new("struct vxdp_tx_turn *")
        self.src = ffi.new("struct vxdp_wire_src *")

    def _edge_for(self, frames: int) -> None:
        need = max(1, frames * self.nguests)
        if self.edge.max < need:
            self.edge_frame = ffi.new("uint32_t[]", need)
            self.edge_guest = ffi.new("uint32_t[]", need)
            self.edge.frame, self.edge.guest, self.edge.max = \
                self.edge_frame, self.edge_guest, need

    def edge_list(self) -> list[tuple[int, int]]:
        """(frame index, guest index) of what the last call left the edge."""
        return [(int(self.edge_frame[i]), int(self.edge_guest[i]))
                for i in range(self.edge.count)]


class PortHandle:
    """A host port; keeps its switch, queues and attached program alive."""

    __slots__ = ("deps", "err", "offload", "prog", "ptr")

    def __init__(self, ptr: Any, deps: tuple[Any, ...]) -> None:
        self.ptr = ptr
        self.deps = deps
        self.prog: tuple[Any, Any] | None = None
        self.offload: tuple[Any, Any] | None = None
        self.err = _errbuf()  # one per handle: a burst call allocates nothing


class GportHandle(PortHandle):
    """A guest port (driver-mode XDP)."""

    __slots__ = ("kicks",)

    def __init__(self, ptr: Any, deps: tuple[Any, ...]) -> None:
        super().__init__(ptr, deps)
        self.kicks = ffi.new("uint32_t *")


def _stats(struct_name: str, ptr: Any, getter: Any) -> dict[str, int]:
    st = ffi.new(f"struct {struct_name} *")
    getter(ptr, st)
    return {name: int(getattr(st, name)) for name, _ in ffi.typeof(f"struct {struct_name}").fields}


def _fault(getter: Any, ptr: Any) -> str:
    buf = ffi.new("char[]", 256)
    getter(ptr, buf, 256)
    return _text(buf)


def switch_new(wire_ifindex: int) -> SwitchHandle:
    """A host switch whose uplink (the wire) is `wire_ifindex`."""
    out = ffi.new("struct vxdp_switch **")
    err = _errbuf()
    rc = lib.vxdp_switch_new(out, wire_ifindex, err, 256)
    if rc < 0:
        raise CoreError(_text(err))
    return SwitchHandle(ffi.gc(out[0], lib.vxdp_switch_free))


def switch_set_guests(sw: SwitchHandle,
                      guests: Sequence[tuple[bytes, bool, bool, PortHandle | None]]) -> None:
    """The switch's forwarding table, one entry a guest in the host's order: (MAC, live:
    floods reach it, the pump waits for its receive room, its port or None when the
    edge delivers its frames)."""
    n = len(guests)
    if n > SWITCH_MAX_PORTS:
        raise CoreError(f"{n} guests: a switch has at most {SWITCH_MAX_PORTS}")
    for i, (mac, flood, wait, port) in enumerate(guests):
        if len(mac) != 6:
            raise CoreError(f"guest {i}: a MAC of {len(mac)} bytes")
        e = sw.table[i]
        ffi.memmove(e.mac, mac, 6)
        e.flood, e.wait = int(flood), int(wait)
        e.port = port.ptr if port is not None else ffi.NULL
    rc = lib.vxdp_switch_set_guests(sw.ptr, sw.table, n, sw.err, 256)
    if rc < 0:
        raise CoreError(_text(sw.err))
    sw.nguests = n
    sw.ports = tuple(g[3] for g in guests)
    sw._edge_for(BURST_MAX)


def switch_rx(sw: SwitchHandle, frames: Burst, wire: Burst) -> list[tuple[int, int]]:
    """Wire frames switched by destination MAC (flooded to live guests when no MAC
    matches), each through its guest's port; what the ports' programs send out is
    appended to `wire`.  Returns (frame index, guest index) for guests without a port."""
    sw._edge_for(frames.count)
    rc = lib.vxdp_switch_rx(sw.ptr, frames.ptr, wire.ptr, sw.edge, sw.err, 256)
    if rc < 0:
        raise CoreError(_text(sw.err))
    return sw.edge_list() if sw.edge.count else []


def switch_tx(sw: SwitchHandle, port: PortHandle, budget: int, out: Burst,
              dest: Any) -> int:
    """Up to `budget` transmit chains of `port` switched: frames for other guests with a
    port go through theirs here; `out` gets, in order, the frames for the wire (`dest`
    0) and those for guests without a port (guest index + 1).  `dest` is a uint32_t
    array of out.max_frames (`switch_dest`).  Returns chains completed."""
    rc = lib.vxdp_switch_tx(sw.ptr, port.ptr, budget, out.ptr, dest, sw.err, 256)
    if rc < 0:
        raise CoreError(_text(sw.err))
    return int(rc)


def switch_tx_turn(sw: SwitchHandle, port: PortHandle, out: Burst, dest: Any, *,
                   lap_max: int, call_max: int, turn_ns: int, spin_ns: int
                   ) -> tuple[int, int, int]:
    """A transmit kick's laps of `switch_tx` in one call (see csrc/switch.c): laps of up
    to `lap_max` chains (calls of up to `call_max`) for `turn_ns`, polling a dry ring
    `spin_ns`; `out` and `dest` as `switch_tx` fills them, over all the laps.  Returns
    (laps, chains completed, why: TXT_*); the events are left for `switch_events`."""
    t = sw.turn
    t.lap_max, t.call_max, t.turn_ns, t.spin_ns = lap_max, call_max, turn_ns, spin_ns
    rc = lib.vxdp_switch_tx_turn(sw.ptr, port.ptr, t, out.ptr, dest, sw.err, 256)
    if rc < 0:
        raise CoreError(_text(sw.err))
    return int(rc), int(t.chains), int(t.why)


def switch_dest(frames: int) -> Any:
    """A destination array for `switch_tx`."""
    return ffi.new("uint32_t[]", frames)


def switch_dest_wire(dest: Any, n: int) -> bool:
    """Every one of the first `n` destinations `switch_tx` wrote is the wire (0)."""
    raw = ffi.buffer(dest, 4 * n)[:]
    return bool(raw.count(0) == len(raw))


def switch_room(sw: SwitchHandle, limit: int) -> int:
    """Frames (up to `limit`) every guest the table waits for has receive buffers for."""
    return int(lib.vxdp_switch_room(sw.ptr, limit))


class WireSource:
    """Frames the pump takes without asking the edge: packed frames (kept alive here)."""

    __slots__ = ("_buf", "_lens", "frames", "ptr")

    def __init__(self, frames: PackedFrames) -> None:
        self.frames = frames
        self.ptr = ffi.new("struct vxdp_wire_src *")
        self._buf = ffi.from_buffer("uint8_t[]", frames.buffer) if frames.nbytes \
            else ffi.new("uint8_t[]", 1)
        lens = frames.lengths
        self._lens = ffi.from_buffer("uint32_t[]", lens) if len(lens) \
            else ffi.new("uint32_t[]", 1)
        self.ptr.buf, self.ptr.len, self.ptr.count = self._buf, self._lens, len(frames)

    def start(self, at: int, offset: int, cycle: bool, limit: int) -> None:
        p = self.ptr
        p.at, p.offset, p.cycle, p.limit = at, offset, int(cycle), limit


def switch_pump(sw: SwitchHandle, src: WireSource, wire: Burst, *, round_max: int,
                turn_ns: int, spin_ns: int) -> tuple[int, int]:
    """The wire's rounds in C (see csrc/switch.c): (rounds, why: PUMP_*).  What was
    taken is in src.ptr (taken, taken_bytes, at, offset); frames for guests without a
    port in `sw.edge_list()` (indices into the source)."""
    p = sw.pump
    p.round_max, p.turn_ns, p.spin_ns = round_max, turn_ns, spin_ns
    sw._edge_for(min(round_max, BURST_MAX))
    rc = lib.vxdp_switch_pump(sw.ptr, src.ptr, p, wire.ptr, sw.edge, sw.err, 256)
    if rc < 0:
        raise CoreError(_text(sw.err))
    return int(rc), int(p.why)


def switch_edge(sw: SwitchHandle) -> list[tuple[int, int]]:
    """(frame index, guest index) of what the last switch call left the edge."""
    return sw.edge_list() if sw.edge.count else []


def switch_events(sw: SwitchHandle) -> list[tuple[int, int]]:
    """Every port's events since the last call: (ifindex, EV_* bits), interrupts due and
    rings newly broken."""
    n = lib.vxdp_switch_events(sw.ptr, sw.ev_ifindex, sw.ev_mask, SWITCH_MAX_PORTS)
    return [(int(sw.ev_ifindex[i]), int(sw.ev_mask[i])) for i in range(n)]


def port_new(sw: SwitchHandle, ifindex: int, rx: VqHandle | None, tx: VqHandle | None,
             features: int, mtu: int = 0) -> PortHandle:
    """The device side of one guest: its rx/tx queues (device side) and negotiated features."""
    out = ffi.new("struct vxdp_port **")
    err = _errbuf()
    rc = lib.vxdp_port_new(out, sw.ptr, ifindex, rx.ptr if rx else ffi.NULL,
                           tx.ptr if tx else ffi.NULL, features & (2**64 - 1), mtu, err, 256)
    if rc < 0:
        raise CoreError(_text(err))
    return PortHandle(ffi.gc(out[0], lib.vxdp_port_free), (sw, rx, tx))


def port_attach(port: PortHandle, prog: ProgHandle | None, env: EnvHandle | None) -> None:
    """Attach an XDP program (loaded MODE_XDP) with its environment; None detaches."""
    err = _errbuf()
    rc = lib.vxdp_port_attach(port.ptr, prog if prog is not None else ffi.NULL,
                              env if env is not None else ffi.NULL, err, 256)
    if rc < 0:
        raise CoreError(_text(err))
    port.prog = None if prog is None else (prog, env)


def port_attach_offload(port: PortHandle, prog: ProgHandle | None,
                        env: EnvHandle | None) -> None:
    """Attach the program the guest offloaded (loaded MODE_XDP), run on every frame into
    the guest after the host-attached one; None detaches."""
    err = _errbuf()
    rc = lib.vxdp_port_attach_offload(port.ptr, prog if prog is not None else ffi.NULL,
                                      env if env is not None else ffi.NULL, err, 256)
    if rc < 0:
        raise CoreError(_text(err))
    port.offload = None if prog is None else (prog, env)


def port_rx_burst(port: PortHandle, frames: Burst, wire: Burst) -> int:
    """Wire frames into the port (XDP, then guest / wire / another port); appends to wire."""
    rc = lib.vxdp_port_rx_burst(port.ptr, frames.ptr, wire.ptr, port.err, 256)
    if rc < 0:
        raise CoreError(_text(port.err))
    return int(rc)


def port_set_carrier(port: PortHandle, up: bool) -> None:
    """The guest's link: while down, frames redirected to the port are dropped."""
    lib.vxdp_port_set_carrier(port.ptr, 1 if up else 0)


def port_redirect_in(port: PortHandle, frames: Burst, wire: Burst) -> int:
    """Frames redirected here from a port outside the core: the offloaded program (not
    the host-attached one), then guest / wire; appends to wire."""
    rc = lib.vxdp_port_redirect_in(port.ptr, frames.ptr, wire.ptr, port.err, 256)
    if rc < 0:
        raise CoreError(_text(port.err))
    return int(rc)


def port_tx_burst(port: PortHandle, budget: int, wire: Burst) -> int:
    """Up to `budget` guest tx chains onto the wire burst; returns chains completed."""
    rc = lib.vxdp_port_tx_burst(port.ptr, budget, wire.ptr, port.err, 256)
    if rc < 0:
        raise CoreError(_text(port.err))
    return int(rc)


def port_irq(port: PortHandle) -> int:
    """Interrupts due for what was used since the last call: bit 0 rx, bit 1 tx."""
    return int(lib.vxdp_port_irq(port.ptr))


def port_rx_room(port: PortHandle) -> int | None:
    """Receive buffers the driver has posted and the port not taken (a fresh read of the
    avail idx); None without a receive queue, or with a broken one."""
    rc = int(lib.vxdp_port_rx_room(port.ptr))
    return None if rc < 0 else rc


def port_release(port: PortHandle) -> int:
    """Return rx chains held for a frame unused (before a hand-over); how many."""
    return int(lib.vxdp_port_release(port.ptr))


def port_stats(port: PortHandle) -> dict[str, int]:
    return _stats("vxdp_port_stats", port.ptr, lib.vxdp_port_get_stats)


def port_last_fault(port: PortHandle) -> str:
    return _fault(lib.vxdp_port_last_fault, port.ptr)


def port_offload_fault(port: PortHandle) -> str:
    """Why the core stopped the offloaded program's last faulting run."""
    return _fault(lib.vxdp_port_offload_fault, port.ptr)


def gport_new(rx: VqHandle, tx: VqHandle, features: int, rx_pool: int, rx_bufs: int,
              rx_buf_size: int, tx_pool: int, tx_bufs: int, tx_buf_size: int) -> GportHandle:
    """A guest port over driver-side queues and two buffer pools in guest memory."""
    out = ffi.new("struct vxdp_gport **")
    err = _errbuf()
    rc = lib.vxdp_gport_new(out, rx.ptr, tx.ptr, features & (2**64 - 1), rx_pool, rx_bufs,
                            rx_buf_size, tx_pool, tx_bufs, tx_buf_size, err, 256)
    if rc < 0:
        raise CoreError(_text(err))
    return GportHandle(ffi.gc(out[0], lib.vxdp_gport_free), (rx, tx))


def gport_attach(gp: GportHandle, prog: ProgHandle | None, env: EnvHandle | None) -> None:
    err = _errbuf()
    rc = lib.vxdp_gport_attach(gp.ptr, prog if prog is not None else ffi.NULL,
                               env if env is not None else ffi.NULL, err, 256)
    if rc < 0:
        raise CoreError(_text(err))
    gp.prog = None if prog is None else (prog, env)


def gport_refill(gp: GportHandle) -> tuple[int, int]:
    """Post free rx buffers: (buffers posted, kicks: bit 0 rx)."""
    kicks = ffi.new("uint32_t *")
    n = lib.vxdp_gport_refill(gp.ptr, kicks)
    return int(n), int(kicks[0])


def gport_rx_burst(gp: GportHandle, budget: int, passed: Burst) -> tuple[int, int]:
    """Reap up to `budget` frames, run the guest's program, refill: (frames, kicks)."""
    kicks = gp.kicks
    rc = lib.vxdp_gport_rx_burst(gp.ptr, budget, passed.ptr, kicks, gp.err, 256)
    if rc < 0:
        raise CoreError(_text(gp.err))
    return int(rc), int(kicks[0])


def gport_tx_burst(gp: GportHandle, frames: Burst) -> tuple[int, int]:
    """Post frames on the guest's tx ring: (frames posted, kicks: bit 1 tx)."""
    kicks = gp.kicks
    rc = lib.vxdp_gport_tx_burst(gp.ptr, frames.ptr, kicks, gp.err, 256)
    if rc < 0:
        raise CoreError(_text(gp.err))
    return int(rc), int(kicks[0])


def gport_stats(gp: GportHandle) -> dict[str, int]:
    return _stats("vxdp_gport_stats", gp.ptr, lib.vxdp_gport_get_stats)


def gport_last_fault(gp: GportHandle) -> str:
    return _fault(lib.vxdp_gport_last_fault, gp.ptr)


def gport_interrupts(gp: GportHandle, queue: int, enable: bool) -> bool:
    """Used-buffer notifications of queue 0 (rx) or 1 (tx) off or on; on enabling, True
    when used buffers arrived meanwhile (poll again before sleeping)."""
    rc = lib.vxdp_gport_interrupts(gp.ptr, queue, int(enable), gp.err, 256)
    if rc < 0:
        raise CoreError(_text(gp.err))
    return bool(rc > 0)


def gport_inflight(gp: GportHandle, queue: int, size: int) -> list[tuple[int, int]]:
    """The chains in flight on queue 0 (rx) or 1 (tx): (head, pool buffer gpa) each."""
    heads, gpa = ffi.new("uint32_t[]", size), ffi.new("uint64_t[]", size)
    rc = lib.vxdp_gport_inflight(gp.ptr, queue, heads, gpa, size, gp.err, 256)
    if rc < 0:
        raise CoreError(_text(gp.err))
    return [(int(heads[i]), int(gpa[i])) for i in range(rc)]


# ---------------------------------------------------------------- compiled programs (jit_glue.c)

def jit_abi() -> int:
    """VXDP_JIT_ABI of the core: compiled programs must have been built against it."""
    return int(lib.vxdp_jit_abi())


def prog_set_jit(prog: ProgHandle, info_addr: int) -> None:
    """Run `prog` through the compiled code whose `vxdp_jit_info` is at `info_addr` (0: back
    to the interpreter).  The caller keeps that code loaded for as long as `prog` lives."""
    if not 0 <= info_addr < 2**64:
        raise ValueError(f"address {info_addr:#x} out of range")
    err = _errbuf()
    rc = lib.vxdp_prog_set_jit(prog, info_addr, err, 256)
    if rc < 0:
        raise InvalidProgram(_text(err))


def prog_has_jit(prog: ProgHandle) -> bool:
    return bool(lib.vxdp_prog_has_jit(prog))


# ------------------------------------------------ a front-end's memory and fds (guard.c)

def guard_install() -> None:
    """Take SIGBUS for guarded guest memory (idempotent; again after someone else took it)."""
    err = _errbuf()
    if lib.vxdp_guard_install(err, 256) < 0:
        raise CoreError(_text(err))


def guard_add(address: int, length: int, notify_fd: int) -> int:
    """Guard `length` bytes mapped at `address`: a SIGBUS there maps zero pages over the
    range and writes 1 to eventfd `notify_fd`.  Returns the slot to query and remove."""
    if not (0 < address < 2**64 and 0 < length < 2**64):
        raise ValueError(f"range {address:#x}+{length:#x} out of range")
    err = _errbuf()
    rc = lib.vxdp_guard_add(ffi.cast("void *", address), length, notify_fd, err, 256)
    if rc < 0:
        raise CoreError(_text(err))
    return int(rc)


def guard_remove(slot: int) -> None:
    """Stop guarding a slot's range (before it is unmapped)."""
    lib.vxdp_guard_remove(slot)


def guard_lost(slot: int) -> int | None:
    """The address whose SIGBUS cost the slot its pages, None while they are intact."""
    fault = ffi.new("uint64_t *")
    rc = lib.vxdp_guard_lost(slot, fault)
    return int(fault[0]) if rc > 0 else None


def fd_signal(fd: int) -> bool:
    """Write 1 to a front-end's eventfd (8 bytes to a pipe) without waiting: True when
    written, False when it was full (the notification is coalesced into the unread one).
    OSError (its errno) when the fd refuses: ETIMEDOUT for a write that blocked
    (O_NONBLOCK taken away) until the watchdog interrupted it."""
    err = _errbuf()
    rc = lib.vxdp_fd_signal(fd, err, 256)
    if rc < 0:
        raise OSError(-rc, _text(err))
    return bool(rc)


def fd_drain(fd: int) -> bool:
    """Read what a front-end's eventfd (or pipe) holds without waiting: True when there was
    something (a kick), False when it was empty.  OSError as for `fd_signal` (EPIPE: a
    pipe whose writer is gone)."""
    err = _errbuf()
    rc = lib.vxdp_fd_drain(fd, err, 256)
    if rc < 0:
        raise OSError(-rc, _text(err))
    return bool(rc)


# ---------------------------------------------------------------- the placement probe

def xcpu_rtt_ns(cpu_a: int, cpu_b: int, rounds: int = 20000, timeout: float = 0.5) -> float:
    """Mean nanoseconds of one cache line's round trip between CPUs `cpu_a` and `cpu_b`
    (two threads pinned there, csrc/xcpu.c), over `rounds` trips.  CoreError when a
    thread cannot be pinned or gets no answer within `timeout` seconds."""
    err = _errbuf()
    out = ffi.new("double *")
    rc = lib.vxdp_xcpu_rtt(cpu_a, cpu_b, rounds, int(timeout * 1e9), out, err, 256)
    if rc < 0:
        raise CoreError(_text(err))
    return float(out[0])
