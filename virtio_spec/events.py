"""The base of what the sans-I/O models report: events and transport requests.

The driver model (guest), the device model (host) and the driver's transport requests
are all plain frozen dataclasses that a trace prints and a test inspects.  They share
this base: a `kind` tag, `describe()` for one readable line, and `fields()` for a
JSON-ready dict (bytes become hex strings, tuples lists).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar


@dataclass(frozen=True)
class Record:
    """Base of every event and request the models exchange."""

    kind: ClassVar[str] = "record"

    def describe(self) -> str:
        """One readable line."""
        return self.kind

    def fields(self) -> dict[str, object]:
        """A JSON-ready dict with `kind`; bytes are hex strings, tuples lists."""
        out: dict[str, object] = {"kind": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bytes | bytearray):
                value = bytes(value).hex()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


__all__ = ["Record"]
