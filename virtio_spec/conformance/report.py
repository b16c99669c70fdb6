"""Run a selection of clauses and report pass / fail / not applicable / error per clause.

    report = run(select(side="device"), device=make_device, device_name="host.Device")
    print(report.table())
    json.dumps(report.to_json())

Verdicts:

* `pass`: the check ran and the implementation honoured the clause;
* `fail`: the check raised AssertionError (the detail cites the clause);
* `n/a`: the clause does not apply (`NotApplicable`: a feature not offered or not
  negotiated, an operation the adapter cannot perform);
* `error`: anything else (the device would not let the check reach the state it needed,
  the adapter broke): neither a pass nor a proven violation.

No clock is read: reports of the same implementation are byte-identical.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from .adapter import NotApplicable
from .registry import SPEC, Clause

Verdict = Literal["pass", "fail", "n/a", "error"]
VERDICTS: Final[tuple[Verdict, ...]] = ("pass", "fail", "n/a", "error")
#: Version of the JSON layout below.
REPORT_VERSION: Final = 1


@dataclass(frozen=True)
class Result:
    """One clause run against one implementation."""

    clause: Clause
    target: str
    verdict: Verdict
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        c = self.clause
        return {
            "key": c.key, "side": c.side, "id": c.id, "n": c.n, "chapter": c.chapter,
            "level": c.level, "origin": c.origin, "title": c.title, "must": c.must,
            "check": c.function, "applies_when": c.applicability(), "target": self.target,
            "verdict": self.verdict, "detail": self.detail,
        }


def run_clause(clause: Clause, factory: Callable[[], Any], target: str = "") -> Result:
    """Run one clause's check with `factory`; never raises for the implementation's sake."""
    try:
        clause.check(factory)
    except NotApplicable as err:
        return Result(clause, target, "n/a", str(err))
    except AssertionError as err:
        return Result(clause, target, "fail", str(err) or "assertion failed")
    except Exception as err:
        return Result(clause, target, "error", f"{type(err).__name__}: {err}")
    return Result(clause, target, "pass")


@dataclass
class Report:
    """Results in run order."""

    results: list[Result]

    def counts(self, *, spec_only: bool = False) -> dict[str, int]:
        """How many results of each verdict (optionally only virtio spec clauses)."""
        got = Counter(r.verdict for r in self.results
                      if not spec_only or r.clause.origin == SPEC)
        return {v: got.get(v, 0) for v in VERDICTS}

    @property
    def ok(self) -> bool:
        """No failure and no error."""
        return not any(r.verdict in ("fail", "error") for r in self.results)

    def by_chapter(self) -> dict[str, dict[str, int]]:
        """{"device 2": {"pass": 9, ...}, ...}."""
        out: dict[str, Counter[str]] = {}
        for r in self.results:
            out.setdefault(f"{r.clause.side} {r.clause.chapter}", Counter())[r.verdict] += 1
        return {k: {v: c.get(v, 0) for v in VERDICTS} for k, c in sorted(out.items())}

    def failures(self) -> list[Result]:
        return [r for r in self.results if r.verdict in ("fail", "error")]

    def table(self, *, width: int = 72) -> str:
        """A fixed-width text table, one row per result, then the totals."""
        rows = [("target", "clause", "lvl", "title", "verdict")]
        for r in self.results:
            c = r.clause
            ref = (f"\u00a7{c.id}" if c.origin == SPEC else f"offload \u00a7{c.id}") + \
                (f" ({c.n})" if c.n > 1 else "")
            rows.append((r.target, f"{c.side} {ref}", c.level, c.title, r.verdict))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        widths[3] = min(widths[3], 48)
        lines = []
        for i, row in enumerate(rows):
            cells = [cell[:w].ljust(w) for cell, w in zip(row, widths, strict=True)]
            lines.append("  ".join(cells).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        details = [f"  {r.target} {r.clause.key}: {r.verdict}: {r.detail}"
                   for r in self.results if r.verdict in ("fail", "error")]
        if details:
            lines += ["", "failures:"] + [d if len(d) <= width * 3 else d[:width * 3] + "..."
                                          for d in details]
        counts = self.counts()
        spec = self.counts(spec_only=True)
        lines += ["", "total: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
                  + f" ({sum(spec.values())} results on virtio 1.3 clauses, "
                  f"{sum(counts.values()) - sum(spec.values())} on the vxdp extension, "
                  f"docs/offload-spec.md)"]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: version, spec, totals, per chapter, every result."""
        return {
            "version": REPORT_VERSION,
            "spec": SPEC,
            "ok": self.ok,
            "totals": self.counts(),
            "spec_totals": self.counts(spec_only=True),
            "chapters": self.by_chapter(),
            "results": [r.to_json() for r in self.results],
        }


def run(clauses: Iterable[Clause], *, device: Callable[[], Any] | None = None,
        driver: Callable[[], Any] | None = None, device_name: str = "device",
        driver_name: str = "driver") -> Report:
    """Run device clauses with `device` and driver clauses with `driver`; clauses whose
    side has no factory are skipped (not reported)."""
    results = []
    for clause in clauses:
        factory, name = (device, device_name) if clause.side == "device" else (driver, driver_name)
        if factory is not None:
            results.append(run_clause(clause, factory, name))
    return Report(results)


def merge(reports: Iterable[Report]) -> Report:
    """One report of several runs (e.g. one per device profile)."""
    return Report([r for rep in reports for r in rep.results])


__all__ = ["REPORT_VERSION", "VERDICTS", "Report", "Result", "Verdict", "merge", "run",
           "run_clause"]
