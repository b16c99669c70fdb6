"""The kernel oracle: real maps, the real verifier and BPF_PROG_TEST_RUN through bpf(2).

    if (why := kernel_unavailable()) is None:
        with KernelEngine(program) as eng:          # maps created, program loaded
            eng.run_xdp([pkt])                      # one BPF_PROG_TEST_RUN per packet
    ok, log = verify_in_kernel(program)             # load attempt with the verifier log
    retval, out, ns = test_run(program, pkt, repeat=1000)

Runs pin the process to CPU 0 (restoring the affinity afterwards), so that
bpf_get_smp_processor_id() and per-CPU map slots are deterministic, as in the C core.
Per-CPU values are exchanged with the kernel as possible-CPU slots of round_up(value_size,
8) bytes (bpf_map_value_size() in kernel/bpf/syscall.c).  Every fd this module opens is
closed by close(), the context manager, or a finaliser when the object is collected.
"""

from __future__ import annotations

import errno
import functools
import os
import platform
import struct
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from vxdp.bpf import syscall as sc
from vxdp.bpf.engine import Engine, XdpResult
from vxdp.bpf.maps import Map, MapValue, fill_slots, possible_cpus
from vxdp.bpf.program import (
    BPF_ANY,
    MAP_IN_MAP_TYPES,
    MapSpec,
    MapType,
    Program,
    ProgType,
    rebind_map_refs,
)
from vxdp.errors import InvalidProgram, KernelUnavailable, MapError, UsageError

LOG_SIZE = 1 << 20
MAX_LOG_SIZE = 1 << 28
ETH_HLEN = 14


def _strerror(code: int) -> str:
    return os.strerror(code).lower()


@functools.cache
def kernel_unavailable() -> str | None:
    """Why the real bpf() syscall cannot be used here, or None when it can.

    Probes what the kernel engine needs: a map, an XDP program load and a test run."""
    if sc.syscall_number() is None:
        return f"no bpf() syscall on {platform.system()} {platform.machine()}"
    try:
        fd = sc.map_create(MapType.ARRAY, 4, 4, 1, name="vxdp_probe")
        os.close(fd)
    except OSError as exc:
        return _why(exc, "BPF_MAP_CREATE")
    prog = bytes.fromhex("b700000002000000" "9500000000000000")  # r0 = XDP_PASS; exit
    res = sc.prog_load(ProgType.XDP, prog, "GPL", name="vxdp_probe")
    if res.fd is None:
        return _why(OSError(res.errno, os.strerror(res.errno)), "BPF_PROG_LOAD of an xdp program")
    try:
        sc.prog_test_run(res.fd, bytes(ETH_HLEN))
    except OSError as exc:
        return _why(exc, "BPF_PROG_TEST_RUN")
    finally:
        os.close(res.fd)
    return None


def _why(exc: OSError, what: str) -> str:
    code = exc.errno or 0
    name = errno.errorcode.get(code, str(code))
    if code in (errno.EPERM, errno.EACCES):
        return (f"bpf() {what} not permitted ({name}): needs root or CAP_BPF with "
                f"CAP_NET_ADMIN, and no seccomp filter blocking bpf()")
    if code == errno.ENOSYS:
        return f"bpf() not implemented by this kernel ({name})"
    return f"bpf() {what} failed: {_strerror(code)} ({name})"


def require_kernel() -> None:
    reason = kernel_unavailable()
    if reason is not None:
        raise KernelUnavailable(reason)


def _round8(n: int) -> int:
    return (n + 7) & ~7


