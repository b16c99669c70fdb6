"""Maps of the C core against the kernel's semantics: one table of operations with the
errno each must give, run on CoreMap and, where bpf() is permitted, on real kernel maps
(so the table itself is checked against the oracle)."""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from typing import Any

import pytest

from vxdp.bpf.coremaps import ENOTSUPP, CoreMap
from vxdp.bpf.maps import Map, possible_cpus
from vxdp.bpf.program import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_NO_PREALLOC,
    BPF_F_RDONLY_PROG,
    BPF_NOEXIST,
    MapSpec,
    MapType,
)
from vxdp.errors import MapError


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def lpm(plen: int, *octets: int) -> bytes:
    return struct.pack("<I", plen) + bytes(octets)


ARRAY = MapSpec("a", MapType.ARRAY, 4, 8, 4)
HASH = MapSpec("h", MapType.HASH, 4, 8, 2)
LPM = MapSpec("l", MapType.LPM_TRIE, 8, 4, 8, flags=BPF_F_NO_PREALLOC)
V = b"\x01" * 8

# (spec, op, args, expected): expected is an errno (the op must raise it) or the result
Op = tuple[MapSpec, str, tuple[Any, ...], Any]
TABLE: list[tuple[str, list[Op]]] = [
    ("array-update-flags", [
        (ARRAY, "update", (u32(0), V, BPF_ANY), None),
        (ARRAY, "update", (u32(1), V, BPF_EXIST), None),
        (ARRAY, "update", (u32(1), V, BPF_NOEXIST), errno.EEXIST),
        (ARRAY, "update", (u32(4), V, BPF_ANY), errno.E2BIG),
        (ARRAY, "update", (u32(0), V, 3), errno.EINVAL),
        (ARRAY, "lookup", (u32(1),), V),
        (ARRAY, "lookup", (u32(2),), bytes(8)),
        (ARRAY, "lookup", (u32(4),), None),
    ]),
    ("array-delete-and-keys", [
        (ARRAY, "delete", (u32(0),), errno.EINVAL),
        (ARRAY, "next_key", (None,), u32(0)),
        (ARRAY, "next_key", (u32(2),), u32(3)),
        (ARRAY, "next_key", (u32(3),), None),
        (ARRAY, "next_key", (u32(99),), u32(0)),
    ]),
    ("hash-flags-full-delete", [
        (HASH, "update", (u32(1), V, BPF_EXIST), errno.ENOENT),
        (HASH, "update", (u32(1), V, BPF_NOEXIST), None),
        (HASH, "update", (u32(1), V, BPF_NOEXIST), errno.EEXIST),
        (HASH, "update", (u32(2), V, BPF_ANY), None),
        (HASH, "update", (u32(3), V, BPF_ANY), errno.E2BIG),
        (HASH, "update", (u32(2), bytes(8), BPF_EXIST), None),  # full, but it exists
        (HASH, "lookup", (u32(2),), bytes(8)),
        (HASH, "delete", (u32(3),), errno.ENOENT),
        (HASH, "delete", (u32(1),), None),
        (HASH, "lookup", (u32(1),), None),
        (HASH, "next_key", (u32(1),), u32(2)),  # a missing key restarts at the first
        (HASH, "next_key", (u32(2),), None),
    ]),
    ("lpm-longest-prefix", [
        (LPM, "update", (lpm(8, 10, 0, 0, 0), u32(8), BPF_ANY), None),
        (LPM, "update", (lpm(24, 10, 1, 2, 0), u32(24), BPF_ANY), None),
        (LPM, "update", (lpm(33, 10, 1, 2, 0), u32(0), BPF_ANY), errno.EINVAL),
        (LPM, "lookup", (lpm(32, 10, 1, 2, 3),), u32(24)),
        (LPM, "lookup", (lpm(32, 10, 9, 9, 9),), u32(8)),
        (LPM, "lookup", (lpm(16, 10, 1, 2, 3),), u32(8)),  # the key's own prefixlen caps it
        (LPM, "lookup", (lpm(32, 11, 0, 0, 0),), None),
        (LPM, "lookup", (lpm(40, 10, 1, 2, 3),), None),    # beyond the data: no match
        (LPM, "delete", (lpm(40, 10, 1, 2, 3),), errno.EINVAL),
        (LPM, "next_key", (None,), lpm(24, 10, 1, 2, 0)),  # post-order: specific first
        (LPM, "next_key", (lpm(24, 10, 1, 2, 0),), lpm(8, 10, 0, 0, 0)),
        (LPM, "next_key", (lpm(8, 10, 0, 0, 0),), None),
        (LPM, "delete", (lpm(16, 10, 1, 0, 0),), errno.ENOENT),
        (LPM, "delete", (lpm(24, 10, 1, 2, 0),), None),
        (LPM, "lookup", (lpm(32, 10, 1, 2, 3),), u32(8)),
    ]),
]


