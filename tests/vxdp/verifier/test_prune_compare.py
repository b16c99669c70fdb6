"""Pruning compares a state as it is when nothing will keep it (analyzer._checkpoint).

At a prune point where no checkpoint is due and none is in progress, the walk compares
the current state with the complete checkpoints without making its clean copy first
(`prune.clean`: dead registers and stack slots of the innermost frame forgotten), since
`prune.subsumes` skips those itself.  These tests hold that shortcut to what it claims:
the answer is the one the clean copy gives, on every comparison the walk makes over the
corpus and fuzz programs, and the corpus cases written for it go through it (the verdicts
themselves, beside the kernel's, are in corpus.yaml: prune_compare_*).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fuzz.gen import MAPS, generate
from tests.vxdp.verifier.test_corpus import build, corpus
from vxdp.bpf.asm import assemble
from vxdp.bpf.clang import clang_unavailable
from vxdp.bpf.isa import encode
from vxdp.bpf.profiles import COMPLEXITY_LIMIT
from vxdp.bpf.program import Program
from vxdp.bpf.verifier import BUILD, prune, verify
from vxdp.bpf.verifier.state import State

# Monkeypatched module functions are seen by Python callers only: under the compiled
# build these run in a child process on the Python modules (test_build.py).
pytestmark = pytest.mark.skipif(BUILD != "python", reason="instruments prune.* by "
                                "monkeypatching, which compiled callers never see; "
                                "test_build.py runs this file on the Python build")


class Recorder:
    """Wraps prune.subsumes: every comparison is made twice, with the state the walk
    passed and with its clean copy, and the answers must agree."""

    def __init__(self) -> None:
        self.cleaned: set[int] = set()  # ids of the states prune.clean made
        self.raw: list[bool] = []  # answers of the comparisons made without a copy
        self.compared = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        clean, subsumes = prune.clean, prune.subsumes

        def recording_clean(state: State, *args: Any) -> State:
            out = clean(state, *args)
            self.cleaned.add(id(out))
            return out

        def checked(old: State, cur: State, live: frozenset[int], uninit_ok: bool = True,
                    live_slots: int = -1, *rest: Any) -> bool:
            got = subsumes(old, cur, live, uninit_ok, live_slots, *rest)
            want = subsumes(old, clean(cur, live, live_slots), live, uninit_ok, live_slots,
                            *rest)
            assert got == want, "a state and its clean copy compare differently"
            self.compared += 1
            if id(cur) not in self.cleaned:
                self.raw.append(got)
            return got

        monkeypatch.setattr(prune, "clean", recording_clean)
        monkeypatch.setattr(prune, "subsumes", checked)


def _cases() -> Iterator[dict[str, Any]]:
    for case in corpus()["cases"]:
        if not case.get("slow") and ("asm" in case or not clang_unavailable()):
            yield case


def test_raw_compare_agrees_with_clean_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder()
    rec.install(monkeypatch)
    for case in _cases():
        verify(build(case), privileged=case.get("privileged", True),
               complexity_limit=case.get("limit", COMPLEXITY_LIMIT))
    for seed in range(150):
        program = Program(f"fuzz{seed}", "xdp", encode(assemble(generate(seed))), MAPS)
        verify(program)
        verify(program, privileged=False)
    assert rec.compared > 100 and len(rec.raw) > 50  # the shortcut was exercised


@pytest.mark.parametrize("name, accepted, pruned", [
    ("prune_compare_live_reg_differs", False, False),
    ("prune_compare_live_slot_differs", False, False),
    ("prune_compare_dead_reg_differs", True, True),
])
def test_corpus_cases_take_the_shortcut(monkeypatch: pytest.MonkeyPatch, name: str,
                                        accepted: bool, pruned: bool) -> None:
    """The unsafe value in a live register or slot is a miss there (the path goes on and
    is rejected); a difference in a dead register alone is a match."""
    case = next(c for c in corpus()["cases"] if c["name"] == name)
    rec = Recorder()
    rec.install(monkeypatch)
    report = verify(build(case))
    assert report.accepted is accepted
    assert rec.raw, "no comparison without a clean copy was made"
    assert rec.raw[-1] is pruned  # the join, where the second path arrives
