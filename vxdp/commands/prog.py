"""`vxdp prog`: the programs of a running host or guest, bpftool-style.

    vxdp prog show --host PATH | --guest PATH [-j]
    vxdp prog dump xlated [id N] --host PATH [-j]
    vxdp prog dump jited [id N] --host PATH [-j]
    vxdp prog attach OBJ.o [--section S] [--program NAME] --host PATH [-j]
    vxdp prog attach OBJ.o [...] [--mode driver|offload|auto] --guest PATH [-j]
    vxdp prog detach --host PATH | --guest PATH [-j]

`--host` is the control socket of `vxdp host --control PATH`, `--guest` that of `vxdp
guest --control PATH`.  `show` prints what `bpftool prog show` prints (id, type, name,
tag, insns, map ids; nothing when there is no program, `[]` with -j): on a host the
host-attached program and every program a guest offloaded (with `dev`: the guest that
owns it, as bpftool shows a device-bound program's device), in a guest the program it
placed, with the device's own view of an offloaded one (QUERY: state, engine, translated
size).  `dump xlated` the instructions in the kernel's syntax with maps as `map[id:N]`;
`dump jited` the C the jit engine compiled the program to (the host must run `--engine
jit`; otherwise the error says so); `id N` picks a program (default: the host-attached
one, or the only one).  `attach` loads the
object on the host, which verifies the program under its profile first: a refusal
prints the verifier's log, exits 1 and leaves the attached program in place.  Exit
status: 0 done, 1 the operation failed, 2 unusable input or no host at PATH.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from vxdp.commands._ctl import add_host_options, call, emit, host_command
from vxdp.errors import UsageError

NAME = "prog"
HELP = "the XDP program of a running host (show, dump xlated|jited, attach, detach)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_host_options(parser, leaf=False)
    sub = parser.add_subparsers(dest="prog_command", metavar="COMMAND", required=True)
    p = sub.add_parser("show", aliases=["list"], help="the attached program")
    add_host_options(p, leaf=True)
    p = sub.add_parser("dump", help="its instructions (xlated) or generated code (jited)")
    p.add_argument("what", choices=("xlated", "jited"))
    p.add_argument("prog", nargs="*", metavar="id N", help="which program (bpftool's PROG)")
    add_host_options(p, leaf=True, guest=False)
    p = sub.add_parser("attach", help="verify and attach the program of an object file")
    p.add_argument("object", metavar="OBJ.o", type=Path, help="BPF object file (clang)")
    p.add_argument("--section", metavar="S", help="the program's section")
    p.add_argument("--program", metavar="NAME", help="the program's name")
    p.add_argument("--mode", choices=("driver", "offload", "auto"),
                   help="with --guest: where the guest places it (default: its --mode)")
    add_host_options(p, leaf=True)
    p = sub.add_parser("detach", help="detach the program (frames pass untouched)")
    add_host_options(p, leaf=True)


def show_text(prog: dict[str, Any]) -> str:
    gpl = "  gpl" if prog["gpl_compatible"] else ""
    maps = ",".join(map(str, prog["map_ids"]))
    lines = [f"{prog['id']}: {prog['type']}  name {prog['name']}  tag {prog['tag']}{gpl}"]
    dev = prog.get("dev")
    if dev is not None and "guest" in dev:  # a host's view of a guest's offloaded program
        lines.append(f"\toffloaded to dev guest {dev['guest']} (ifindex {dev['ifindex']}, "
                     f"{dev['socket']})")
    elif dev is not None:  # a guest's view of its own
        lines.append(f"\toffloaded to dev {dev['ifname']}")
    if "loaded_at" in prog:
        loaded = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(prog["loaded_at"]))
        lines.append(f"\tloaded_at {loaded}  section {prog['section']}  engine "
                     f"{prog['engine']}")
    device = prog.get("device")
    if device:
        lines.append(f"\tdevice: {device['state']} on engine {device['engine']}  xlated "
                     f"{device['xlated_cnt']} insns  image {device['image_len']}B")
    jited = prog.get("jited")
    lines.append(f"\txlated {prog['bytes_xlated']}B  insns {prog['insns']}"
                 + ("" if jited is None else f"  {'jited' if jited else 'not jited'}")
                 + (f"  mode {prog['mode']}" if "mode" in prog else "")
                 + (f"  map_ids {maps}" if maps else ""))
    return "\n".join(lines)


def prog_ref(tokens: list[str]) -> dict[str, int]:
    """bpftool's PROG: `id N` (nothing: the default program)."""
    if not tokens:
        return {}
    if len(tokens) == 2 and tokens[0] == "id" and tokens[1].isdigit():
        return {"id": int(tokens[1])}
    raise UsageError(f"program {' '.join(tokens)!r}: expected `id N`")


@host_command
def run(args: argparse.Namespace) -> int:
    cmd = args.prog_command
    if cmd in ("show", "list"):
        progs = call(args, "prog.show")
        emit(args, progs, "\n".join(map(show_text, progs)))
    elif cmd == "dump" and args.what == "xlated":
        insns = call(args, "prog.dump_xlated", **prog_ref(args.prog))["insns"]
        emit(args, insns, "\n".join(f"{i['pc']:4d}: ({i['opcode']}) {i['disasm']}"
                                    for i in insns))
    elif cmd == "dump":
        dump = call(args, "prog.dump_jited", **prog_ref(args.prog))
        emit(args, dump, f"/* {dump['name']} (id {dump['id']}), from {dump['source_path']} "
                         f"*/\n{dump['source'].rstrip()}")
    elif cmd == "attach":
        extra = {"mode": args.mode} if args.mode else {}
        prog = call(args, "prog.attach", path=str(args.object.absolute()),
                    section=args.section, program=args.program, **extra)
        if "state" in prog:  # a guest placed it
            emit(args, prog, f"{prog['name']}: {prog['state']}"
                             + (f" ({prog['reason']})" if prog["reason"] else ""))
        else:
            emit(args, prog, show_text(prog))
    else:
        gone = call(args, "prog.detach")
        emit(args, gone, f"detached {gone['name']} (id {gone['id']})")
    return 0