def run_table(make: Callable[[MapSpec], Map], ops: list[Op]) -> None:
    maps: dict[str, Map] = {}
    try:
        for i, (spec, op, args, want) in enumerate(ops):
            m = maps.get(spec.name) or maps.setdefault(spec.name, make(spec))
            if isinstance(want, int):
                with pytest.raises(MapError) as exc:
                    getattr(m, op)(*args)
                assert exc.value.errno == want, f"step {i}: {op}{args}: {exc.value}"
            else:
                assert getattr(m, op)(*args) == want, f"step {i}: {op}{args}"
    finally:
        for m in maps.values():
            m.close()


@pytest.mark.parametrize("ops", [t[1] for t in TABLE], ids=[t[0] for t in TABLE])
def test_core_maps_follow_the_table(ops: list[Op]) -> None:
    run_table(CoreMap, ops)


@pytest.mark.kernel
@pytest.mark.parametrize("ops", [t[1] for t in TABLE], ids=[t[0] for t in TABLE])
def test_the_table_is_what_the_kernel_does(ops: list[Op]) -> None:
    from vxdp.bpf.kernel import KernelMap, kernel_unavailable
    why = kernel_unavailable()
    if why:
        pytest.skip(why)
    run_table(KernelMap, ops)


@pytest.mark.parametrize(("spec", "code"), [
    (MapSpec("x", MapType.ARRAY, 8, 4, 1), errno.EINVAL),           # array keys are u32
    (MapSpec("x", MapType.HASH, 4, 4, 0), errno.EINVAL),
    (MapSpec("x", MapType.LPM_TRIE, 8, 4, 8), errno.EINVAL),        # needs NO_PREALLOC
    (MapSpec("x", MapType.LPM_TRIE, 4, 4, 8, flags=BPF_F_NO_PREALLOC), errno.EINVAL),
    (MapSpec("x", MapType.LRU_HASH, 4, 4, 8, flags=BPF_F_NO_PREALLOC), ENOTSUPP),
    (MapSpec("x", MapType.RINGBUF, 0, 0, 4096 + 1), errno.EINVAL),
    (MapSpec("x", MapType.DEVMAP, 4, 2, 4), errno.EINVAL),
    (MapSpec("x", MapType.PROG_ARRAY, 4, 8, 4), errno.EINVAL),
    (MapSpec("x", MapType.STACK_TRACE, 4, 8, 4), errno.EINVAL),
])
def test_create_refuses_bad_attributes(spec: MapSpec, code: int) -> None:
    with pytest.raises(MapError) as exc:
        CoreMap(spec)
    assert exc.value.errno == code


def test_percpu_values_one_per_possible_cpu() -> None:
    n = possible_cpus()
    m = CoreMap(MapSpec("p", MapType.PERCPU_HASH, 4, 3, 4))
    vals = [bytes([i, i, i]) for i in range(n)]
    m.update(u32(7), vals)
    assert m.lookup(u32(7)) == vals
    with pytest.raises(MapError) as exc:
        m.update(u32(7), b"abc")
    assert exc.value.errno == errno.EINVAL
    a = CoreMap(MapSpec("pa", MapType.PERCPU_ARRAY, 4, 8, 2))
    assert a.lookup(u32(1)) == [bytes(8)] * n


