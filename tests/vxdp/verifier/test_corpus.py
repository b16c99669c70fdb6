"""The verifier corpus (corpus.yaml): our verdicts, the kernel's, and the safety rule.

One runner for every case.  Each case yields three checks:
* `test_our_verdict`: vxdp.bpf.verifier says what the file says (`ours`, else `kernel`),
  and a rejection names the expected reason;
* `test_kernel_verdict` (kernel): the live kernel still says what the file says, so the
  stored verdicts stay true where bpf() is permitted and the suite runs elsewhere;
* `test_schema`: the data file itself is well formed, and the corpus is as large and as
  varied as the issue asks.
The safety rule, no program the kernel rejects is accepted by us, is checked on the stored
verdicts (`test_never_accept_what_the_kernel_rejects`) and so on every run.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from vxdp.bpf.asm import assemble
from vxdp.bpf.clang import clang_unavailable, compile_c
from vxdp.bpf.elf import load_object
from vxdp.bpf.isa import encode
from vxdp.bpf.profiles import COMPLEXITY_LIMIT
from vxdp.bpf.program import MapSpec, MapType, Program
from vxdp.bpf.verifier import verify
from vxdp.offload_profiles import verifier_profile

HERE = Path(__file__).parent
DATA = HERE / "corpus.yaml"
VERDICTS = ("accept", "reject")

# The schema: key -> (type, required).  `ours` differing from `kernel` needs `why`.
SCHEMA: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "name": (str, True), "rule": (str, True), "kernel": (str, True), "asm": (str, False),
    "c": (str, False), "program": (str, False), "ours": (str, False), "why": (str, False),
    "reason": (str, False), "profile": (str, False), "privileged": (bool, False),
    "maps": (list, False), "slow": (bool, False), "limit": (int, False),
}
RULES = {"packet", "packet_meta", "ctx", "uninit_reg", "uninit_stack", "ptr_types", "unpriv",
         "cfg", "ptr_arith", "null_check", "map_value", "stack", "alignment", "var_offset",
         "helper_args", "helper_allow", "helper_pkt_change", "tail_call", "references",
         "loops", "pruning", "calls", "scalar_alu", "atomics"}
MAP_FIELDS = {"type", "key_size", "value_size", "max_entries"}
MAP_OPTIONAL = {"inner"}  # a map-in-map: the name of the map that is its inner template


def validate(doc: Any) -> list[str]:
    """Every schema violation of the corpus document (empty when valid)."""
    errs: list[str] = []
    if not isinstance(doc, dict) or set(doc) != {"maps", "cases"}:
        return ["top level must be a mapping with exactly `maps` and `cases`"]
    for name, m in doc["maps"].items():
        if not isinstance(m, dict) or not MAP_FIELDS <= set(m) <= MAP_FIELDS | MAP_OPTIONAL \
                or m["type"] not in MapType.__members__ or m.get("inner", name) not in doc["maps"]:
            errs.append(f"map {name}: needs {sorted(MAP_FIELDS)} with a known type")
    seen: set[str] = set()
    for i, case in enumerate(doc["cases"]):
        where = f"case {i} ({case.get('name', '?')})"
        for key, value in case.items():
            if key not in SCHEMA:
                errs.append(f"{where}: unknown key {key!r}")
            elif not isinstance(value, SCHEMA[key][0]):
                errs.append(f"{where}: {key} must be {SCHEMA[key][0].__name__}")
        for key, (_, required) in SCHEMA.items():
            if required and key not in case:
                errs.append(f"{where}: missing {key}")
        if ("asm" in case) == ("c" in case):
            errs.append(f"{where}: exactly one of asm and c")
        if case.get("name") in seen:
            errs.append(f"{where}: duplicate name")
        seen.add(case.get("name", ""))
        if case.get("rule") not in RULES:
            errs.append(f"{where}: unknown rule {case.get('rule')!r}")
        for key in ("kernel", "ours"):
            if key in case and case[key] not in VERDICTS:
                errs.append(f"{where}: {key} must be accept or reject")
        ours = case.get("ours", case.get("kernel"))
        if "ours" in case and case["ours"] == case["kernel"]:
            errs.append(f"{where}: `ours` only where it differs from `kernel`")
        if ours != case.get("kernel") and not case.get("why"):
            errs.append(f"{where}: a verdict differing from the kernel's needs `why`")
        if ours == "reject" and not case.get("reason"):
            errs.append(f"{where}: a rejection needs `reason`")
        for m in case.get("maps", []):
            if m not in doc["maps"]:
                errs.append(f"{where}: unknown map {m!r}")
    return errs


@cache
def corpus() -> dict[str, Any]:
    doc = yaml.safe_load(DATA.read_text())
    assert isinstance(doc, dict)
    return doc


def cases() -> list[Any]:
    out = []
    for case in corpus()["cases"]:
        marks = [pytest.mark.slow] if case.get("slow") else []
        if "c" in case:
            marks.append(pytest.mark.clang)
        out.append(pytest.param(case, id=case["name"], marks=marks))
    return out


def build(case: dict[str, Any]) -> Program:
    if "c" in case:
        reason = clang_unavailable()
        if reason:
            pytest.skip(reason)
        rel = case["c"]
        source = (HERE.parent / rel) if "/" in rel else (HERE / "c" / rel)
        obj = load_object(compile_c(source))
        name = case.get("program") or next(iter(obj.programs))
        return obj.programs[name]
    return Program(case["name"], "xdp", encode(assemble(case["asm"])),
                   tuple(map_spec(n) for n in case.get("maps", [])))


def map_spec(name: str) -> MapSpec:
    m = corpus()["maps"][name]
    return MapSpec(name, MapType[m["type"]], m["key_size"], m["value_size"], m["max_entries"],
                   inner=map_spec(m["inner"]) if "inner" in m else None)


def test_schema() -> None:
    doc = corpus()
    assert validate(doc) == []
    all_cases = doc["cases"]
    assert len(all_cases) >= 80
    assert sum(c["kernel"] == "reject" for c in all_cases) >= 35
    assert {c["rule"] for c in all_cases} == RULES, "every rule has at least one case"
    assert any("c" in c for c in all_cases) and any("asm" in c for c in all_cases)


def test_schema_catches_mistakes() -> None:
    bad = {"maps": {}, "cases": [
        {"name": "x", "rule": "packet", "kernel": "reject", "asm": "exit\n"},
        {"name": "x", "rule": "nope", "kernel": "maybe", "asm": "exit\n", "c": "a.c"},
        {"name": "y", "rule": "cfg", "kernel": "accept", "ours": "reject", "asm": "exit\n"}]}
    errs = "\n".join(validate(bad))
    for fragment in ("needs `reason`", "duplicate name", "unknown rule", "accept or reject",
                     "exactly one of asm and c", "needs `why`"):
        assert fragment in errs


def test_never_accept_what_the_kernel_rejects() -> None:
    for case in corpus()["cases"]:
        if case["kernel"] == "reject":
            assert case.get("ours", "reject") == "reject", case["name"]


@pytest.mark.parametrize("case", cases())
def test_our_verdict(case: dict[str, Any]) -> None:
    program = build(case)
    report = verify(program, profile=verifier_profile(case.get("profile")),
                    privileged=case.get("privileged", True),
                    complexity_limit=case.get("limit", COMPLEXITY_LIMIT))
    want = case.get("ours", case["kernel"])
    got = "accept" if report.accepted else "reject"
    assert got == want, f"{case['name']}: {report.errors}\n{report.log[-2000:]}"
    if not report.accepted:
        pc, message = report.errors[0]
        assert "internal verifier error" not in message, report.log
        assert case["reason"] in message, (pc, message)
        assert f"{pc}: (" in report.log or "insn" in message or pc == 0


@pytest.mark.kernel
@pytest.mark.parametrize("case", cases())
def test_kernel_verdict(case: dict[str, Any]) -> None:
    from vxdp.bpf.kernel import kernel_unavailable, verify_in_kernel
    reason = kernel_unavailable()
    if reason:
        pytest.skip(reason)
    program = build(case)
    ok, _ = verify_in_kernel(program, log_level=0)  # the log only to explain a mismatch
    if ("accept" if ok else "reject") != case["kernel"]:
        ok, log = verify_in_kernel(program)
        assert ("accept" if ok else "reject") == case["kernel"], log[-2000:]
