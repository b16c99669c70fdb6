"""`vxdp run`: run a scenario file (docs/scenarios.md).

    vxdp run SCENARIO.yaml [SCENARIO.yaml ...] [-j] [--keep DIR]

Each scenario launches its hosts and guests as processes, runs its steps and checks its
expectations; progress goes to stderr, one line a step.  The result is one line a
scenario on stdout (`scenario NAME: passed (N steps, S s)` or `... FAILED: step K (KIND,
line L): why`); `-j` prints one JSON object a scenario instead.  Exit status: 0 every
scenario passed, 1 one failed, 2 a file that cannot be used (the message names its line
and column: `FILE:LINE:COL: at steps[3].link.up: 'yes' is not of type 'boolean'`).
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

NAME = "run"
HELP = "run scenario files: hosts and guests as processes, scripted steps, expectations"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenarios", metavar="SCENARIO.yaml", type=Path, nargs="+",
                        help="scenario files (scenarios/*.yaml)")
    parser.add_argument("-j", "--json", action="store_true",
                        help="one JSON object a scenario on stdout")
    parser.add_argument("--keep", metavar="DIR", type=Path,
                        help="run in DIR (sockets, control sockets) and leave it")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    import trio

    from vxdp.scenario import load, run_scenario
    loaded = [load(path) for path in args.scenarios]  # every file checked before any runs
    status = 0
    for scenario in loaded:
        def progress(line: str, name: str = scenario["name"]) -> None:
            if not args.quiet:
                print(f"vxdp run {name}: {line}", file=sys.stderr, flush=True)
        workdir = None
        if args.keep is not None:
            workdir = args.keep / scenario["name"]
            workdir.mkdir(parents=True, exist_ok=True)
        result = trio.run(partial(run_scenario, scenario, progress=progress, workdir=workdir))
        print(json.dumps(result.to_json()) if args.json else result.summary(), flush=True)
        if not result.ok:
            status = 1
    return status
