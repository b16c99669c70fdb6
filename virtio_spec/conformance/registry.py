"""The clause registry: every check, the clause it enforces, and when it applies.

A check is a plain function taking a factory for the thing under test (a
`DeviceFactory` or a `DriverFactory`); it returns None when the implementation honours
the clause, raises AssertionError naming the clause when it does not, and raises
`NotApplicable` when the clause does not apply.  `@device_clause(...)` and
`@driver_clause(...)` register a check as a `Clause` and wrap it so that:

* every device or driver the check makes through the factory is closed afterwards;
* an AssertionError's message starts with the clause reference (`virtio 1.3 §2.7.5.1`);
* device checks whose `requires` bits the device does not offer are not applicable
  (the wrapper reads the offer from the first device it makes, which the check then
  receives first from the factory);
* driver checks learn their clause through `current_clause()`, so the recording device
  can apply `requires` to the features the driver negotiated.

Clause ids are section numbers of virtio 1.3; `n` numbers the MUST sentences checked
within one section.  The offload's own rules are registered with `origin=VXDP`; their
ids are the bracketed numbers of its written spec, docs/offload-spec.md, and they are
not counted as virtio spec clauses.

PYTEST_DONT_REWRITE: a check's message is the same under pytest (the plugin) as under
`vxdp conformance`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from ..features import bits_of, feature_name
from .adapter import NotApplicable

Side = Literal["device", "driver"]
Level = Literal["MUST", "SHOULD"]
SPEC: Final = "virtio 1.3"
VXDP: Final = "vxdp extension"
#: Where the extension's clauses are written down.
OFFLOAD_SPEC: Final = "docs/offload-spec.md"

CheckFn = Callable[[Any], None]
_F = TypeVar("_F", bound=Callable[[Any], None])


@dataclass(frozen=True)
class Clause:
    """One normative sentence and the check that exercises it."""

    id: str
    n: int
    side: Side
    title: str
    must: str
    check: CheckFn = field(compare=False, repr=False)
    level: Level = "MUST"
    requires: frozenset[int] = frozenset()
    requires_any: frozenset[int] = frozenset()
    origin: str = SPEC

    @property
    def key(self) -> str:
        """Unique name: `device:2.7.5.1`, `device:2.7.5.1/2` for a second sentence."""
        return f"{self.side}:{self.id}" + (f"/{self.n}" if self.n > 1 else "")

    @property
    def ref(self) -> str:
        """How messages cite it: `virtio 1.3 §2.7.5.1` or `docs/offload-spec.md §4.5.2`."""
        if self.origin == SPEC:
            return f"{SPEC} \u00a7{self.id}"
        return f"{OFFLOAD_SPEC} \u00a7{self.id}"

    @property
    def chapter(self) -> str:
        """`2`, `3`, `5.1`, `6`, or `vxdp` for the offload's own rules."""
        if self.origin != SPEC:
            return "vxdp"
        head = self.id.split(".")
        return ".".join(head[:2]) if head[0] == "5" else head[0]

    @property
    def function(self) -> str:
        return getattr(self.check, "__name__", "?")

    def applies(self, features: int) -> bool:
        """True when `features` (offered for device checks, negotiated for driver
        checks) hold every bit of `requires` and one of `requires_any`."""
        bits = bits_of(features)
        if not self.requires <= bits:
            return False
        return not self.requires_any or bool(self.requires_any & bits)

    def applicability(self) -> str:
        """The `requires` in words, '' when the clause always applies."""
        parts = [feature_name(b) for b in sorted(self.requires)]
        if self.requires_any:
            parts.append(" or ".join(feature_name(b) for b in sorted(self.requires_any)))
        return " and ".join(parts)

    def not_applicable(self, features: int) -> NotApplicable:
        verb = "offered" if self.side == "device" else "negotiated"
        return NotApplicable(f"needs {self.applicability()} {verb}")


#: Every registered clause, by key, in registration order.
CLAUSES: dict[str, Clause] = {}

_CURRENT: ContextVar[Clause | None] = ContextVar("vxdp_conformance_clause", default=None)


