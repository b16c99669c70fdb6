"""A pytest plugin: the conformance clauses as tests, one per clause, against your device.

Installed with the package (entry point `pytest11`, name `virtio_spec`; `-p no:virtio_spec`
turns it off) and inert until a test asks for `virtio_clause`.  Two steps:

    # conftest.py: where the thing under test comes from
    def pytest_virtio_device_factory(config):
        return lambda: MyDevice()     # a DeviceFactory: a fresh DeviceUnderTest per call

    # test_virtio.py: one test, run once per registered clause
    def test_virtio(virtio_clause):
        virtio_clause.check()

Instead of the hook, `--virtio-device MODULE:NAME` names the factory (any importable
callable returning a fresh device: a function, a class); `--virtio-driver` and the hook
`pytest_virtio_driver_factory` do the same for drivers.  A factory with a `close()` is
closed when the session ends.

`virtio_clause` is parametrized over `conformance.registry.CLAUSES` in registration order,
ids being the clause keys (`test_virtio[device:2.7.5.1]`, select with `-k`).  Outcomes:

* the check passes: the test passes;
* `NotApplicable` (a feature not offered, an operation the adapter cannot do): skipped,
  with the reason; so is a clause whose side has no factory, and one the factory lists
  in an optional `unobservable` mapping {clause key: why its adapter cannot see it},
  which is not run;
* an AssertionError from a SHOULD clause: the test passes with a `VirtioShouldWarning`
  (the plugin lets it through as a warning even under `filterwarnings = error`; make it
  an error with `-W error::virtio_spec.pytest_plugin.VirtioShouldWarning` or an ini line
  naming the class);
* an AssertionError from a MUST clause: the test fails, the message citing the clause
  (`virtio 1.3 §2.1.2: ...`) and quoting its MUST sentence;
* anything else (a transport that broke, an adapter bug): the exception propagates, as
  `conformance.report` counts it an error, not a verdict.

This module imports pytest and `virtio_spec` only; nothing else of `virtio_spec` imports
it, so the library stays free of test frameworks.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .conformance.registry import Clause

#: The warning class a failed SHOULD clause raises, as a filter names it.
WARNING_PATH = "virtio_spec.pytest_plugin.VirtioShouldWarning"
_SIDES = ("device", "driver")


class VirtioShouldWarning(UserWarning):
    """A SHOULD clause the implementation does not honour (a recommendation, not a MUST)."""


class _Hooks:
    """Hooks a conftest.py implements to supply what the clauses run against."""

    @pytest.hookspec(firstresult=True)
    def pytest_virtio_device_factory(self, config: pytest.Config) -> Any:
        """A DeviceFactory (called once per device a check needs), or None."""

    @pytest.hookspec(firstresult=True)
    def pytest_virtio_driver_factory(self, config: pytest.Config) -> Any:
        """A DriverFactory (called once per driver a check needs), or None."""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(_Hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("virtio_spec", "virtio conformance clauses (virtio_spec)")
    for side in _SIDES:
        group.addoption(f"--virtio-{side}", metavar="MODULE:NAME", default=None,
                        help=f"the {side} factory the clauses run against: an importable "
                             f"callable returning a fresh {side} under test")


def pytest_configure(config: pytest.Config) -> None:
    # A SHOULD is a recommendation: keep it a warning under a blanket `error` filter,
    # unless the ini already says what to do with it (-W on the command line always wins).
    if not any("VirtioShouldWarning" in line for line in config.getini("filterwarnings")):
        config.addinivalue_line("filterwarnings", f"always::{WARNING_PATH}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "virtio_clause" not in metafunc.fixturenames:
        return
    from .conformance import CLAUSES
    clauses = list(CLAUSES.values())
    metafunc.parametrize("virtio_clause", clauses, ids=[c.key for c in clauses],
                         indirect=True)


def _load(spec: str) -> Any:
    """The callable `MODULE:NAME` names (NAME may be dotted)."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError("expected MODULE:NAME")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{name} is a {type(obj).__name__}, not a callable")
    return obj


def _resolve(config: pytest.Config, side: str) -> tuple[Any, str]:
    """(the factory of `side` or None, an error naming a bad option or '')."""
    spec = config.getoption(f"--virtio-{side}")
    if spec is None:
        return getattr(config.hook, f"pytest_virtio_{side}_factory")(config=config), ""
    try:
        return _load(spec), ""
    except (ImportError, AttributeError, TypeError, ValueError) as err:
        return None, f"--virtio-{side} {spec}: {err}"


def _factory(request: pytest.FixtureRequest, side: str) -> Iterator[Any]:
    factory, error = _resolve(request.config, side)
    if error:
        pytest.fail(error, pytrace=False)
    if factory is None:
        pytest.skip(f"no virtio {side} factory: give --virtio-{side} MODULE:NAME or implement "
                    f"pytest_virtio_{side}_factory(config) in conftest.py")
    try:
        yield factory
    finally:
        close = getattr(factory, "close", None)
        if callable(close):
            close()


@pytest.fixture(scope="session")
def virtio_device_factory(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The DeviceFactory the device clauses run against (option or hook; else skip)."""
    yield from _factory(request, "device")


@pytest.fixture(scope="session")
def virtio_driver_factory(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The DriverFactory the driver clauses run against (option or hook; else skip)."""
    yield from _factory(request, "driver")


@dataclass(frozen=True)
class ClauseCheck:
    """One registered clause bound to the factory of its side."""

    clause: Clause
    factory: Callable[[], Any]

    def check(self) -> None:
        """Run the clause's check and turn its verdict into pytest's (module docstring)."""
        clause = self.clause
        unobservable: Mapping[str, str] = getattr(self.factory, "unobservable", None) or {}
        if clause.key in unobservable:
            pytest.skip(f"{clause.key} not observable: {unobservable[clause.key]}")
        verdict, detail = self._run()
        if verdict == "n/a":
            pytest.skip(f"{clause.key} not applicable: {detail}")
        elif verdict == "fail" and clause.level == "SHOULD":
            warnings.warn(VirtioShouldWarning(f"{detail} (SHOULD: {clause.must})"), stacklevel=2)
        elif verdict == "fail":
            pytest.fail(f"{detail}\n{clause.level} ({clause.title}): {clause.must}", pytrace=False)

    def _run(self) -> tuple[str, str]:
        """("pass" | "n/a" | "fail", detail), as `conformance.report.run_clause` has them;
        any other exception propagates, with its traceback, for the adapter's author.  The
        outcome is raised by the caller, outside the except blocks: the check's exception
        is the verdict's evidence, not a cause for pytest to print as a chain."""
        from .conformance import NotApplicable
        try:
            self.clause.check(self.factory)
        except NotApplicable as err:
            return "n/a", str(err)
        except AssertionError as err:
            return "fail", str(err) or f"{self.clause.ref}: assertion failed"
        return "pass", ""


@pytest.fixture
def virtio_clause(request: pytest.FixtureRequest) -> ClauseCheck:
    """The clause this test runs (parametrized over every registered clause)."""
    clause: Clause = request.param
    factory = request.getfixturevalue(f"virtio_{clause.side}_factory")
    return ClauseCheck(clause, factory)


__all__ = ["WARNING_PATH", "ClauseCheck", "VirtioShouldWarning", "virtio_clause",
           "virtio_device_factory", "virtio_driver_factory"]
