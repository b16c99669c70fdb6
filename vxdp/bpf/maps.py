"""The map interface every engine's maps share (bpftool's view of a map).

`Map` is what users, the CLI, map JSON and the offload protocol see.  Each engine provides
its own implementation: `vxdp.bpf.coremaps.CoreMap` lives in the C core (the interpreter and
the host device run programs against it), `vxdp.bpf.kernel.KernelMap` is a real kernel map
behind an fd.  Semantics are the kernel's, errno included:

* update: BPF_ANY / BPF_NOEXIST (EEXIST when present) / BPF_EXIST (ENOENT when absent);
  E2BIG when a hash map is full; arrays: E2BIG for an index >= max_entries, EEXIST for
  NOEXIST (array elements always exist).
* delete: EINVAL on arrays, ENOENT when absent.
* next_key(None) or a key that is not present: the first key; after the last: None.
* per-CPU maps take and return a list with one value per possible CPU.
"""

from __future__ import annotations

import errno
import functools
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path

from vxdp.bpf.program import BPF_ANY, MapSpec, MapType
from vxdp.errors import MapError

MapValue = bytes | list[bytes]
# maps of records rather than elements: no keys to walk, records to read
RECORD_MAP_TYPES = frozenset({MapType.RINGBUF, MapType.PERF_EVENT_ARRAY})


def fill_slots(specs: Sequence[MapSpec], maps: Sequence[Map]) -> None:
    """Put the maps a map-in-map's definition names into its slots, as libbpf's
    init_slots does at load (`MapSpec.slots`: slot index, index of the map put there)."""
    for spec, m in zip(specs, maps, strict=True):
        for slot, inner in spec.slots:
            m.update(struct.pack("<I", slot), struct.pack("<I", maps[inner].id))


@functools.cache
def possible_cpus() -> int:
    """Number of possible CPUs, as the kernel sizes per-CPU map values (num_possible_cpus)."""
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    except OSError:
        import os
        return os.cpu_count() or 1
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += (int(hi) if hi else int(lo)) - int(lo) + 1
    return count


class Map(ABC):
    """One BPF map; see the module docstring for the semantics every implementation keeps."""

    spec: MapSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ncpus(self) -> int:
        """Values per key: possible CPUs for per-CPU maps, else 1."""
        return possible_cpus() if self.spec.percpu else 1

    @abstractmethod
    def lookup(self, key: bytes) -> MapValue | None: ...

    @abstractmethod
    def update(self, key: bytes, value: MapValue, flags: int = BPF_ANY) -> None: ...

    @abstractmethod
    def delete(self, key: bytes) -> None: ...

    @abstractmethod
    def next_key(self, key: bytes | None) -> bytes | None: ...

    def keys(self) -> Iterator[bytes]:
        key = self.next_key(None)
        seen = 0
        while key is not None:
            yield key
            seen += 1
            if seen > self.spec.max_entries:  # a map mutating under us; never loop forever
                raise MapError(f"map {self.name!r}: key walk exceeded max_entries", errno.ELOOP)
            key = self.next_key(key)

    def items(self) -> Iterator[tuple[bytes, MapValue]]:
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:
                yield key, value

    def check_key(self, key: bytes) -> None:
        if len(key) != self.spec.key_size:
            raise MapError(f"map {self.name!r}: key is {len(key)} bytes, "
                           f"key_size is {self.spec.key_size}", errno.EINVAL)

    def check_value(self, value: MapValue) -> None:
        values = value if isinstance(value, list) else [value]
        if self.spec.percpu and (not isinstance(value, list) or len(values) != self.ncpus):
            raise MapError(f"map {self.name!r}: per-CPU value needs {self.ncpus} entries",
                           errno.EINVAL)
        for v in values:
            if len(v) != self.spec.value_size:
                raise MapError(f"map {self.name!r}: value is {len(v)} bytes, "
                               f"value_size is {self.spec.value_size}", errno.EINVAL)

    @property
    def id(self) -> int:
        """The map's id, what a map-in-map slot holds (an engine without ids raises)."""
        raise MapError(f"map {self.name!r}: this engine gives maps no ids", errno.EOPNOTSUPP)

    def records(self) -> list[tuple[int | None, bytes]] | None:
        """Take the records a RINGBUF (slot None) or PERF_EVENT_ARRAY (the slot written)
        holds, oldest first; None where this engine cannot read them."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, most maps own nothing
        """Release what the map holds (a kernel fd); the default owns nothing."""
