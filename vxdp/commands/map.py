"""`vxdp map`: the maps of a running host's or guest's programs, bpftool-style.

    vxdp map show [MAP] --host PATH | --guest PATH [-j]
    vxdp map dump MAP --host PATH | --guest PATH [-j]
    vxdp map lookup MAP key HEX --host PATH | --guest PATH [-j]
    vxdp map update MAP key HEX value HEX [any|noexist|exist] --host PATH | --guest PATH
    vxdp map delete MAP key HEX --host PATH | --guest PATH [-j]

    MAP := NAME | name NAME | id ID

These are the maps the host's datapath runs on: an update is seen by the next frame.  On
a host: the host-attached program's maps and every map a guest created on its device
(`dev` names the guest and the device's handle).  In a guest (`--guest`): the maps of the
program it placed; an offloaded program's maps are read and written over the control
virtqueue (LOOKUP, UPDATE, DELETE, GET_FIRST / GET_NEXT), from the device's own maps.
Bytes are hex, as one string (`0a000001`) or one token a byte (`0a 00 00 01`, `0x0a ...`,
`hex 0a 00 00 01`); bare tokens are hex, unlike bpftool's decimal.  A per-CPU value is
one value for every CPU, or every CPU's value one after another.  Text output is
bpftool's (`key: 01 00 00 00  value: ...`, `Found N elements`); with -j, `dump` prints
the map JSON of DESIGN.md (`{name: {type, key_size, value_size, max_entries, entries}}`,
what `vxdp exec --maps-in` reads), `lookup` one `{key, value}` entry, `show` bpftool's
fields, `update` and `delete` `null`.  Errors are the kernel's: ENOENT for a lookup miss,
E2BIG for a full map, EEXIST under noexist, ENOENT under exist.  Exit status: 0 done,
1 the operation failed, 2 unusable input or no host at PATH.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from vxdp.commands._ctl import add_host_options, call, emit, hex_tokens, host_command, spaced
from vxdp.control.protocol import UPDATE_FLAGS
from vxdp.errors import UsageError

NAME = "map"
HELP = "the maps of a running host's or guest's programs (show, dump, lookup, update, delete)"

SHAPES = {
    "show": "[MAP]", "dump": "MAP", "lookup": "MAP key HEX", "delete": "MAP key HEX",
    "update": "MAP key HEX value HEX [any|noexist|exist]",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_host_options(parser, leaf=False)
    sub = parser.add_subparsers(dest="map_command", metavar="COMMAND", required=True)
    for name, shape in SHAPES.items():
        p = sub.add_parser(name, help=f"map {name} {shape}",
                           usage=f"vxdp map {name} {shape} --host PATH | --guest PATH [-j]")
        p.add_argument("words", nargs="*", metavar="WORD", help=shape)
        add_host_options(p, leaf=True)


def map_ref(words: Sequence[str]) -> tuple[str | int, list[str]]:
    """MAP := NAME | name NAME | id ID, and the words after it."""
    if not words:
        raise UsageError("a map is needed: NAME, name NAME or id ID")
    if words[0] in ("id", "name"):
        if len(words) < 2:
            raise UsageError(f"map {words[0]}: the {words[0]} is missing")
        if words[0] == "name":
            return words[1], list(words[2:])
        try:
            return int(words[1], 0), list(words[2:])
        except ValueError:
            raise UsageError(f"map id {words[1]!r} is not a number") from None
    return words[0], list(words[1:])


def _section(words: list[str], keyword: str, stops: Sequence[str]) -> tuple[list[str],
                                                                            list[str]]:
    """The words after `keyword` up to the first of `stops`, and the rest."""
    if not words or words[0] != keyword:
        raise UsageError(f"expected {keyword!r}, got {words[0] if words else 'nothing'!r}")
    end = next((i for i, w in enumerate(words[1:], 1) if w in stops), len(words))
    return words[1:end], words[end:]


def entry_text(entry: dict[str, Any]) -> str:
    """One entry as bpftool prints it (short ones on one line, per-CPU values by CPU)."""
    key, value = entry["key"], entry["value"]
    key_size = len(key) // 2
    value_size = len(value[0] if isinstance(value, list) else value) // 2
    if isinstance(value, list):
        lines = ["key:", spaced(key)]
        sep = "\n" if value_size > 16 else " "
        lines += [f"value (CPU {cpu:02d}):{sep}{spaced(v)}" for cpu, v in enumerate(value)]
        return "\n".join(lines)
    broken = key_size > 16 or value_size > 16
    one_line = key_size + value_size <= 24 and not broken
    sep = "\n" if broken else " "
    return (f"key:{sep}{spaced(key)}{'  ' if one_line else chr(10)}"
            f"value:{sep}{spaced(value)}")


def show_text(m: dict[str, Any]) -> str:
    head = f"{m['id']}: {m['type']}  name {m['name']}  flags {m['flags']:#x}"
    body = (f"\tkey {m['bytes_key']}B  value {m['bytes_value']}B  "
            f"max_entries {m['max_entries']}")
    extra = ["\tfrozen"] if m.get("frozen") else []
    dev = m.get("dev")
    if dev is not None:
        owner = f"guest {dev['guest']}" if "guest" in dev else dev.get("ifname", "device")
        extra.append(f"\toffloaded to dev {owner}  handle {dev['handle']}")
    return "\n".join([head, body, *extra])


@host_command
def run(args: argparse.Namespace) -> int:
    cmd = args.map_command
    if cmd == "show":
        ref, rest = map_ref(args.words) if args.words else (None, [])
        _no_more(rest)
        maps = call(args, "map.show", map=ref)
        emit(args, maps, "\n".join(map(show_text, maps)))
        return 0
    ref, rest = map_ref(args.words)
    if cmd == "dump":
        _no_more(rest)
        dump = call(args, "map.dump", map=ref)
        body = {k: dump[k] for k in ("type", "key_size", "value_size", "max_entries",
                                     "entries")}
        n = len(dump["entries"])
        emit(args, {dump["name"]: body},
             "\n".join([*map(entry_text, dump["entries"]),
                        f"Found {n} element{'' if n == 1 else 's'}"]))
        return 0
    key_words, rest = _section(rest, "key", ("value",))
    key = hex_tokens(key_words, "key")
    if cmd == "lookup":
        _no_more(rest)
        entry = call(args, "map.lookup", map=ref, key=key)
        emit(args, entry, entry_text(entry))
        return 0
    if cmd == "update":
        value_words, rest = _section(rest, "value", UPDATE_FLAGS)
        value = hex_tokens(value_words, "value")
        flags = rest.pop(0) if rest else "any"
        _no_more(rest)
        call(args, "map.update", map=ref, key=key, value=value, flags=flags)
    else:
        _no_more(rest)
        call(args, "map.delete", map=ref, key=key)
    emit(args, None, "")
    return 0


def _no_more(rest: Sequence[str]) -> None:
    if rest:
        raise UsageError(f"unexpected words: {' '.join(rest)}")
