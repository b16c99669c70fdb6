"""The pytest plugin (virtio_spec.pytest_plugin) run by pytest itself, through pytester.

Each inner session is what a user of the plugin writes: a conftest.py (or an option) naming
the device and driver factories, and one test taking `virtio_clause`.  Its outcomes are
held against the library's own report (`run_clause`) clause by clause: a pass passes, an
n/a is a skip giving the same reason, a MUST failure fails citing the clause, a SHOULD
failure passes with a VirtioShouldWarning.  The devices are our model and mutants of it
with one bug (test_conformance_mutants.BrokenDevice).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.virtio_spec.test_conformance_mutants import BrokenDevice
from virtio_spec.conformance import CLAUSES, Result, run_clause, select
from virtio_spec.pytest_plugin import WARNING_PATH
from vxdp.conformance_adapters import device_factory, driver_factory

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]

TEST_FILE = """
def test_virtio(virtio_clause):
    virtio_clause.check()
"""


class Mutant:
    """A DeviceFactory of BrokenDevice(profile, bug) that records being closed."""

    def __init__(self, bug: str, profile: str = "default",
                 unobservable: dict[str, str] | None = None) -> None:
        self.bug, self.profile = bug, profile
        self.unobservable = unobservable or {}
        self.closed = False

    def __call__(self) -> BrokenDevice:
        return BrokenDevice(self.profile, self.bug)

    def close(self) -> None:
        self.closed = True


#: Named by --virtio-device in the tests below (the inner session imports this module).
STICKY_STATUS = Mutant("device:2.1.2/2", unobservable={"device:6.2": "not on this bench"})
REFUSES_VERSION_1_ALONE = Mutant("device:2.2.2/4")


def outcomes(reprec: pytest.HookRecorder) -> dict[str, pytest.TestReport]:
    """{clause key: the report of its call (or of its setup when that skipped)}."""
    out = {}
    for rep in reprec.getreports("pytest_runtest_logreport"):
        if rep.when == "call" or (rep.when == "setup" and not rep.passed):
            out[rep.nodeid.split("[", 1)[1][:-1]] = rep
    return out


def skip_reason(rep: pytest.TestReport) -> str:
    assert rep.skipped and isinstance(rep.longrepr, tuple)
    return rep.longrepr[2]


def assert_matches_report(got: dict[str, pytest.TestReport], expected: dict[str, Result]
                          ) -> None:
    """Every clause's pytest outcome is the one its report verdict maps to."""
    assert got.keys() == expected.keys()
    for key, res in expected.items():
        rep = got[key]
        if res.verdict == "pass" or (res.verdict == "fail" and res.clause.level == "SHOULD"):
            assert rep.passed, (key, res.detail, rep.longreprtext)
        elif res.verdict == "n/a":
            assert skip_reason(rep) == f"Skipped: {key} not applicable: {res.detail}"
        else:
            assert res.verdict == "fail", (key, res.detail)
            assert rep.failed, (key, res.detail)
            assert res.detail in rep.longreprtext
            assert rep.longreprtext.startswith(res.clause.ref)
            assert res.clause.must in rep.longreprtext


