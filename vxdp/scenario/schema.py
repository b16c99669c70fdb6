"""The scenario file format: a JSON Schema, and a loader that names the line of a mistake.

    scenario = load("scenarios/offload-basics.yaml")     # -> a validated plain dict

A scenario is YAML: the hosts to launch, the guests that connect to them, and the steps
that drive them (docs/scenarios.md).  `load` parses with PyYAML keeping every node's
position, validates against `SCHEMA` (jsonschema, Draft 2020-12) and reports the first
error as `FILE:LINE:COL: at steps[3].link.up: 'yes' is not of type 'boolean'`.  Checks
the schema cannot express (a guest naming a host that does not exist, two guests on one
socket, a program file that is not there) are made here too, with the same form.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import jsonschema
import yaml

from vxdp.errors import UsageError

_NAME = {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"}
_SECONDS = {"type": "number", "exclusiveMinimum": 0, "maximum": 600}
_HEX = {"type": "string", "pattern": r"^(0x)?[0-9A-Fa-f ]+$"}
_MAP = {"oneOf": [{"type": "string", "minLength": 1}, {"type": "integer", "minimum": 1}]}
_OPS = ("equals", "ge", "gt", "le", "lt", "contains")
_CONDITION: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "node": _NAME,
        "path": {"type": "string", "minLength": 1},
        **{op: {} for op in _OPS},
        "timeout": _SECONDS,
    },
    "required": ["node", "path"],
    "anyOf": [{"required": [op]} for op in _OPS],
    "x-message": f"a condition needs at least one of {', '.join(_OPS)}",
    "additionalProperties": False,
}
_PROGRAM = {"type": "string", "pattern": r"\.(c|o)$"}

#: Every step is a mapping with exactly one of these keys (and optionally `at`, `name`).
STEPS: Final[dict[str, Any]] = {
    "sleep": _SECONDS,
    "wait": _CONDITION,
    "expect": {**_CONDITION, "properties": {k: v for k, v in _CONDITION["properties"].items()
                                             if k != "timeout"}},
    "expect_map": {
        "type": "object",
        "properties": {"node": _NAME, "map": _MAP, "key": _HEX, "value": _HEX,
                       "absent": {"const": True}},
        "required": ["node", "map", "key"],
        "oneOf": [{"required": ["value"]}, {"required": ["absent"]}],
        "additionalProperties": False,
    },
    "traffic": {
        "type": "object",
        "properties": {"host": _NAME, "guest": _NAME,
                       "count": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                       "seed": {"type": "integer", "minimum": 0},
                       "size": {"type": "integer", "minimum": 60, "maximum": 9000},
                       "flows": {"type": "integer", "minimum": 1, "maximum": 65536},
                       "mix": {"type": "string"}},
        "required": ["host", "count"],
        "additionalProperties": False,
    },
    "map_update": {
        "type": "object",
        "properties": {"node": _NAME, "map": _MAP, "key": _HEX, "value": _HEX,
                       "flags": {"enum": ["any", "noexist", "exist"]}},
        "required": ["node", "map", "key", "value"],
        "additionalProperties": False,
    },
    "map_delete": {
        "type": "object",
        "properties": {"node": _NAME, "map": _MAP, "key": _HEX},
        "required": ["node", "map", "key"],
        "additionalProperties": False,
    },
    "attach": {
        "type": "object",
        "properties": {"node": _NAME, "xdp": _PROGRAM, "section": {"type": "string"},
                       "program": {"type": "string"},
                       "mode": {"enum": ["driver", "offload", "auto"]},
                       "refused": {"type": "boolean"}},
        "required": ["node", "xdp"],
        "additionalProperties": False,
    },
    "detach": {"type": "object", "properties": {"node": _NAME}, "required": ["node"],
               "additionalProperties": False},
    "link": {"type": "object", "properties": {"guest": _NAME, "up": {"type": "boolean"}},
             "required": ["guest", "up"], "additionalProperties": False},
    "migrate": {
        "type": "object",
        "properties": {"guest": _NAME, "to": _NAME,
                       "slot": {"type": "integer", "minimum": 0, "maximum": 7},
                       "policy": {"enum": ["refuse", "fallback", "reoffload"]},
                       "outcome": {"enum": ["migrated", "fallback", "reoffloaded",
                                            "refused"]}},
        "required": ["guest", "to"],
        "additionalProperties": False,
    },
    "passthrough": {
        "type": "object",
        "properties": {"guest": _NAME, "nic": _NAME,
                       "slot": {"type": "integer", "minimum": 0, "maximum": 7},
                       "placement": {"enum": ["offloaded", "driver", "refused"]}},
        "required": ["guest", "nic"],
        "additionalProperties": False,
    },
    "kill": _NAME,
    "stop": _NAME,
    "start": _NAME,
}

SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "vxdp scenario",
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "timeout": _SECONDS,
        "hosts": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": _NAME,
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "kind": {"enum": ["host", "smartnic"]},
                    "profile": {"enum": ["default", "packed", "minimal", "rfc2019", "host",
                                         "smartnic"]},
                    "guests": {"type": "integer", "minimum": 1, "maximum": 8},
                    "datapath": {"enum": ["c", "python"]},
                    "engine": {"enum": ["interp", "jit"]},
                    "xdp": _PROGRAM,
                    "section": {"type": "string"},
                    "program": {"type": "string"},
                },
                "if": {"properties": {"kind": {"const": "smartnic"}}, "required": ["kind"]},
                "then": {"not": {"anyOf": [{"required": [k]} for k in
                                           ("profile", "engine", "xdp", "section", "program")]},
                         "x-message": "a smartnic has its own profile and engine and runs "
                                      "no program of its own: profile, engine, xdp, "
                                      "section and program are for hosts"},
                "additionalProperties": False,
            },
        },
        "guests": {
            "type": "object",
            "propertyNames": _NAME,
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "host": _NAME,
                    "slot": {"type": "integer", "minimum": 0, "maximum": 7},
                    "xdp": _PROGRAM,
                    "section": {"type": "string"},
                    "program": {"type": "string"},
                    "mode": {"enum": ["driver", "offload", "auto"]},
                    "datapath": {"enum": ["c", "python"]},
                },
                "required": ["host"],
                "additionalProperties": False,
            },
        },
        "steps": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {"at": {"type": "number", "minimum": 0, "maximum": 600},
                               "name": {"type": "string"}, **STEPS},
                "oneOf": [{"required": [kind]} for kind in STEPS],
                "additionalProperties": False,
            },
        },
    },
    "required": ["name", "hosts", "steps"],
    "additionalProperties": False,
}

_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


class ScenarioError(UsageError):
    """A scenario file that cannot be used; the message starts `FILE:LINE:COL:`."""


def _node_at(node: yaml.Node, path: Sequence[str | int]) -> yaml.Node:
    """The deepest node of `path` that exists (where a missing key would go)."""
    for part in path:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if k.value == part), None)
            if found is None:
                found = next((k for k, _ in node.value if k.value == part), None)
            if found is None:
                return node
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def _where(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the top level"


def _located(source: str, node: yaml.Node, message: str) -> ScenarioError:
    mark = node.start_mark
    return ScenarioError(f"{source}:{mark.line + 1}:{mark.column + 1}: {message}")


def _best(errors: list[jsonschema.ValidationError]) -> tuple[list[str | int], str]:
    """The most telling error (the deepest, for a oneOf its closest branch): its path and
    message; a schema's own `x-message` wins over the generic one."""
    error = jsonschema.exceptions.best_match(errors)
    own = error.schema.get("x-message") if isinstance(error.schema, dict) else None
    while error.context and own is None:
        error = jsonschema.exceptions.best_match(error.context)
        if isinstance(error.parent, jsonschema.ValidationError) and isinstance(
                error.parent.schema, dict):
            own = error.parent.schema.get("x-message")
    return list(error.absolute_path), own or error.message


