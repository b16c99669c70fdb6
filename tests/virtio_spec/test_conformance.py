"""The conformance library against our models (host.Device, guest.Driver) and itself.

Every device clause runs on every device profile; every driver clause on guest.Driver and
on the library's own reference driver.  Violations our models still have are listed in
KNOWN_VIOLATIONS and marked xfail(strict): the day a model is fixed, the test says so.
That each check can fail at all is shown in test_conformance_mutants.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from virtio_spec.conformance import (
    CLAUSES,
    NotApplicable,
    RecordingDevice,
    ReferenceDriver,
    merge,
    run,
    run_clause,
    select,
)
from virtio_spec.conformance.registry import SPEC, VXDP
from virtio_spec.features import VirtioFeature, mask_of
from vxdp.cli import main
from vxdp.conformance_adapters import DEVICE_PROFILES, device_factory, driver_factory

DEVICE = [c.key for c in select(side="device")]
DRIVER = [c.key for c in select(side="driver")]

#: Violations found in our models, reported to their owner; strict xfail keeps this honest.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {
}


def _verdict(target: str, key: str, factory: object) -> None:
    result = run_clause(CLAUSES[key], factory)  # type: ignore[arg-type]
    known = KNOWN_VIOLATIONS.get((target, key))
    if known:
        assert result.verdict == "fail", f"{key} now {result.verdict}: update KNOWN_VIOLATIONS"
        pytest.xfail(known)
    assert result.verdict in ("pass", "n/a"), f"{target} {key}: {result.verdict}: {result.detail}"


# ----------------------------------------------------------------------------------------
# the registry


def test_at_least_forty_spec_musts_across_both_sides_and_chapters() -> None:
    musts = [c for c in CLAUSES.values() if c.origin == SPEC and c.level == "MUST"]
    assert len(musts) >= 40
    chapters = {(c.side, c.chapter) for c in musts}
    for side in ("device", "driver"):
        for chapter in ("2", "5.1", "6"):
            assert (side, chapter) in chapters
    assert ("driver", "3") in chapters
    assert all(c.chapter == "vxdp" for c in CLAUSES.values() if c.origin == VXDP)


@pytest.mark.parametrize("key", list(CLAUSES))
def test_every_check_cites_its_clause(key: str) -> None:
    clause = CLAUSES[key]
    doc = clause.check.__doc__ or ""
    assert clause.must and clause.title
    if clause.origin == SPEC:
        assert f"\u00a7{clause.id}" in doc, doc
        assert re.fullmatch(r"\d+(\.\d+)*", clause.id)
        assert ("MUST" if clause.level == "MUST" else "SHOULD") in doc
    else:
        # the extension's clauses cite its written spec, where the same number stands
        assert f"docs/offload-spec.md \u00a7{clause.id}" in doc, doc
        assert "MUST" in doc and f"**[{clause.id}]**" in OFFLOAD_SPEC_TEXT
    assert clause.check.__name__.startswith("check_")


OFFLOAD_SPEC_TEXT = (Path(__file__).resolve().parents[2] / "docs" / "offload-spec.md"
                     ).read_text()


def test_the_offload_spec_is_checked_clause_by_clause() -> None:
    """At least 15 of the extension's device MUSTs have a check; every device requirement
    the spec numbers is one of them."""
    ours = {c.id for c in CLAUSES.values() if c.origin == VXDP and c.side == "device"}
    assert len(ours) >= 15
    device_musts = set()
    for section in re.split(r"\n(?=\*\*(?:Device|Driver) requirements|### )",
                            OFFLOAD_SPEC_TEXT):
        if section.startswith("**Device requirements") or "Device requirements:" in section:
            device_musts |= set(re.findall(r"\*\*\[(\d+(?:\.\d+)+)\]\*\*", section))
    assert device_musts and device_musts <= ours, sorted(device_musts - ours)


def test_library_imports_neither_pytest_nor_trio_nor_our_models() -> None:
    code = ("import sys, virtio_spec.conformance as c; "
            "bad = [m for m in ('pytest', 'trio', 'vxdp', 'guest', 'host') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_not_applicable_names_the_missing_feature() -> None:
    result = run_clause(CLAUSES["device:2.8.15"], device_factory("default"), "x")
    assert result.verdict == "n/a"
    assert "VIRTIO_F_RING_PACKED" in result.detail


def test_failure_message_cites_the_clause() -> None:
    class NoVersion1:
        def __init__(self) -> None:
            self.inner = device_factory("default")()

        def read_device_features(self) -> int:
            return self.inner.read_device_features() & ~(1 << VirtioFeature.VIRTIO_F_VERSION_1)

        def close(self) -> None:
            pass

    with pytest.raises(AssertionError, match=r"virtio 1\.3 \u00a76\.2: "):
        CLAUSES["device:6.2"].check(NoVersion1)


# ----------------------------------------------------------------------------------------
# our models


@pytest.mark.parametrize("profile", DEVICE_PROFILES)
@pytest.mark.parametrize("key", DEVICE)
def test_host_device(profile: str, key: str) -> None:
    _verdict(f"host.Device({profile})", key, device_factory(profile))


@pytest.mark.parametrize("key", DRIVER)
def test_guest_driver(key: str) -> None:
    _verdict("guest.Driver", key, driver_factory())


@pytest.mark.parametrize("key", DRIVER)
def test_reference_driver(key: str) -> None:
    """The library's own driver passes the library's driver checks."""
    _verdict("ReferenceDriver", key, ReferenceDriver)


def test_clauses_exercised_on_our_models() -> None:
    """Most clauses really run (pass), not just skip, on the richest profiles."""
    report = merge([run(select(side="device"), device=device_factory(p), device_name=p)
                    for p in ("default", "packed", "host")]
                   + [run(select(side="driver"), driver=driver_factory())])
    passed = {r.clause.key for r in report.results if r.verdict == "pass"}
    spec_musts = {c.key for c in CLAUSES.values() if c.origin == SPEC and c.level == "MUST"}
    assert len(passed & spec_musts) >= 40


# ----------------------------------------------------------------------------------------
# the recording device and the report


def test_recording_device_logs_the_initialization() -> None:
    rec = RecordingDevice(mask_of([VirtioFeature.VIRTIO_F_VERSION_1]))
    ReferenceDriver().start(rec)
    kinds = [op.kind for op in rec.log]
    assert kinds[:2] == ["read_features", "write_status"]
    assert [op.args[0] for op in rec.ops("write_status")] == [0, 1, 3, 11, 15]
    assert rec.machine.queues_live


def test_recording_device_refusal_stops_a_driver() -> None:
    rec = RecordingDevice(mask_of([VirtioFeature.VIRTIO_F_VERSION_1]), refuse_features_ok=True)
    ReferenceDriver().start(rec)
    assert not rec.ops("setup_queue")
    assert rec.ops("write_status")[-1].args[0] & 0x80


def test_report_table_and_json() -> None:
    report = merge([run(select(side="device", chapter="6"), device=device_factory("default"),
                        device_name="dev"),
                    run(select(side="driver", chapter="3"), driver=driver_factory(),
                        driver_name="drv")])
    text = report.table()
    assert "dev" in text and "\u00a76.2" in text and "total:" in text
    data = json.loads(json.dumps(report.to_json()))
    assert data["spec"] == "virtio 1.3" and data["version"] == 1
    assert {r["verdict"] for r in data["results"]} <= {"pass", "n/a"}
    assert data["ok"] is True
    assert data["chapters"]["driver 3"]["pass"] == 5
    first = data["results"][0]
    assert {"key", "side", "chapter", "level", "must", "verdict", "detail"} <= first.keys()


def test_report_counts_errors_apart_from_failures() -> None:
    def broken() -> object:
        raise RuntimeError("adapter down")

    report = run(select(keys=["device:6.2"]), device=broken)
    assert report.results[0].verdict == "error"
    assert "adapter down" in report.results[0].detail
    assert not report.ok


def test_select_refuses_unknown_keys() -> None:
    with pytest.raises(KeyError, match=r"device:9\.9"):
        select(keys=["device:9.9"])


# ----------------------------------------------------------------------------------------
# the CLI


def test_cli_json_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["conformance", "--side", "device", "--profile", "minimal", "-j"])
    data = json.loads(capsys.readouterr().out)
    assert rc == (0 if data["ok"] else 1)
    assert data["ok"] is True
    assert all(r["target"] == "host.Device(minimal)" for r in data["results"])


def test_cli_fails_on_a_violation(capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Our guest.Driver passes 2.5.1 now; hand the CLI the mutant that reads every
    # config byte whatever was offered, and it must say so and exit 1.
    import vxdp.commands.conformance as cli
    from tests.virtio_spec.test_conformance_mutants import BrokenDriver
    monkeypatch.setattr(cli, "driver_factory", lambda: lambda: BrokenDriver("driver:2.5.1"))
    rc = main(["conformance", "--side", "driver", "--clause", "driver:2.5.1"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "fail" in out and "\u00a72.5.1" in out


def test_cli_unknown_clause_is_unusable_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--clause", "device:0.0"]) == 2
    assert "device:0.0" in capsys.readouterr().err
    assert main(["conformance", "--profile", "nosuch"]) == 2


def test_not_applicable_is_an_exception_checks_may_raise() -> None:
    assert issubclass(NotApplicable, Exception)
