"""`vxdp exec`: run an XDP program of an object file over every packet of a pcap file.

    vxdp exec prog.o --pcap in.pcap [--section S] [--program NAME] [--out out.pcap]
              [--maps-in m.json] [--maps-out m.json]
              [--engine interp|jit|kernel|smartnic] [-j]

The packets run in file order through one engine, so map state carries from one packet to
the next, as on a NIC.  `smartnic` translates the program for the SmartNIC's micro-engine
and runs the image on its simulator (vxdp.bpf.nic): a program it refuses exits 2 with the
pc and the reason.  `--maps-in` seeds the maps before the first packet (map JSON; only
`entries` needed); `--maps-out` writes every map after the last one.

Output: with `-j`, one JSON object per packet, {index, retval, action, len, data_hex}, with
`action` the kernel's name (`XDP_PASS`...) or null when the program returned something that
is not an XDP action, then one final {"maps": {...}}, where a ringbuf or perf event array
has the `records` the run left in it (vxdp.bpf.mapjson).  Without `-j`, a table and a
summary.

`--out` writes the packets that leave the program alive: those it answered XDP_PASS,
XDP_TX or XDP_REDIRECT, with their bytes as the program left them and their original
timestamps (nanosecond pcap when the input had sub-microsecond ones); XDP_DROP,
XDP_ABORTED and unknown return values are left out.  Use -j to see
every packet, dropped ones included.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vxdp.errors import UsageError, VxdpError

if TYPE_CHECKING:
    from vxdp.bpf.engine import XdpResult

NAME = "exec"
HELP = "run an XDP program over the packets of a pcap file"
LEAVING = frozenset({"XDP_PASS", "XDP_TX", "XDP_REDIRECT"})  # what --out keeps
PREVIEW_BYTES = 16
CHUNK = 4096  # output lines per write


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vxdp.bpf.engine import ENGINES
    parser.add_argument("object", metavar="OBJ.o", type=Path, help="BPF object file (clang)")
    parser.add_argument("--section", metavar="S", help="the program's ELF section")
    parser.add_argument("--program", metavar="NAME",
                        help="the program's function name (needed when the object holds "
                             "more than one program)")
    parser.add_argument("--pcap", metavar="IN", type=Path, required=True,
                        help="packets to run (pcap or pcapng, Ethernet)")
    parser.add_argument("--out", metavar="OUT.pcap", type=Path,
                        help="write the packets that leave (XDP_PASS, XDP_TX, XDP_REDIRECT) "
                             "with their bytes after the program")
    parser.add_argument("--maps-in", metavar="M.json", type=Path,
                        help="map JSON to load before the first packet")
    parser.add_argument("--maps-out", metavar="M.json", type=Path,
                        help="write every map as map JSON after the last packet")
    parser.add_argument("--engine", choices=list(ENGINES), default="interp",
                        help="execution engine (default: interp)")
    parser.add_argument("-j", "--json", action="store_true",
                        help="one JSON object per packet, then {maps: ...}")


def action_name(result: XdpResult) -> str | None:
    action = result.action
    return f"XDP_{action.name}" if action is not None else None


def packet_record(index: int, result: XdpResult) -> dict[str, Any]:
    return {"index": index, "retval": result.retval, "action": action_name(result),
            "len": len(result.data), "data_hex": result.data.hex()}


@functools.cache
def _action_json(retval: int) -> str:
    """The `action` of a packet record as JSON (one per return value seen)."""
    from vxdp.bpf.engine import XdpResult
    return json.dumps(action_name(XdpResult(retval, b"")))


def packet_json(index: int, result: XdpResult) -> str:
    """json.dumps(packet_record(index, result)), written out directly: every field is an
    int, an action name, null or hex, none needs escaping, and json.dumps per packet was
    most of the time of a large run."""
    return (f'{{"index": {index}, "retval": {result.retval}, '
            f'"action": {_action_json(result.retval)}, "len": {len(result.data)}, '
            f'"data_hex": "{result.data.hex()}"}}')


def _stream(lines: Iterator[str]) -> None:
    """Write `lines` to stdout a chunk at a time: one write call per CHUNK lines, not per
    line (stdout may be unbuffered, and a pipe then costs a system call a line)."""
    out = sys.stdout
    for chunk in iter(lambda: list(itertools.islice(lines, CHUNK)), []):
        out.write("\n".join(chunk) + "\n")


def run(args: argparse.Namespace) -> int:
    from vxdp.bpf.elf import load_object, select_program
    from vxdp.bpf.engine import create_engine
    from vxdp.bpf.mapjson import dump_maps, load_entries, read_map_json, write_map_json
    from vxdp.bpf.program import ProgType
    from vxdp.pcap import Packet, read_pcap, write_pcap
    obj = load_object(args.object)
    program = select_program(obj, args.section, args.program)
    if program.prog_type != ProgType.XDP:
        raise UsageError(f"program {program.name!r} (section {program.section}) is "
                         f"{program.prog_type.name.lower()}, not xdp")
    packets = read_pcap(args.pcap)
    seed = read_map_json(args.maps_in) if args.maps_in else None
    with create_engine(args.engine, program) as engine:
        if seed is not None:
            load_entries(engine.maps, seed)
        try:
            results = engine.run_xdp([p.data for p in packets]) if packets else []
        except VxdpError:
            raise
        except ValueError as exc:  # a packet the engine cannot run (0 bytes, over a page)
            raise UsageError(f"{args.pcap}: {exc} (engine {args.engine})") from None
        maps = dump_maps(engine.maps)
        if args.maps_out:
            write_map_json(args.maps_out, engine.maps)
    if args.out:
        nsec = any(p.timestamp_ns % 1000 for p in packets)  # keep nanosecond timestamps
        write_pcap(args.out, [Packet(r.data, p.timestamp_ns)
                              for p, r in zip(packets, results, strict=True)
                              if action_name(r) in LEAVING], nsec=nsec)
    if args.json:
        _stream(itertools.chain(itertools.starmap(packet_json, enumerate(results)),
                                [json.dumps({"maps": maps})]))
    else:
        _print_table(program.name, args.engine, results, maps)
    return 0


def _print_table(name: str, engine: str, results: list[XdpResult],
                 maps: dict[str, dict[str, Any]]) -> None:
    def row(i: int, r: XdpResult) -> str:
        preview = r.data[:PREVIEW_BYTES].hex(" ")
        more = " ..." if len(r.data) > PREVIEW_BYTES else ""
        return (f"{i:>5}  {r.retval:>10}  {action_name(r) or '-':<13}  {len(r.data):>5}  "
                f"{preview}{more}")

    counts = Counter(action_name(r) or f"retval {r.retval}" for r in results)
    summary = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
    _stream(itertools.chain(
        [f"{'index':>5}  {'retval':>10}  {'action':<13}  {'len':>5}  data"],
        itertools.starmap(row, enumerate(results)),
        [f"{len(results)} packets through {name} ({engine}): {summary or 'none'}"],
        (f"map {mname}: {m['type']}, {len(m['records'])} records" if "records" in m
         else f"map {mname}: {m['type']}, {len(m['entries'])} of {m['max_entries']} entries"
         for mname, m in maps.items())))