def _check_keys(source: str, node: yaml.Node) -> None:
    """Every mapping key is a string: YAML 1.1 reads a bare on, off, yes or no as a
    boolean, the classic trap (hence `node:`, not `on:`, in conditions)."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.tag != "tag:yaml.org,2002:str":
                raise _located(source, key, f"key {key.value!r} is not a string (YAML "
                                            f"reads a bare on/off/yes/no as a boolean; "
                                            f"conditions name what they look at with "
                                            f"`node:`)")
            _check_keys(source, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_keys(source, item)


def parse(text: str, source: str = "<scenario>") -> tuple[dict[str, Any], yaml.Node]:
    """Parse and validate scenario YAML; the document and its node tree (positions)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"{where}: not YAML: {problem}") from None
    if node is None:
        raise ScenarioError(f"{source}:1:1: the file is empty")
    _check_keys(source, node)
    errors = list(_VALIDATOR.iter_errors(doc))
    if errors:
        path, message = _best(errors)
        raise _located(source, _node_at(node, path), f"at {_where(path)}: {message}")
    return doc, node


def load(path: str | Path) -> dict[str, Any]:
    """A scenario file, validated (schema and cross-references); program paths made
    absolute against the file's folder."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    doc, node = parse(text, str(path))
    hosts = doc["hosts"]
    guests = doc.get("guests") or {}
    taken: dict[tuple[str, int], str] = {}
    for name, g in guests.items():
        at = ["guests", name]
        if name in hosts:
            raise _located(str(path), _node_at(node, at), f"guest {name!r} has the name of a "
                                                          f"host")
        host = hosts.get(g["host"])
        if host is None:
            raise _located(str(path), _node_at(node, [*at, "host"]),
                           f"guest {name!r}: no host {g['host']!r} (hosts: "
                           f"{', '.join(hosts)})")
        slots = int(host.get("guests", 1))
        slot = g.get("slot")
        if slot is None:
            slot = next((s for s in range(slots) if (g["host"], s) not in taken), slots)
        if slot >= slots:
            raise _located(str(path), _node_at(node, at),
                           f"guest {name!r}: host {g['host']!r} serves {slots} guest "
                           f"socket(s), all taken or fewer than slot {slot}")
        if (g["host"], slot) in taken:
            raise _located(str(path), _node_at(node, [*at, "slot"]),
                           f"guest {name!r}: slot {slot} of {g['host']!r} is "
                           f"{taken[(g['host'], slot)]!r}'s")
        taken[(g["host"], slot)] = name
        g["slot"] = slot
    names = set(hosts) | set(guests)
    for i, step in enumerate(doc["steps"]):
        kind = next(k for k in step if k in STEPS)
        args = step[kind]
        refs = [args] if isinstance(args, str) and kind != "sleep" else [
            args.get(k) for k in ("node", "host", "guest", "to", "nic")
            if isinstance(args, dict)]
        for ref in refs:
            if ref is not None and ref not in names:
                raise _located(str(path), _node_at(node, ["steps", i, kind]),
                               f"step {i} ({kind}): nothing is called {ref!r} (hosts and "
                               f"guests: {', '.join(sorted(names))})")
    for where, spec in [*(((["hosts", n]), h) for n, h in hosts.items()),
                        *(((["guests", n]), g) for n, g in guests.items()),
                        *(((["steps", i, "attach"]), s["attach"])
                          for i, s in enumerate(doc["steps"]) if "attach" in s)]:
        if "xdp" in spec:
            program = (path.parent / spec["xdp"]).resolve()
            if not program.is_file():
                raise _located(str(path), _node_at(node, [*where, "xdp"]),
                               f"program {spec['xdp']!r}: no such file ({program})")
            spec["xdp"] = str(program)
    for i, step in enumerate(doc["steps"]):  # where guests move to: a host, a free slot
        kind = next(k for k in step if k in STEPS)
        if kind not in ("migrate", "passthrough"):
            continue
        args = step[kind]
        target = args["to" if kind == "migrate" else "nic"]
        if target not in hosts:
            raise _located(str(path), _node_at(node, ["steps", i, kind]),
                           f"step {i} ({kind}): {target!r} is a guest; a guest moves to a "
                           f"host or a smartnic")
        is_nic = hosts[target].get("kind") == "smartnic"
        if kind == "passthrough" and not is_nic:
            raise _located(str(path), _node_at(node, ["steps", i, kind, "nic"]),
                           f"step {i} (passthrough): {target!r} is not a smartnic (give it "
                           f"kind: smartnic, or use a migrate step)")
        slots = int(hosts[target].get("guests", 1))
        free = [s for s in range(slots) if (target, s) not in taken]
        slot = args.get("slot", free[0] if free else None)
        if slot is None or slot >= slots or (target, slot) in taken:
            raise _located(str(path), _node_at(node, ["steps", i, kind]),
                           f"step {i} ({kind}): {target!r} has no free socket"
                           + (f" {slot}" if slot is not None else "")
                           + f" (it serves {slots}; guests on it: "
                           f"{', '.join(n for (h, _), n in taken.items() if h == target) or 'none'})")
        args["slot"] = slot
        if args.get("outcome") != "refused":  # the guest is there for the steps after
            guest = guests.get(args["guest"])
            if guest is None:
                raise _located(str(path), _node_at(node, ["steps", i, kind, "guest"]),
                               f"step {i} ({kind}): {args['guest']!r} is not a guest")
            taken = {k: v for k, v in taken.items() if v != args["guest"]}
            taken[(target, slot)] = args["guest"]
    doc.setdefault("guests", guests)
    doc["source"] = str(path)
    doc["step_lines"] = [_node_at(node, ["steps", i]).start_mark.line + 1
                         for i in range(len(doc["steps"]))]
    return doc


__all__ = ["SCHEMA", "STEPS", "ScenarioError", "load", "parse"]
