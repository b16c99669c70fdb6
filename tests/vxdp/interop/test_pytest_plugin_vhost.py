"""The pytest plugin against DPDK testpmd's net_vhost port, as a user would run it.

The user's side is a conftest.py handing the plugin a `VhostUserDeviceFactory` on the
port's socket and one test taking `virtio_clause`, run by pytest in a process of its own.
Its outcomes are held, clause by clause, against the library's report of the same port
(`run_socket`): the plugin must say what the library says, through pytest's vocabulary.
testpmd runs without hugepages (--no-huge); where it is absent or does not start, the
test skips saying why (the `testpmd` fixture).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import trio

from virtio_spec.conformance import CLAUSES, Report, Result, select
from vxdp import dpdk
from vxdp.conformance_vhost import CTRL_QUEUE_FEATURES, UNOBSERVABLE, run_socket

pytest_plugins = ["pytester"]

CONFTEST = """
from vxdp.conformance_vhost import CTRL_QUEUE_FEATURES, VhostUserDeviceFactory

def pytest_virtio_device_factory(config):
    # QEMU's view of a back-end that does not serve the control queue
    return VhostUserDeviceFactory({sock!r}, hide=CTRL_QUEUE_FEATURES, quiet={quiet})
"""
#: Seconds the rings must stay still after a kick before a check looks (the adapter's
#: default is 0.02).  Two runs are compared here, each in its own process beside a busy-
#: polling testpmd on a shared machine: a longer wait keeps a late dequeue from being read
#: as "not used" in one run and not the other.
QUIET = 0.1
TEST_FILE = """
def test_virtio(virtio_clause):
    virtio_clause.check()
"""


def junit_outcomes(path: Path) -> dict[str, tuple[str, str]]:
    """{clause key: (passed | skipped | failed | error, message)} from a JUnit XML report."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = case.attrib["name"].split("[", 1)[1][:-1]
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("skipped", "failure", "error"):
                outcome = {"skipped": "skipped", "failure": "failed"}.get(child.tag, "error")
                message = child.attrib.get("message", "")
        out[key] = (outcome, message)
    return out


def plugin_says(res: Result, outcome: str, message: str) -> bool:
    """Whether a pytest outcome and its message are what the plugin owes this verdict."""
    key, clause = res.clause.key, res.clause
    if key in UNOBSERVABLE:
        return (outcome, message) == ("skipped", f"{key} not observable: {UNOBSERVABLE[key]}")
    if res.verdict == "n/a":
        return (outcome, message) == ("skipped", f"{key} not applicable: {res.detail}")
    if res.verdict == "pass" or (res.verdict == "fail" and clause.level == "SHOULD"):
        return outcome == "passed"
    if res.verdict == "fail":
        return outcome == "failed" and message == (f"Failed: {res.detail}\n{clause.level} "
                                                   f"({clause.title}): {clause.must}")
    # the library's "error": the exception itself reaches pytest
    return outcome == "failed" and res.detail.split(": ", 1)[1] in message


@pytest.mark.slow
async def test_plugin_against_testpmd_net_vhost(testpmd: str, sock_dir: Path,
                                                pytester: pytest.Pytester) -> None:
    """The library's report is taken before and after the plugin's run.  Where the two
    agree, the plugin must say the same; where they differ, the clause's verdict hangs on
    how fast testpmd answered this time (a used ring read before its lcore ran), and the
    plugin must say one of the two."""
    sock, junit = sock_dir / "p.sock", pytester.path / "junit.xml"
    pytester.makeconftest(CONFTEST.format(sock=str(sock), quiet=QUIET))
    pytester.makepyfile(test_virtio=TEST_FILE)

    def library() -> Report:
        return run_socket(sock, hide=CTRL_QUEUE_FEATURES, name="dpdk net_vhost", quiet=QUIET)

    async with dpdk.open_testpmd([f"net_vhost0,iface={sock},queues=1"],
                                 binary=testpmd) as pmd:
        await pmd.forward("rxonly")  # the vhost port dequeues what the guest sends
        before = await trio.to_thread.run_sync(library)
        result = await trio.to_thread.run_sync(
            lambda: pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                                  f"--junitxml={junit}", timeout=300))
        after = await trio.to_thread.run_sync(library)
        await pmd.halt()
    got = junit_outcomes(junit)
    assert list(got) == list(CLAUSES), result.stdout.str()
    for c in select(side="driver"):  # only a device was given
        assert got[c.key] == ("skipped", "no virtio driver factory: give --virtio-driver "
                                         "MODULE:NAME or implement "
                                         "pytest_virtio_driver_factory(config) in conftest.py")
    stable = 0
    for first, second in zip(before.results, after.results, strict=True):
        key = first.clause.key
        assert any(plugin_says(res, *got[key]) for res in (first, second)), \
            (key, first.verdict, first.detail, second.verdict, second.detail, got[key])
        stable += (first.verdict, first.detail) == (second.verdict, second.detail)
    assert stable >= len(before.results) - 3, "testpmd's answers changed between runs"
    # what DPDK's vhost library does and does not let the checks see, through pytest
    assert got["device:6.2"][0] == "passed"  # VERSION_1 offered
    assert got["device:2.5.2"][0] == "skipped"
    assert "VHOST_USER_PROTOCOL_F_CONFIG" in got["device:2.5.2"][1]
