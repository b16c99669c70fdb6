"""`vxdp` command line: discovers the subcommand modules in `vxdp.commands`.

Exit statuses follow DESIGN.md: 0 success, 1 a negative verdict (program rejected, check
failed), 2 unusable input.  A `VxdpError` escaping a command is printed as one line
(`vxdp: error: ...`) with status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import vxdp.commands
from vxdp.errors import VxdpError


def _command_modules() -> list[ModuleType]:
    mods = []
    for info in pkgutil.iter_modules(vxdp.commands.__path__):
        if not info.name.startswith("_"):
            mods.append(importlib.import_module(f"vxdp.commands.{info.name}"))
    return sorted(mods, key=lambda m: m.NAME)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vxdp", description="XDP offload through virtio-net, emulated end to end.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args))
    except VxdpError as exc:
        print(f"vxdp: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
