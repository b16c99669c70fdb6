"""What a scenario's conditions mean, without I/O: a dotted path into a stats document and
a comparison.

    value = resolve(stats, "guests.0.offload.actions.drop")
    holds, text = check(stats, {"path": "...", "ge": 10})

Paths are keys and list indices joined by dots (`guests.0.queues.receiveq1.packets`);
a missing part is an error naming what was there, never a silent None.  Operators:
`equals` (any value), `ge`, `gt`, `le`, `lt` (numbers), `contains` (a substring of a
string, or an item of a list).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

OPERATORS = ("equals", "ge", "gt", "le", "lt", "contains")


class PathError(LookupError):
    """A path that does not lead anywhere in the document."""


def resolve(doc: Any, path: str) -> Any:
    """The value at a dotted path (see the module docstring)."""
    node = doc
    walked: list[str] = []
    for part in path.split("."):
        if isinstance(node, Mapping):
            if part not in node:
                have = ", ".join(sorted(map(str, node))) or "nothing"
                raise PathError(f"{'.'.join(walked) or 'the document'} has no {part!r} "
                                f"(it has {have})")
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(node) <= index < len(node):
                raise PathError(f"{'.'.join(walked)} has {len(node)} item(s), no {index}")
            node = node[index]
        else:
            raise PathError(f"{'.'.join(walked) or 'the document'} is a "
                            f"{type(node).__name__}, it has no {part!r}")
        walked.append(part)
    return node


def compare(actual: Any, op: str, expected: Any) -> bool:
    """Whether `actual op expected` holds."""
    if op == "equals":
        return bool(actual == expected)
    if op == "contains":
        return expected in actual if isinstance(actual, str | list | dict) else False
    if not isinstance(actual, int | float) or isinstance(actual, bool):
        return False
    return bool({"ge": actual >= expected, "gt": actual > expected, "le": actual <= expected,
                 "lt": actual < expected}[op])


def check(doc: Any, condition: Mapping[str, Any]) -> tuple[bool, str]:
    """(holds, a line saying what was compared) for a condition of a `wait` or `expect`
    step; a path that leads nowhere does not hold and says why."""
    path = condition["path"]
    try:
        actual = resolve(doc, path)
    except PathError as exc:
        return False, f"{path}: {exc}"
    parts = []
    holds = True
    for op in OPERATORS:
        if op in condition:
            ok = compare(actual, op, condition[op])
            holds = holds and ok
            parts.append(f"{op} {condition[op]!r}: {'yes' if ok else 'no'}")
    return holds, f"{path} is {actual!r} ({'; '.join(parts)})"


__all__ = ["OPERATORS", "PathError", "check", "compare", "resolve"]
