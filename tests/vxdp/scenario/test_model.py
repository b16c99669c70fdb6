"""Conditions over stats documents: paths and comparisons."""

from __future__ import annotations

import pytest

from vxdp.scenario.model import PathError, check, compare, resolve

DOC = {"guests": [{"offload": {"state": "offloaded", "actions": {"drop": 5}},
                   "maps": []}], "reason": "EOPNOTSUPP: no", "wire": None}


def test_paths_walk_keys_and_indices() -> None:
    assert resolve(DOC, "guests.0.offload.actions.drop") == 5
    assert resolve(DOC, "guests.-1.offload.state") == "offloaded"
    with pytest.raises(PathError, match=r"guests.0.offload has no 'engine' \(it has actions"):
        resolve(DOC, "guests.0.offload.engine")
    with pytest.raises(PathError, match=r"guests has 1 item\(s\), no 3"):
        resolve(DOC, "guests.3")
    with pytest.raises(PathError, match="reason is a str, it has no 'x'"):
        resolve(DOC, "reason.x")


@pytest.mark.parametrize("actual,op,expected,holds", [
    (5, "equals", 5, True), (5, "ge", 5, True), (5, "gt", 5, False), (5, "le", 4, False),
    (5, "lt", 6, True), (None, "equals", None, True), ("EOPNOTSUPP: x", "contains", "EOPNOTSUPP", True),
    ([1, 2], "contains", 3, False), ("5", "ge", 1, False), (True, "ge", 0, False),
])
def test_comparisons(actual: object, op: str, expected: object, holds: bool) -> None:
    assert compare(actual, op, expected) is holds


def test_check_says_what_it_compared() -> None:
    assert check(DOC, {"path": "guests.0.offload.actions.drop", "ge": 1, "le": 5}) == (
        True, "guests.0.offload.actions.drop is 5 (ge 1: yes; le 5: yes)")
    holds, text = check(DOC, {"path": "nope", "equals": 1})
    assert not holds and "the document has no 'nope'" in text
