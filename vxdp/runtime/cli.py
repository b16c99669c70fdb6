"""What `vxdp host` and `vxdp guest` share: logging, signals, the stats file, XDP loading.

Both run until SIGINT or SIGTERM, then write their stats JSON (when asked) and exit 0;
SIGUSR1 writes the stats JSON and goes on.
The stats file is written to a temporary name and renamed, so a reader never sees half
of it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from vxdp.bpf.profiles import Profile
from vxdp.bpf.verifier import verify
from vxdp.errors import UsageError

from .xdp import XdpHook, load_program


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--xdp", metavar="OBJ.o", type=Path,
                        help="attach the XDP program of this object file")
    parser.add_argument("--section", help="the program's section, when the object has several")
    parser.add_argument("--program", help="the program's name, when the object has several")
    parser.add_argument("--engine", default="interp", choices=("interp", "jit", "kernel"),
                        help="engine the program runs on (default: interp)")
    parser.add_argument("--stats-json", metavar="FILE", type=Path,
                        help="write counters as JSON here on SIGINT/SIGTERM")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log what happens (-vv: more)")


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(name)s: %(levelname)s: %(message)s")


def make_hook(args: argparse.Namespace, profile: Profile) -> XdpHook:
    """The `--xdp` program, verified under `profile` before anything runs it (as the
    kernel verifies a program at load): a rejection prints the verifier's log and ends
    the command with the pc and the reason."""
    hook = XdpHook(args.engine)
    if args.xdp is not None:
        program = load_program(args.xdp, section=args.section, name=args.program)
        report = verify(program, profile=profile)
        if not report.accepted:
            print(report.log, file=sys.stderr, end="" if report.log.endswith("\n") else "\n")
            report.raise_for_rejection()
        hook.attach(program)
    return hook


def say(who: str, text: str) -> None:
    print(f"vxdp {who}: {text}", flush=True)


def write_stats(path: Path | None, stats: dict[str, Any]) -> None:
    if path is None:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


async def until_signalled(on_usr1: Callable[[], None] | None = None) -> int:
    """Wait for SIGINT or SIGTERM; returns the signal number.  SIGUSR1 calls `on_usr1`
    (write the stats file now) and waiting goes on."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGUSR1) as signals:
        async for signum in signals:
            if signum == signal.SIGUSR1:
                if on_usr1 is not None:
                    on_usr1()
                continue
            return int(signum)
    return 0


__all__ = ["add_common", "make_hook", "say", "setup_logging", "until_signalled",
           "write_stats"]
