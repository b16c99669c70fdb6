"""Running `vxdp host` and `vxdp guest` as real processes, for the subprocess tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from vxdp.errors import UsageError
from vxdp.pcap import read_pcap
from vxdp.scenario.procs import Proc, Processes
from vxdp.scenario.procs import processes as _processes

ROOT = Path(__file__).resolve().parents[3]


@asynccontextmanager
async def processes(tmp: Path) -> AsyncIterator[Processes]:
    """The children run from the source tree (`python -m vxdp`)."""
    async with _processes(tmp, ROOT) as procs:
        yield procs


def frames_in(path: Path) -> list[bytes]:
    """The frames of a capture being written (an empty list before it exists)."""
    try:
        return [p.data for p in read_pcap(path)]
    except (OSError, UsageError):
        return []  # not there yet, or a record half written


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


__all__ = ["Proc", "Processes", "frames_in", "load_json", "processes"]