def current_clause() -> Clause | None:
    """The clause whose check is running (None outside a check)."""
    return _CURRENT.get()


class _Tracked:
    """A factory that hands out `first` (if any) before calling `make`, and closes every
    object it handed out."""

    def __init__(self, make: Callable[[], Any], first: Any = None) -> None:
        self._make = make
        self._first = first
        self.made: list[Any] = [] if first is None else [first]

    def __call__(self) -> Any:
        if self._first is not None:
            obj, self._first = self._first, None
            return obj
        obj = self._make()
        self.made.append(obj)
        return obj

    def close_all(self) -> None:
        for obj in reversed(self.made):
            close = getattr(obj, "close", None)
            if close is not None:
                close()
        self.made.clear()


@contextmanager
def _running(clause: Clause) -> Iterator[None]:
    token = _CURRENT.set(clause)
    try:
        yield
    except AssertionError as err:
        text = str(err)
        if clause.ref not in text:
            raise AssertionError(f"{clause.ref}: {text}") from err
        raise
    finally:
        _CURRENT.reset(token)


def _register(clause: Clause) -> None:
    if clause.key in CLAUSES:
        raise ValueError(f"clause {clause.key} registered twice")
    CLAUSES[clause.key] = clause


def _clause(side: Side, id: str, title: str, must: str, *, n: int, level: Level,
            requires: Iterable[int], requires_any: Iterable[int],
            origin: str) -> Callable[[_F], _F]:
    def wrap(fn: _F) -> _F:
        @functools.wraps(fn)
        def check(make: Callable[[], Any]) -> None:
            clause = CLAUSES[key]
            with _running(clause):
                if side == "device":
                    first = make()
                    tracked = _Tracked(make, first)
                    try:
                        offered = first.read_device_features()
                        if not clause.applies(offered):
                            raise clause.not_applicable(offered)
                        fn(tracked)
                    finally:
                        tracked.close_all()
                else:
                    tracked = _Tracked(make)
                    try:
                        fn(tracked)
                    finally:
                        tracked.close_all()

        clause = Clause(id, n, side, title, must, check, level, frozenset(requires),
                        frozenset(requires_any), origin)
        key = clause.key
        _register(clause)
        return check  # type: ignore[return-value]

    return wrap


def device_clause(id: str, title: str, must: str, *, n: int = 1, level: Level = "MUST",
                  requires: Iterable[int] = (), requires_any: Iterable[int] = (),
                  origin: str = SPEC) -> Callable[[_F], _F]:
    """Register a device-side check of clause `id` (see the module docstring)."""
    return _clause("device", id, title, must, n=n, level=level, requires=requires,
                   requires_any=requires_any, origin=origin)


def driver_clause(id: str, title: str, must: str, *, n: int = 1, level: Level = "MUST",
                  requires: Iterable[int] = (), requires_any: Iterable[int] = (),
                  origin: str = SPEC) -> Callable[[_F], _F]:
    """Register a driver-side check of clause `id` (see the module docstring)."""
    return _clause("driver", id, title, must, n=n, level=level, requires=requires,
                   requires_any=requires_any, origin=origin)


def select(side: Side | None = None, chapter: str | None = None,
           keys: Iterable[str] | None = None) -> list[Clause]:
    """Registered clauses, optionally by side, chapter (`2`, `3`, `5.1`, `6`, `vxdp`)
    or exact keys, in registration order."""
    wanted = None if keys is None else set(keys)
    if wanted is not None:
        unknown = wanted - CLAUSES.keys()
        if unknown:
            raise KeyError(f"unknown clause(s): {', '.join(sorted(unknown))}")
    return [c for c in CLAUSES.values()
            if (side is None or c.side == side)
            and (chapter is None or c.chapter == chapter)
            and (wanted is None or c.key in wanted)]


__all__ = [
    "CLAUSES",
    "OFFLOAD_SPEC",
    "SPEC",
    "VXDP",
    "CheckFn",
    "Clause",
    "Level",
    "Side",
    "current_clause",
    "device_clause",
    "driver_clause",
    "select",
]