class KernelMap(Map):
    """A real kernel map behind an fd, created from a MapSpec."""

    fd: int

    def __init__(self, spec: MapSpec) -> None:
        require_kernel()
        self.spec = spec
        template = KernelMap(spec.inner) if spec.inner is not None else None
        try:
            self.fd = sc.map_create(spec.type, spec.key_size, spec.value_size, spec.max_entries,
                                    spec.flags, spec.name,
                                    template.fd if template is not None else 0)
        except OSError as exc:
            raise MapError(f"map {spec.name!r}: create: {_strerror(exc.errno or 0)}",
                           exc.errno or 0) from None
        finally:  # the kernel keeps what it needs of a map-in-map's template
            if template is not None:
                template.close()
        self._finalizer = weakref.finalize(self, os.close, self.fd)
        try:
            if spec.initial is not None:
                self.update(struct.pack("<I", 0), spec.initial)
            if spec.frozen:
                self.freeze()
        except MapError:
            self.close()
            raise

    def _fail(self, op: str, exc: OSError) -> MapError:
        code = exc.errno or 0
        return MapError(f"map {self.name!r}: {op}: {_strerror(code)}", code)

    @property
    def _value_len(self) -> int:
        if self.spec.percpu:
            return _round8(self.spec.value_size) * self.ncpus
        return self.spec.value_size

    def lookup(self, key: bytes) -> MapValue | None:
        self.check_key(key)
        try:
            raw = sc.map_lookup(self.fd, key, self._value_len)
        except OSError as exc:
            raise self._fail("lookup", exc) from None
        if raw is None or not self.spec.percpu:
            return raw
        stride = _round8(self.spec.value_size)
        return [raw[i * stride: i * stride + self.spec.value_size] for i in range(self.ncpus)]

    def update(self, key: bytes, value: MapValue, flags: int = BPF_ANY) -> None:
        self.check_key(key)
        self.check_value(value)
        if isinstance(value, list):
            stride = _round8(self.spec.value_size)
            raw = b"".join(v.ljust(stride, b"\0") for v in value)
        else:
            raw = value
        inner_fd = None
        try:
            if self.spec.type in MAP_IN_MAP_TYPES:  # a map's id in, the kernel takes an fd
                inner_fd = sc.map_fd_by_id(struct.unpack("<I", raw)[0])
                raw = struct.pack("<I", inner_fd)
            sc.map_update(self.fd, key, raw, flags)
        except OSError as exc:
            raise self._fail("update", exc) from None
        finally:
            if inner_fd is not None:
                os.close(inner_fd)

    def delete(self, key: bytes) -> None:
        self.check_key(key)
        try:
            sc.map_delete(self.fd, key)
        except OSError as exc:
            raise self._fail("delete", exc) from None

    def next_key(self, key: bytes | None) -> bytes | None:
        if key is not None:
            self.check_key(key)
        try:
            return sc.map_next_key(self.fd, key, self.spec.key_size)
        except OSError as exc:
            raise self._fail("get_next_key", exc) from None

    @property
    def id(self) -> int:
        """The kernel's id of the map (what a map-in-map slot holds)."""
        try:
            return sc.map_info_id(self.fd)
        except OSError as exc:
            raise self._fail("get_info", exc) from None

    def freeze(self) -> None:
        try:
            sc.map_freeze(self.fd)
        except OSError as exc:
            raise self._fail("freeze", exc) from None

    def close(self) -> None:
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive


def rebind(program: Program, fds: Sequence[int]) -> bytes:
    """The program's instructions with each map index replaced by the map's fd."""
    def fd(pc: int, index: int) -> int:
        if not 0 <= index < len(fds):
            raise InvalidProgram(f"program {program.name!r}: insn {pc} references map "
                                 f"index {index}; the program has {len(fds)} maps")
        return fds[index]
    return rebind_map_refs(program.insns, fd)


def _load(program: Program, fds: Sequence[int], log_level: int) -> sc.LoadResult:
    """BPF_PROG_LOAD as libbpf does it: with the object's BTF and func_info when the
    program has them (that is what makes a global function global to the verifier)."""
    insns = rebind(program, fds)
    flags = sc.BPF_F_XDP_HAS_FRAGS if program.frags else 0
    attach = sc.BPF_XDP if program.prog_type == ProgType.XDP else 0
    size = LOG_SIZE if log_level else 0
    btf_fd = 0
    if program.btf is not None and program.func_info:
        try:
            btf_fd = sc.btf_load(program.btf)
        except OSError as exc:
            return sc.LoadResult(None, f"btf: {exc.strerror}", exc.errno or errno.EINVAL)
    try:
        while True:
            res = sc.prog_load(program.prog_type, insns, program.license, log_level=log_level,
                               log_size=size, prog_flags=flags, name=program.name,
                               expected_attach_type=attach, btf_fd=btf_fd,
                               func_info=program.func_info)
            if res.errno == errno.ENOSPC and log_level and size < MAX_LOG_SIZE:
                size *= 8  # the verifier log did not fit
                continue
            return res
    finally:
        if btf_fd:
            os.close(btf_fd)


def load_program(program: Program, fds: Sequence[int]) -> int:
    """Load over the given map fds; a refusal raises InvalidProgram with the verifier log."""
    res = _load(program, fds, 0)
    if res.fd is not None:
        return res.fd
    detail = _load(program, fds, 1)  # again, for the log (as libbpf does)
    if detail.fd is not None:  # accepted the second time: keep it
        return detail.fd
    log = detail.log.strip()
    raise InvalidProgram(f"program {program.name!r} (section {program.section}): kernel "
                         f"verifier refused it: {_strerror(detail.errno)}"
                         + (f"\n{log}" if log else ""))


@contextmanager
def pinned_cpu(cpu: int = 0) -> Iterator[None]:
    """Run the block on one CPU (CPU 0 when allowed), restoring the affinity after."""
    before = os.sched_getaffinity(0)
    target = cpu if cpu in before else min(before)
    os.sched_setaffinity(0, {target})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


