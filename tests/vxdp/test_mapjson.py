"""vxdp.bpf.mapjson: dump and load map JSON, with errors that name the map and entry."""

from __future__ import annotations

import errno
import json

import pytest

from vxdp.bpf.kernel import KernelMap, kernel_unavailable
from vxdp.bpf.mapjson import dump_maps, load_entries, read_map_json, write_map_json
from vxdp.bpf.maps import Map, MapValue
from vxdp.bpf.program import BPF_ANY, BPF_NOEXIST, MapSpec, MapType
from vxdp.errors import MapError, UsageError


class DictMap(Map):
    """A hash map in a dict, for tests that do not need an engine."""

    def __init__(self, spec: MapSpec, ncpus: int = 2) -> None:
        self.spec = spec
        self._ncpus = ncpus
        self.data: dict[bytes, MapValue] = {}

    @property
    def ncpus(self) -> int:
        return self._ncpus if self.spec.percpu else 1

    def lookup(self, key: bytes) -> MapValue | None:
        return self.data.get(key)

    def update(self, key: bytes, value: MapValue, flags: int = BPF_ANY) -> None:
        self.check_key(key)
        self.check_value(value)
        if key not in self.data and len(self.data) >= self.spec.max_entries:
            raise MapError(f"map {self.name!r}: update: argument list too long", errno.E2BIG)
        if flags == BPF_NOEXIST and key in self.data:
            raise MapError(f"map {self.name!r}: update: file exists", errno.EEXIST)
        self.data[key] = value

    def delete(self, key: bytes) -> None:
        del self.data[key]

    def next_key(self, key: bytes | None) -> bytes | None:
        keys = list(self.data)  # insertion order, like a hash table's own order
        if key not in self.data:
            return keys[0] if keys else None
        i = keys.index(key)
        return keys[i + 1] if i + 1 < len(keys) else None


def maps() -> list[DictMap]:
    return [DictMap(MapSpec("counts", MapType.HASH, 4, 8, 2)),
            DictMap(MapSpec("stats", MapType.PERCPU_HASH, 2, 3, 4))]


def test_dump_shape_matches_design():
    h, pc = maps()
    h.update(bytes([1, 0, 0, 0]), bytes([5] + [0] * 7))
    pc.update(b"\x00\x01", [b"abc", b"\x00\x00\xff"])
    assert dump_maps([h, pc]) == {
        "counts": {"type": "hash", "key_size": 4, "value_size": 8, "max_entries": 2,
                   "entries": [{"key": "01000000", "value": "0500000000000000"}]},
        "stats": {"type": "percpu_hash", "key_size": 2, "value_size": 3, "max_entries": 4,
                  "entries": [{"key": "0001", "value": ["616263", "0000ff"]}]},
    }


def test_hash_entries_are_sorted_by_key_whatever_the_map_order():
    m = DictMap(MapSpec("h", MapType.HASH, 2, 1, 8))
    for k in (b"\x03\x00", b"\x01\x00", b"\x00\x02"):
        m.update(k, b"\x00")
    assert [e["key"] for e in dump_maps([m])["h"]["entries"]] == ["0002", "0100", "0300"]


def test_round_trip_through_a_file(tmp_path):
    src = maps()
    src[0].update(b"\x02\x00\x00\x00", b"\x09" * 8)
    src[1].update(b"\x07\x00", [b"\x01\x02\x03", b"\x04\x05\x06"])
    path = tmp_path / "m.json"
    write_map_json(path, src)
    dst = maps()
    assert load_entries(dst, read_map_json(path)) == 2
    assert dump_maps(dst) == dump_maps(src)


def test_only_entries_needed_and_empty_is_valid():
    m = maps()
    assert load_entries(m, {}) == 0
    assert load_entries(m, {"counts": {}}) == 0
    doc = {"counts": {"entries": [{"key": "01 00 00 00", "value": "0x0100000000000000"}]},
           "stats": {"entries": [{"key": "0000", "value": "aabbcc"}]}}  # one value, all CPUs
    assert load_entries(m, doc) == 2
    assert m[0].lookup(b"\x01\0\0\0") == b"\x01" + bytes(7)
    assert m[1].lookup(b"\0\0") == [b"\xaa\xbb\xcc"] * 2


@pytest.mark.parametrize(("doc", "message"), [
    ([], "expected an object"),
    ({"nope": {}}, r"no map named 'nope' \(maps: counts, stats\)"),
    ({"counts": []}, "map 'counts': expected an object"),
    ({"counts": {"entries": {}}}, "'entries' must be a list"),
    ({"counts": {"entries": [{"key": "00"}]}}, "map 'counts' entry 0: expected"),
    ({"counts": {"entries": [{"key": "zz000000", "value": "00" * 8}]}},
     "map 'counts' entry 0 key: 'zz000000' is not hex"),
    ({"counts": {"entries": [{"key": "00000000", "value": "00" * 8},
                             {"key": "0000", "value": "00" * 8}]}},
     "map 'counts' entry 1 key: 2 bytes, expected 4"),
    ({"counts": {"entries": [{"key": "00000000", "value": 5}]}},
     "entry 0 value: expected a hex string, got int"),
    ({"stats": {"entries": [{"key": "0000", "value": ["000000"]}]}},
     "list of 2 hex strings"),
    ({"stats": {"entries": [{"key": "0000", "value": ["000000", "00"]}]}},
     r"entry 0 value\[1\]: 1 bytes, expected 3"),
    ({"counts": {"type": "array", "entries": []}}, "map 'counts': type is 'hash'"),
    ({"counts": {"key_size": 8}}, "key_size is 4, the json says 8"),
    ({"counts": {"entries": [{"key": f"0{i}000000", "value": "00" * 8} for i in range(3)]}},
     "map 'counts' entry 2: .*argument list too long"),
])
def test_bad_input_names_the_map_and_entry(doc, message):
    with pytest.raises(UsageError, match=message):
        load_entries(maps(), doc)


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(UsageError, match="cannot read"):
        read_map_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="not json"):
        read_map_json(bad)


@pytest.mark.kernel
def test_kernel_maps_round_trip():
    if reason := kernel_unavailable():
        pytest.skip(reason)
    specs = [MapSpec("arr", MapType.ARRAY, 4, 4, 2), MapSpec("pc", MapType.PERCPU_ARRAY, 4, 4, 1)]
    src = [KernelMap(s) for s in specs]
    dst = [KernelMap(s) for s in specs]
    try:
        doc = {"arr": {"entries": [{"key": "01000000", "value": "2a000000"}]},
               "pc": {"entries": [{"key": "00000000", "value": "07000000"}]}}
        load_entries(src, doc)
        dumped = json.loads(json.dumps(dump_maps(src)))
        assert dumped["arr"]["entries"] == [{"key": "00000000", "value": "00000000"},
                                            {"key": "01000000", "value": "2a000000"}]
        assert dumped["pc"]["entries"][0]["value"] == ["07000000"] * src[1].ncpus
        load_entries(dst, dumped)
        assert dump_maps(dst) == dumped
    finally:
        for m in src + dst:
            m.close()
