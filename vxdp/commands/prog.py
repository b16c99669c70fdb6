"""`vxdp prog`: the program attached on a running host, bpftool-style.

    vxdp prog show --host PATH [-j]
    vxdp prog dump xlated --host PATH [-j]
    vxdp prog dump jited --host PATH [-j]
    vxdp prog attach OBJ.o [--section S] [--program NAME] --host PATH [-j]
    vxdp prog detach --host PATH [-j]

`--host` is the control socket of `vxdp host --control PATH`.  `show` prints what
`bpftool prog show` prints for it (id, type, name, tag, insns, map ids; nothing when no
program is attached, `[]` with -j); `dump xlated` the instructions in the kernel's
syntax with maps as `map[id:N]`; `dump jited` the C the jit engine compiled the program
to (the host must run `--engine jit`; otherwise the error says so).  `attach` loads the
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

NAME = "prog"
HELP = "the XDP program of a running host (show, dump xlated|jited, attach, detach)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_host_options(parser, leaf=False)
    sub = parser.add_subparsers(dest="prog_command", metavar="COMMAND", required=True)
    p = sub.add_parser("show", aliases=["list"], help="the attached program")
    add_host_options(p, leaf=True)
    p = sub.add_parser("dump", help="its instructions (xlated) or generated code (jited)")
    p.add_argument("what", choices=("xlated", "jited"))
    add_host_options(p, leaf=True)
    p = sub.add_parser("attach", help="verify and attach the program of an object file")
    p.add_argument("object", metavar="OBJ.o", type=Path, help="BPF object file (clang)")
    p.add_argument("--section", metavar="S", help="the program's section")
    p.add_argument("--program", metavar="NAME", help="the program's name")
    add_host_options(p, leaf=True)
    p = sub.add_parser("detach", help="detach the program (frames pass untouched)")
    add_host_options(p, leaf=True)


def show_text(prog: dict[str, Any]) -> str:
    loaded = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(prog["loaded_at"]))
    gpl = "  gpl" if prog["gpl_compatible"] else ""
    maps = ",".join(map(str, prog["map_ids"]))
    lines = [f"{prog['id']}: {prog['type']}  name {prog['name']}  tag {prog['tag']}{gpl}",
             f"\tloaded_at {loaded}  section {prog['section']}  engine {prog['engine']}",
             f"\txlated {prog['bytes_xlated']}B  insns {prog['insns']}  "
             f"{'jited' if prog['jited'] else 'not jited'}"
             + (f"  map_ids {maps}" if maps else "")]
    return "\n".join(lines)


@host_command
def run(args: argparse.Namespace) -> int:
    cmd = args.prog_command
    if cmd in ("show", "list"):
        progs = call(args, "prog.show")
        emit(args, progs, "\n".join(map(show_text, progs)))
    elif cmd == "dump" and args.what == "xlated":
        insns = call(args, "prog.dump_xlated")["insns"]
        emit(args, insns, "\n".join(f"{i['pc']:4d}: ({i['opcode']}) {i['disasm']}"
                                    for i in insns))
    elif cmd == "dump":
        dump = call(args, "prog.dump_jited")
        emit(args, dump, f"/* {dump['name']} (id {dump['id']}), from {dump['source_path']} "
                         f"*/\n{dump['source'].rstrip()}")
    elif cmd == "attach":
        prog = call(args, "prog.attach", path=str(args.object.absolute()),
                    section=args.section, program=args.program)
        emit(args, prog, show_text(prog))
    else:
        gone = call(args, "prog.detach")
        emit(args, gone, f"detached {gone['name']} (id {gone['id']})")
    return 0