def test_every_clause_is_a_test_against_our_models(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        from vxdp.conformance_adapters import device_factory, driver_factory

        def pytest_virtio_device_factory(config):
            return device_factory("packed")

        def pytest_virtio_driver_factory(config):
            return driver_factory()
    """)
    pytester.makepyfile(test_virtio=TEST_FILE)
    reprec = pytester.inline_run()
    got = outcomes(reprec)
    assert list(got) == list(CLAUSES)  # one test per registered clause, in order
    packed, driver = device_factory("packed"), driver_factory()
    expected = {c.key: run_clause(c, packed if c.side == "device" else driver)
                for c in CLAUSES.values()}
    assert_matches_report(got, expected)
    passed, skipped, failed = reprec.listoutcomes()
    assert not failed and passed and skipped  # the packed profile leaves some n/a


def test_a_must_violation_fails_citing_the_clause(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_virtio=TEST_FILE)
    STICKY_STATUS.closed = False
    reprec = pytester.inline_run(
        f"--virtio-device={__name__}:STICKY_STATUS")
    got = outcomes(reprec)
    assert STICKY_STATUS.closed  # the session closed the factory
    device = {c.key: run_clause(c, STICKY_STATUS) for c in select(side="device")
              if c.key not in STICKY_STATUS.unobservable}
    assert_matches_report({k: v for k, v in got.items() if k in device}, device)
    assert got["device:2.1.2/2"].failed and got["device:2.4.1"].failed
    assert "virtio 1.3 §2.1.2: " in got["device:2.1.2/2"].longreprtext
    # what the factory says it cannot observe is not run, and says why
    assert skip_reason(got["device:6.2"]) == "Skipped: device:6.2 not observable: not on this bench"
    # no driver factory given: the driver clauses skip and say how to give one
    for c in select(side="driver"):
        assert "no virtio driver factory: give --virtio-driver" in skip_reason(got[c.key])


def test_a_should_violation_is_a_warning_even_under_error_filters(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a process of its own, as a user runs it (in this one, pytest's assertion
    rewriting would warn that virtio_spec, the plugin's package, is already imported)."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # for --virtio-device to import this module
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(test_virtio=TEST_FILE)
    key = "device:2.2.2/4"
    assert CLAUSES[key].level == "SHOULD"
    args = (f"--virtio-device={__name__}:REFUSES_VERSION_1_ALONE", "-k", key, "-p",
            "no:cacheprovider")
    result = pytester.runpytest_subprocess(*args, "-W", "ignore::DeprecationWarning")
    result.assert_outcomes(passed=1, warnings=1)
    # one line, as `vxdp conformance` prints it (the checks are not assert-rewritten)
    result.stdout.fnmatch_lines([
        "test_virtio.py::test_virtio[[]device:2.2.2/4[]]",
        "  *test_virtio.py:2: VirtioShouldWarning: virtio 1.3 §2.2.2: FEATURES_OK refused for "
        f"the valid set VIRTIO_F_VERSION_1 (SHOULD: {CLAUSES[key].must})"])
    # asked for on the command line, a SHOULD failure is an error like any other warning
    strict = pytester.runpytest_subprocess(*args, "-W", f"error::{WARNING_PATH}")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["E *.VirtioShouldWarning: virtio 1.3 §2.2.2: *"])


def test_no_factory_or_a_bad_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_virtio=TEST_FILE)
    none = outcomes(pytester.inline_run("-k", "device:6.2"))
    assert skip_reason(none["device:6.2"]) == (
        "Skipped: no virtio device factory: give --virtio-device MODULE:NAME or implement "
        "pytest_virtio_device_factory(config) in conftest.py")
    for spec, error in [("no_such_module:make", "No module named 'no_such_module'"),
                        (f"{__name__}:nothing", "has no attribute 'nothing'"),
                        (f"{__name__}:TEST_FILE", "TEST_FILE is a str, not a callable"),
                        ("no_colon", "expected MODULE:NAME")]:
        rep = outcomes(pytester.inline_run(f"--virtio-device={spec}", "-k", "device:6.2"))
        assert rep["device:6.2"].failed
        assert f"--virtio-device {spec}: " in rep["device:6.2"].longreprtext
        assert error in rep["device:6.2"].longreprtext


def test_loaded_by_its_entry_point_and_inert_for_other_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    helped = pytester.runpytest("--help")
    helped.stdout.fnmatch_lines(["virtio conformance clauses (virtio_spec):",
                                 "  --virtio-device=MODULE:NAME"])
    assert "--virtio-device" not in pytester.runpytest("-p", "no:virtio_spec", "--help").stdout.str()
    pytester.runpytest("-v").assert_outcomes(passed=1)