def test_lru_evicts_a_batch_from_the_inactive_tail() -> None:
    """The kernel's common LRU refills a CPU's free list target_free nodes at a time
    (clamp(max_entries / possible CPUs / 2, 1, 128)) and evicts that many at once."""
    n = 64
    target = min(max(n // possible_cpus() // 2, 1), 128)
    m = CoreMap(MapSpec("lru", MapType.LRU_HASH, 4, 4, n))
    for k in range(n):
        m.update(u32(k), u32(k))
    m.update(u32(0), u32(10))  # needs a node: evicts keys 0..target-1, then re-adds 0
    m.update(u32(n), u32(n))
    assert sorted(struct.unpack("<I", k)[0] for k in m.keys()) == [0, *range(target, n + 1)]
    assert m.lookup(u32(0)) == u32(10)


BPF_F_NO_COMMON_LRU = 1 << 1


@pytest.mark.kernel
@pytest.mark.parametrize(("map_type", "flags"), [
    (MapType.LRU_HASH, 0), (MapType.LRU_PERCPU_HASH, 0),
    (MapType.LRU_HASH, BPF_F_NO_COMMON_LRU), (MapType.LRU_PERCPU_HASH, BPF_F_NO_COMMON_LRU)])
def test_lru_matches_the_kernel_key_for_key(map_type: MapType, flags: int) -> None:
    import random

    from vxdp.bpf.kernel import KernelMap, kernel_unavailable, pinned_cpu
    why = kernel_unavailable()
    if why:
        pytest.skip(why)
    outcome = []
    for make in (KernelMap, CoreMap):
        rnd = random.Random(5)
        m: Map = make(MapSpec("lru", map_type, 4, 8, 100, flags=flags))
        codes = []
        with pinned_cpu(0):  # syscall-side LRU operations use the caller's CPU lists
            for step in range(400):
                k, op = u32(rnd.randrange(200)), rnd.random()
                v = struct.pack("<Q", step)
                value = [v] * m.ncpus if m.spec.percpu else v
                try:
                    if op < 0.7:
                        m.update(k, value, rnd.choice([BPF_ANY, BPF_ANY, BPF_NOEXIST, BPF_EXIST]))
                    else:
                        m.delete(k)
                    codes.append(0)
                except MapError as exc:
                    codes.append(exc.errno)
        outcome.append((dict(m.items()), codes))
        m.close()
    assert outcome[0] == outcome[1]


def test_hash_walk_visits_every_key_once() -> None:
    m = CoreMap(MapSpec("h", MapType.HASH, 8, 4, 64))
    keys = {struct.pack("<Q", k * 0x9E3779B1) for k in range(50)}
    for k in keys:
        m.update(k, b"vvvv")
    walked = list(m.keys())
    assert len(walked) == len(set(walked)) == 50 and set(walked) == keys


def test_global_data_initial_and_frozen() -> None:
    rodata = CoreMap(MapSpec("o.rodata", MapType.ARRAY, 4, 6, 1, flags=BPF_F_RDONLY_PROG,
                             initial=b"hello\0", frozen=True))
    assert rodata.lookup(u32(0)) == b"hello\0"
    for op, args in (("update", (u32(0), b"world\0")), ("delete", (u32(0),))):
        with pytest.raises(MapError) as exc:
            getattr(rodata, op)(*args)
        assert exc.value.errno == errno.EPERM
    bss = CoreMap(MapSpec("o.bss", MapType.ARRAY, 4, 8, 1, initial=bytes(8)))
    bss.update(u32(0), V)
    assert bss.lookup(u32(0)) == V


def test_prog_array_and_devmap_slots() -> None:
    pa = CoreMap(MapSpec("jt", MapType.PROG_ARRAY, 4, 4, 4))
    with pytest.raises(MapError) as exc:
        pa.update(u32(0), u32(0xFFFFFFF))
    assert exc.value.errno == errno.EBADF
    assert pa.lookup(u32(0)) is None
    with pytest.raises(MapError) as exc:
        pa.delete(u32(0))
    assert exc.value.errno == errno.ENOENT
    dm = CoreMap(MapSpec("tx", MapType.DEVMAP, 4, 8, 4))
    dm.update(u32(1), struct.pack("<II", 7, 0))
    assert dm.lookup(u32(1)) == struct.pack("<II", 7, 0)
    assert dm.lookup(u32(2)) is None
    dm.delete(u32(1))
    assert dm.lookup(u32(1)) is None
    dm.delete(u32(1))  # dev_map_delete_elem: an empty slot is fine
    for m, key, flags, code in ((dm, u32(99), None, errno.EINVAL), (pa, u32(99), None, errno.E2BIG),
                                (pa, u32(0), BPF_NOEXIST, errno.EINVAL),
                                (dm, u32(0), BPF_NOEXIST, errno.EEXIST)):
        with pytest.raises(MapError) as exc:
            if flags is None:
                m.delete(key)
            else:
                m.update(key, u32(1).ljust(m.spec.value_size, b"\0"), flags)
        assert exc.value.errno == code


def test_ringbuf_has_no_elements() -> None:
    rb = CoreMap(MapSpec("rb", MapType.RINGBUF, 0, 0, 4096))
    with pytest.raises(MapError) as exc:
        rb.lookup(b"")
    assert exc.value.errno == ENOTSUPP
    assert rb.ringbuf_drain() == []
    with pytest.raises(MapError):
        CoreMap(ARRAY).ringbuf_drain()


FUZZ_SPECS = [
    MapSpec("h", MapType.HASH, 6, 8, 40),
    MapSpec("a", MapType.ARRAY, 4, 12, 30),
    MapSpec("ph", MapType.PERCPU_HASH, 4, 4, 20),
    MapSpec("pa", MapType.PERCPU_ARRAY, 4, 8, 10),
    MapSpec("l", MapType.LPM_TRIE, 6, 4, 30, flags=BPF_F_NO_PREALLOC),
    MapSpec("d", MapType.DEVMAP, 4, 4, 16),
    MapSpec("dh", MapType.DEVMAP_HASH, 4, 4, 16),
]


@pytest.mark.kernel
@pytest.mark.parametrize("spec", FUZZ_SPECS, ids=[s.type.name for s in FUZZ_SPECS])
def test_random_operations_match_the_kernel(spec: MapSpec) -> None:
    """The same random syscall-side operations on a kernel map and a core map: the same
    errno for each, the same lookups and the same contents at the end."""
    import random

    from vxdp.bpf.kernel import KernelMap, kernel_unavailable
    why = kernel_unavailable()
    if why:
        pytest.skip(why)

    def key(rnd: random.Random) -> bytes:
        if spec.type == MapType.LPM_TRIE:
            return struct.pack("<I", rnd.choice([0, 4, 8, 9, 16, 17, 20, 24, 33])) + \
                bytes(rnd.choice([0, 10, 11]) for _ in range(2))
        if spec.key_size == 4:
            return u32(rnd.randrange(2 * spec.max_entries))
        return bytes(rnd.randrange(3) for _ in range(spec.key_size))

    def value(rnd: random.Random, m: Map) -> bytes | list[bytes]:
        if spec.type in (MapType.DEVMAP, MapType.DEVMAP_HASH):
            return u32(1)  # the loopback device exists everywhere
        vals = [bytes(rnd.randrange(256) for _ in range(spec.value_size))
                for _ in range(m.ncpus)]
        return vals if spec.percpu else vals[0]

    outcome = []
    for make in (KernelMap, CoreMap):
        rnd = random.Random(11)
        m: Map = make(spec)
        log: list[object] = []
        for _ in range(300):
            k, op = key(rnd), rnd.random()
            try:
                if op < 0.5:
                    m.update(k, value(rnd, m), rnd.choice([BPF_ANY, BPF_NOEXIST, BPF_EXIST]))
                    log.append("ok")
                elif op < 0.7:
                    m.delete(k)
                    log.append("ok")
                elif op < 0.9:
                    log.append(m.lookup(k))
                elif m.lookup(k) is None:  # the walk order of present keys is the map's own
                    log.append(m.next_key(k) is None)
            except MapError as exc:
                log.append(exc.errno)
        contents = dict(m.items())
        outcome.append((log, contents))
        m.close()
    assert outcome[0][0] == outcome[1][0]
    assert outcome[0][1] == outcome[1][1]
