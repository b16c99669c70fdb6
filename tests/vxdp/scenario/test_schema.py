"""Scenario files: the schema, and errors that name the line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from vxdp.scenario import ScenarioError, load
from vxdp.scenario.schema import parse

GOOD = """\
name: small
hosts:
  h1: {profile: host, guests: 2}
guests:
  g0: {host: h1}
  g1: {host: h1, mode: driver}
steps:
  - sleep: 0.1
  - at: 1
    traffic: {host: h1, guest: g1, count: 10}
  - wait: {node: g0, path: stack.packets, ge: 0, timeout: 2}
"""


MOVES = """\
name: moves
hosts:
  h1: {guests: 2}
  h2: {}
guests: {g0: {host: h1}, g1: {host: h1}}
steps:
  - sleep: 0.1
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def test_a_good_file_loads_with_slots_and_step_lines(tmp_path: Path) -> None:
    doc = load(write(tmp_path, GOOD))
    assert doc["guests"]["g0"]["slot"] == 0 and doc["guests"]["g1"]["slot"] == 1
    assert doc["step_lines"] == [8, 9, 11]
    assert doc["source"].endswith("s.yaml")


@pytest.mark.parametrize("text,where,message", [
    ("name: x\nhosts: {h1: {}}\nsteps:\n  - sleep: [1\n", ":5:", "not YAML"),
    ("", ":1:1:", "the file is empty"),
    ("name: x\nhosts: {h1: {}}\nsteps:\n  - link: {guest: h1, up: 'yes'}\n", ":4:",
     "at steps[0].link.up: 'yes' is not of type 'boolean'"),
    ("name: x\nhosts: {h1: {profile: nfp}}\nsteps: [{sleep: 1}]\n", ":2:",
     "at hosts.h1.profile: 'nfp' is not one of"),
    ("name: x\nhosts: {h1: {}}\nsteps:\n  - jump: 3\n", ":4:", "jump"),
    ("name: x\nhosts: {h1: {}}\nsteps:\n  - sleep: 1\n    kill: h1\n", ":4:",
     "is valid under each of"),
    ("name: x\nhosts: {h1: {}}\nguests: {g0: {host: h2}}\nsteps: [{sleep: 1}]\n", ":3:",
     "guest 'g0': no host 'h2'"),
    ("name: x\nhosts: {h1: {}}\nguests:\n  a: {host: h1}\n  b: {host: h1}\n"
     "steps: [{sleep: 1}]\n", ":5:", "serves 1 guest socket(s)"),
    ("name: x\nhosts: {h1: {}}\nsteps:\n  - kill: h9\n", ":4:",
     "nothing is called 'h9'"),
    ("name: x\nhosts: {h1: {xdp: nope.c}}\nsteps: [{sleep: 1}]\n", ":2:",
     "program 'nope.c': no such file"),
    ("name: x\nhosts: {h1: {}}\nsteps:\n  - expect: {node: h1, path: a}\n", ":4:",
     "a condition needs at least one of equals, ge, gt, le, lt, contains"),
    ("name: x\nhosts:\n  n: {kind: smartnic, profile: host}\nsteps: [{sleep: 1}]\n", ":3:",
     "a smartnic has its own profile and engine"),
    (MOVES + "  - passthrough: {guest: g0, nic: h2}\n", ":8:",
     "'h2' is not a smartnic"),
    (MOVES + "  - migrate: {guest: g0, to: g0}\n", ":8:",
     "'g0' is a guest; a guest moves to a host or a smartnic"),
    (MOVES + "  - migrate: {guest: g0, to: h2}\n  - migrate: {guest: g1, to: h2}\n", ":9:",
     "'h2' has no free socket (it serves 1; guests on it: g0)"),
    (MOVES + "  - migrate: {guest: g0, to: h2, slot: 3}\n", ":8:",
     "'h2' has no free socket 3"),
])
def test_mistakes_name_their_line(tmp_path: Path, text: str, where: str,
                                  message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}{where}"), str(info.value)
    assert message in str(info.value)


def test_moves_take_a_free_socket_and_leave_theirs(tmp_path: Path) -> None:
    """A migrate step without a slot takes the destination's first free socket; a
    refused one moves nothing; a guest that moved on leaves its socket free."""
    doc = load(write(tmp_path, MOVES + "  - migrate: {guest: g0, to: h2, outcome: refused}\n"
                                       "  - migrate: {guest: g1, to: h2}\n"
                                       "  - migrate: {guest: g1, to: h1}\n"
                                       "  - migrate: {guest: g0, to: h2}\n"))
    slots = [s["migrate"]["slot"] for s in doc["steps"][1:]]
    assert slots == [0, 0, 1, 0]


def test_yaml_on_is_not_a_key_we_use() -> None:
    """YAML 1.1 reads a bare `on` as true: conditions name their target with `node`."""
    with pytest.raises(ScenarioError, match=r"<scenario>:4:14: key 'on' is not a string"):
        parse("name: x\nhosts: {h1: {}}\nsteps:\n  - expect: {on: h1, path: a, equals: 1}\n")


def test_every_shipped_scenario_loads() -> None:
    root = Path(__file__).resolve().parents[3] / "scenarios"
    files = sorted(root.glob("*.yaml"))
    assert len(files) >= 8
    for path in files:
        doc = load(path)
        assert doc["description"].strip(), path
