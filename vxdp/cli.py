"""`vxdp` command line: discovers the subcommand modules in `vxdp.commands`.

Exit statuses follow DESIGN.md: 0 success, 1 a negative verdict (program rejected, check
failed), 2 unusable input.  A `VxdpError` escaping a command is printed as one line
(`vxdp: error: ...`) with status 2, never as a traceback.

Start-up is lazy: a command module imports at its top only what its NAME and HELP need,
and the rest inside `add_arguments` and `run`; `main` adds the arguments of the one
command it was asked to run.  `vxdp --help` then costs the interpreter and argparse, and
`vxdp verify` the verifier, not the runtime, trio or the conformance suite besides.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

import vxdp.commands
from vxdp.errors import VxdpError


def _command_modules() -> list[ModuleType]:
    """Every module of vxdp.commands whose name does not start with `_`.  The folder is
    listed as pkgutil.iter_modules would, without the `inspect` import that costs."""
    names = {stem for folder in vxdp.commands.__path__ for stem, ext in
             map(os.path.splitext, os.listdir(folder))
             if ext == ".py" and stem.isidentifier() and not stem.startswith("_")}
    mods = [importlib.import_module(f"vxdp.commands.{name}") for name in names]
    return sorted(mods, key=lambda m: m.NAME)


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names: its first word (the top level has no options that
    take a value), or None when it starts with an option such as --help."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def build_parser(command: str | None = None, *, every: bool = True) -> argparse.ArgumentParser:
    """The parser of `vxdp`: every subcommand with its help line; the arguments of
    `command` only, or of every subcommand when `every` (the default, for tools that walk
    the whole surface)."""
    parser = argparse.ArgumentParser(
        prog="vxdp", description="XDP offload through virtio-net, emulated end to end.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        if every or mod.NAME == command:
            mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(args_in), every=False)
    args = parser.parse_args(args_in)
    try:
        return int(args._run(args))
    except VxdpError as exc:
        print(f"vxdp: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
