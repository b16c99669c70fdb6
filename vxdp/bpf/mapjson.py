"""Map JSON (DESIGN.md "CLI surface"): what `--maps-in` reads and `--maps-out`/`-j` write.

    {"counts": {"type": "hash", "key_size": 4, "value_size": 8, "max_entries": 64,
                "entries": [{"key": "01000000", "value": "0500000000000000"}]},
     "stats":  {..., "entries": [{"key": "00000000", "value": ["0100", "0000"]}]}}

Keys and values are lowercase hex of the raw bytes (bytes.hex()); a per-CPU map gives
`value` as a list of hex strings, one per possible CPU.  Map names are the object's (global
data maps as libbpf names them, `<object prefix>.bss`).  Array entries come in index order;
entries of other maps are sorted by key bytes, since hash order is an implementation detail
that differs between engines (and kernels).  On input only `entries` is needed,
`{}` is valid, hex may contain spaces, and a per-CPU value may be one hex string that is
then given to every CPU.  Anything that cannot be used is a UsageError naming the map and
the entry index.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vxdp.bpf.maps import RECORD_MAP_TYPES, Map, MapValue
from vxdp.bpf.program import ARRAY_MAP_TYPES, BPF_ANY, MapSpec, MapType
from vxdp.errors import MapError, UsageError


def type_name(t: MapType) -> str:
    """bpftool's spelling of a map type: `hash`, `percpu_array`, `lru_hash`..."""
    return t.name.lower()


def value_hex(value: MapValue) -> str | list[str]:
    """A map value as the map JSON gives it: hex, or a list of hex per CPU."""
    return [v.hex() for v in value] if isinstance(value, list) else value.hex()


def dump_map(m: Map) -> dict[str, Any]:
    """A map as map JSON; a RINGBUF or PERF_EVENT_ARRAY has no entries but `records`
    (taken from the map: hex of each ringbuf record, {cpu, data} for each perf event
    record), left out where the engine cannot read them (the kernel's)."""
    if m.spec.type not in RECORD_MAP_TYPES:
        return map_doc(m.spec, m.items())
    out = map_doc(m.spec, [])
    recs = m.records()
    if recs is not None:
        out["records"] = [data.hex() if slot is None else {"cpu": slot, "data": data.hex()}
                          for slot, data in recs]
    return out


def map_doc(spec: MapSpec, entries: Iterable[tuple[bytes, MapValue]]) -> dict[str, Any]:
    """Map JSON of a map with these entries (hash maps sorted by key: their order is each
    engine's own)."""
    items = list(entries)
    if spec.type not in ARRAY_MAP_TYPES:
        items.sort(key=lambda kv: kv[0])
    return {
        "type": type_name(spec.type),
        "key_size": spec.key_size,
        "value_size": spec.value_size,
        "max_entries": spec.max_entries,
        "entries": [{"key": k.hex(), "value": value_hex(v)} for k, v in items],
    }


def dump_maps(maps: Iterable[Map]) -> dict[str, dict[str, Any]]:
    """Every map with all its entries, in the order given (the program's map order)."""
    return {m.name: dump_map(m) for m in maps}


def hex_bytes(text: object, size: int, what: str) -> bytes:
    if not isinstance(text, str):
        raise UsageError(f"{what}: expected a hex string, got {type(text).__name__}")
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not hex") from None
    if len(raw) != size:
        raise UsageError(f"{what}: {len(raw)} bytes, expected {size}")
    return raw


def _value(m: Map, value: object, what: str) -> MapValue:
    size = m.spec.value_size
    if not m.spec.percpu:
        return hex_bytes(value, size, what)
    if isinstance(value, str):
        return [hex_bytes(value, size, what)] * m.ncpus
    if not isinstance(value, list) or len(value) != m.ncpus:
        raise UsageError(f"{what}: a per-CPU value is a list of {m.ncpus} hex strings "
                         f"(one per possible CPU) or one hex string for all")
    return [hex_bytes(v, size, f"{what}[{i}]") for i, v in enumerate(value)]


def parse_key(m: Map, text: object, what: str = "key") -> bytes:
    """A key given as hex (map JSON spelling) for map `m`; UsageError names `what`."""
    return hex_bytes(text, m.spec.key_size, f"map {m.name!r} {what}")


def parse_value(m: Map, value: object, what: str = "value") -> MapValue:
    """A value given as map JSON spells it (per-CPU: a list, or one hex for every CPU)."""
    return _value(m, value, f"map {m.name!r} {what}")


def _check_header(m: Map, doc: Mapping[str, Any]) -> None:
    """Fields other than `entries` are optional; when present they must match the map."""
    expect = {"type": type_name(m.spec.type), "key_size": m.spec.key_size,
              "value_size": m.spec.value_size, "max_entries": m.spec.max_entries}
    for field, want in expect.items():
        if field in doc and doc[field] != want:
            raise UsageError(f"map {m.name!r}: {field} is {want!r}, the json says "
                             f"{doc[field]!r}")


def load_entries(maps: Iterable[Map], doc: object) -> int:
    """Write the `entries` of map JSON into the maps (BPF_ANY); returns how many."""
    if not isinstance(doc, dict):
        raise UsageError("map json: expected an object {map name: {entries: [...]}}")
    by_name = {m.name: m for m in maps}
    written = 0
    for name, body in doc.items():
        m = by_name.get(name)
        if m is None:
            raise UsageError(f"map json: no map named {name!r} (maps: "
                             f"{', '.join(by_name) or 'none'})")
        if not isinstance(body, dict):
            raise UsageError(f"map {name!r}: expected an object with 'entries'")
        _check_header(m, body)
        entries = body.get("entries", [])
        if not isinstance(entries, list):
            raise UsageError(f"map {name!r}: 'entries' must be a list")
        for i, entry in enumerate(entries):
            what = f"map {name!r} entry {i}"
            if not isinstance(entry, dict) or "key" not in entry or "value" not in entry:
                raise UsageError(f"{what}: expected {{'key': hex, 'value': hex}}")
            key = hex_bytes(entry["key"], m.spec.key_size, f"{what} key")
            value = _value(m, entry["value"], f"{what} value")
            try:
                m.update(key, value, BPF_ANY)
            except MapError as exc:
                raise UsageError(f"{what}: {exc}") from None
            written += 1
    return written


def read_map_json(path: Path | str) -> object:
    """Parse a map JSON file (`--maps-in`); unreadable or invalid JSON is a UsageError."""
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not json: {exc.msg} at line {exc.lineno}") from None


def write_map_json(path: Path | str, maps: Iterable[Map]) -> None:
    try:
        Path(path).write_text(json.dumps(dump_maps(maps), indent=2) + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
