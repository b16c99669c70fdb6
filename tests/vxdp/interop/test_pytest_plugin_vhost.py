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

from virtio_spec.conformance import CLAUSES, Report, select
from vxdp import dpdk
from vxdp.conformance_vhost import CTRL_QUEUE_FEATURES, UNOBSERVABLE, run_socket

pytest_plugins = ["pytester"]

CONFTEST = """
from vxdp.conformance_vhost import CTRL_QUEUE_FEATURES, VhostUserDeviceFactory

def pytest_virtio_device_factory(config):
    # QEMU's view of a back-end that does not serve the control queue
    return VhostUserDeviceFactory({sock!r}, hide=CTRL_QUEUE_FEATURES)
"""
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


@pytest.mark.slow
async def test_plugin_against_testpmd_net_vhost(testpmd: str, sock_dir: Path,
                                                pytester: pytest.Pytester) -> None:
    sock, junit = sock_dir / "p.sock", pytester.path / "junit.xml"
    pytester.makeconftest(CONFTEST.format(sock=str(sock)))
    pytester.makepyfile(test_virtio=TEST_FILE)
    async with dpdk.open_testpmd([f"net_vhost0,iface={sock},queues=1"],
                                 binary=testpmd) as pmd:
        await pmd.forward("rxonly")  # the vhost port dequeues what the guest sends
        report: Report = await trio.to_thread.run_sync(
            lambda: run_socket(sock, hide=CTRL_QUEUE_FEATURES, name="dpdk net_vhost"))
        result = await trio.to_thread.run_sync(
            lambda: pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                                  f"--junitxml={junit}", timeout=300))
        await pmd.halt()
    got = junit_outcomes(junit)
    assert list(got) == list(CLAUSES), result.stdout.str()
    for c in select(side="driver"):  # only a device was given
        assert got[c.key] == ("skipped", "no virtio driver factory: give --virtio-driver "
                                         "MODULE:NAME or implement "
                                         "pytest_virtio_driver_factory(config) in conftest.py")
    for res in report.results:
        key, clause = res.clause.key, res.clause
        outcome, message = got[key]
        if key in UNOBSERVABLE:
            assert (outcome, message) == ("skipped", f"{key} not observable: "
                                                     f"{UNOBSERVABLE[key]}")
        elif res.verdict == "n/a":
            assert (outcome, message) == ("skipped", f"{key} not applicable: {res.detail}")
        elif res.verdict == "pass" or (res.verdict == "fail" and clause.level == "SHOULD"):
            assert outcome == "passed", (key, res.detail, message)
        elif res.verdict == "fail":
            assert outcome == "failed" and message.startswith(f"Failed: {res.detail}"), key
            assert message.endswith(f"{clause.level} ({clause.title}): {clause.must}")
        else:  # the library's "error": the exception reaches pytest
            assert outcome == "failed" and res.detail.split(": ", 1)[1] in message, key
    # what DPDK's vhost library does and does not let the checks see, through pytest
    assert got["device:2.7.5.1"][0] == got["device:6.2"][0] == "passed"
    assert got["device:2.5.2"][0] == "skipped"
    assert "VHOST_USER_PROTOCOL_F_CONFIG" in got["device:2.5.2"][1]