class KernelEngine(Engine):
    """The kernel as an engine: real maps, the verifier, one test run per packet."""

    name = "kernel"

    def __init__(self, program: Program, maps: Sequence[Map] | None = None) -> None:
        require_kernel()
        if maps is not None and not all(isinstance(m, KernelMap) for m in maps):
            raise UsageError("the kernel engine shares only kernel maps")
        super().__init__(program, maps)
        self._owned: list[KernelMap] = []
        self._progs: list[weakref.finalize[[int], KernelEngine]] = []
        try:
            if maps is None:
                for spec in program.maps:
                    m = KernelMap(spec)
                    self._owned.append(m)
                    self.maps.append(m)
                fill_slots(program.maps, self._owned)
            self.fd = self._load(program)
        except BaseException:
            self.close()
            raise

    @property
    def map_fds(self) -> list[int]:
        return [m.fd for m in self.maps if isinstance(m, KernelMap)]

    def _load(self, program: Program) -> int:
        fd = load_program(program, self.map_fds)
        self._progs.append(weakref.finalize(self, os.close, fd))
        return fd

    def info(self) -> sc.ProgInfo:
        """The loaded program as the kernel reports it (id, tag, xlated insns, map ids)."""
        try:
            return sc.prog_info(self.fd)
        except OSError as exc:
            raise KernelUnavailable(f"bpf_obj_get_info_by_fd: {_strerror(exc.errno or 0)}") \
                from None

    def load_tail_target(self, program: Program) -> int:
        return self._load(program)

    def run_xdp(self, packets: Sequence[bytes], *, ingress_ifindex: int = 1,
                rx_queue_index: int = 0) -> list[XdpResult]:
        """One BPF_PROG_TEST_RUN per packet.  The kernel reports no redirect target, so
        `XdpResult.redirect` stays None; ifindex 1 is the loopback device."""
        if self.program.prog_type != ProgType.XDP:
            raise UsageError(f"program {self.program.name!r} is {self.program.prog_type.name}, "
                             f"not xdp")
        results = []
        with pinned_cpu(0):
            for i, pkt in enumerate(packets):
                # struct xdp_md in: data 0, data_end = len, no metadata, no egress
                ctx = struct.pack("<6I", 0, len(pkt), 0, ingress_ifindex, rx_queue_index, 0)
                run = _test_run(self.fd, pkt, 1, ctx, f"packet {i}")
                results.append(XdpResult(run.retval, run.data))
        return results

    def close(self) -> None:
        for fin in self._progs:
            fin()
        for m in self._owned:
            m.close()


def _test_run(fd: int, data: bytes, repeat: int, ctx: bytes | None, what: str) -> sc.TestRun:
    try:
        return sc.prog_test_run(fd, data, repeat=repeat, ctx=ctx)
    except OSError as exc:
        hint = ""
        if exc.errno == errno.EINVAL and len(data) < ETH_HLEN:
            hint = f" (xdp test runs need at least {ETH_HLEN} bytes)"
        elif exc.errno in (errno.EINVAL, errno.ENODEV) and ctx is not None:
            ifindex, queue = struct.unpack_from("<II", ctx, 12)
            hint = (f" (ingress_ifindex {ifindex} must name a device of this network "
                    f"namespace and rx_queue_index {queue} one of its rx queues)")
        raise UsageError(f"{what}: bpf_prog_test_run: {_strerror(exc.errno or 0)}{hint}") \
            from None


def verify_in_kernel(program: Program, log_level: int = 1) -> tuple[bool, str]:
    """Load the program (over fresh maps) with the verifier log; nothing is run."""
    require_kernel()
    maps = [KernelMap(spec) for spec in program.maps]
    try:
        fill_slots(program.maps, maps)
        res = _load(program, [m.fd for m in maps], log_level)
        if res.fd is not None:
            os.close(res.fd)
            return True, res.log
        log = res.log or f"bpf_prog_load: {_strerror(res.errno)}"
        return False, log
    finally:
        for m in maps:
            m.close()


def test_run(target: Program | KernelEngine, data: bytes,
             repeat: int = 1) -> tuple[int, bytes, int]:
    """(retval, data_out, ns per run) of `repeat` runs over one packet, pinned to CPU 0."""
    engine = target if isinstance(target, KernelEngine) else KernelEngine(target)
    try:
        with pinned_cpu(0):
            run = _test_run(engine.fd, data, max(repeat, 1), None, "test run")
        return run.retval, run.data, run.duration_ns
    finally:
        if engine is not target:
            engine.close()


test_run.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported

__all__ = ["KernelEngine", "KernelMap", "kernel_unavailable", "load_program", "pinned_cpu",
           "possible_cpus", "rebind", "require_kernel", "test_run", "verify_in_kernel"]
