"""Maps that live in the C packet core: what the interpreter and the host device run on.

`CoreMap(spec)` creates the map in the core with the kernel's semantics (see
`vxdp.bpf.maps`), writes `spec.initial` (global data: `.data`, `.bss`, `.rodata`) and
freezes `spec.frozen` maps, after which syscall-side updates and deletes fail with EPERM as
they do in the kernel; programs still write unless the map has BPF_F_RDONLY_PROG.

Per-CPU maps hold one value per possible CPU; on the C side each is rounded up to 8 bytes
(the kernel's layout of a per-CPU value buffer), and this class pads and trims for callers.
"""

from __future__ import annotations

import errno
import struct

from vxdp import native
from vxdp.bpf.maps import RECORD_MAP_TYPES, Map, MapValue, possible_cpus
from vxdp.bpf.program import BPF_ANY, MapSpec, MapType
from vxdp.errors import MapError

ENOTSUPP = 524  # the kernel's internal ENOTSUPP, what bpf() returns for ringbuf lookups
PERF_RING_SIZE = 256 << 10  # VXDP_PERF_RING_SIZE: the longest perf_event_output record


def _round8(n: int) -> int:
    return (n + 7) & ~7


class CoreMap(Map):
    """One map of the packet core, created from a MapSpec."""

    def __init__(self, spec: MapSpec) -> None:
        self.spec = spec
        self._ncpus = possible_cpus() if spec.percpu else 1
        try:
            # the core sizes per-CPU values and the LRU's per-CPU lists by possible CPUs
            self.handle: native.MapHandle = native.map_create(
                int(spec.type), spec.key_size, spec.value_size, spec.max_entries, spec.flags,
                possible_cpus())
        except MapError as exc:
            raise MapError(f"map {spec.name!r}: create: {exc}", exc.errno) from None
        if spec.initial is not None:
            if len(spec.initial) > spec.value_size:
                raise MapError(f"map {spec.name!r}: initial value of {len(spec.initial)} bytes "
                               f"exceeds value_size {spec.value_size}", errno.EINVAL)
            self.update(struct.pack("<I", 0), spec.initial.ljust(spec.value_size, b"\0"))
        if spec.frozen:
            self.freeze()

    @property
    def ncpus(self) -> int:
        return self._ncpus

    @property
    def _stride(self) -> int:
        return _round8(self.spec.value_size) if self.spec.percpu else self.spec.value_size

    def _ringbuf_refuses(self, op: str) -> None:
        if self.spec.type in RECORD_MAP_TYPES:
            raise MapError(f"map {self.name!r}: {op}: {self.spec.type.name.lower()} maps "
                           f"have no elements", ENOTSUPP)

    def _wrap(self, op: str, exc: MapError) -> MapError:
        return MapError(f"map {self.name!r}: {op}: {exc}", exc.errno)

    def lookup(self, key: bytes) -> MapValue | None:
        self._ringbuf_refuses("lookup")
        self.check_key(key)
        try:
            raw = native.map_lookup(self.handle, key, self.spec.key_size, self._stride,
                                    self._ncpus)
        except MapError as exc:
            raise self._wrap("lookup", exc) from None
        if raw is None or not self.spec.percpu:
            return raw
        s, vs = self._stride, self.spec.value_size
        return [raw[i * s:i * s + vs] for i in range(self._ncpus)]

    def update(self, key: bytes, value: MapValue, flags: int = BPF_ANY) -> None:
        self._ringbuf_refuses("update")
        self.check_key(key)
        self.check_value(value)
        if isinstance(value, list):
            raw = b"".join(v.ljust(self._stride, b"\0") for v in value)
        else:
            raw = value
        try:
            native.map_update(self.handle, key, self.spec.key_size, raw, self._stride,
                              self._ncpus, flags)
        except MapError as exc:
            raise self._wrap("update", exc) from None

    def delete(self, key: bytes) -> None:
        self._ringbuf_refuses("delete")
        self.check_key(key)
        try:
            native.map_delete(self.handle, key, self.spec.key_size)
        except MapError as exc:
            raise self._wrap("delete", exc) from None

    def next_key(self, key: bytes | None) -> bytes | None:
        self._ringbuf_refuses("get_next_key")
        if key is not None:
            self.check_key(key)
        try:
            return native.map_next_key(self.handle, key, self.spec.key_size)
        except MapError as exc:
            raise self._wrap("get_next_key", exc) from None

    @property
    def id(self) -> int:
        """The map's id in the core: what a map-in-map slot holds (update and lookup)."""
        return native.map_id(self.handle)

    def freeze(self) -> None:
        """BPF_MAP_FREEZE: syscall-side writes fail with EPERM from now on."""
        native.map_freeze(self.handle)

    def ringbuf_drain(self) -> list[bytes]:
        """Consume every committed record of a RINGBUF map, oldest first."""
        if self.spec.type != MapType.RINGBUF:
            raise MapError(f"map {self.name!r} is not a ringbuf", errno.EINVAL)
        return self._drain(self.spec.max_entries)

    def _drain(self, max_record: int) -> list[bytes]:
        out = []
        while (rec := native.ringbuf_read(self.handle, max_record)) is not None:
            out.append(rec)
        return out

    def records(self) -> list[tuple[int | None, bytes]] | None:
        if self.spec.type == MapType.RINGBUF:
            return [(None, rec) for rec in self.ringbuf_drain()]
        if self.spec.type == MapType.PERF_EVENT_ARRAY:
            # each record is its slot index (u32), then what the program wrote
            return [(struct.unpack_from("<I", rec)[0], rec[4:])
                    for rec in self._drain(PERF_RING_SIZE)]
        return None
