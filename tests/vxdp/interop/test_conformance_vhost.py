"""The device clauses of `virtio_spec.conformance` over a vhost-user socket.

Against `vxdp host` (a real process, its wire captured), against the same host broken
on purpose behind the socket (the adapter must see the breakage through vhost-user), and
against DPDK testpmd's net_vhost port, whose results are a finding of their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from virtio_spec.conformance import Report, select
from virtio_spec.conformance.registry import VXDP
from virtio_spec.features import VirtioNetFeature as N
from vxdp import dpdk
from vxdp.conformance_vhost import (
    CTRL_QUEUE_FEATURES,
    UNOBSERVABLE,
    VhostUserDevice,
    run_socket,
)
from vxdp.runtime import HostRuntime
from vxdp.vhost_user import BackendSession
from vxdp.vhost_user import events as ev

WIRE_NA = "frames into the device come from its wire"


def _wait_for_socket(path: Path, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 15
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"vxdp host exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no socket at {path}")
        time.sleep(0.02)


@contextmanager
def vxdp_host(sock: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-m", "vxdp", "host", "--socket", str(sock),
                             *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        _wait_for_socket(sock, proc)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()


def verdicts(report: Report) -> dict[str, str]:
    return {r.clause.key: r.verdict for r in report.results}


def details(report: Report) -> dict[str, str]:
    return {r.clause.key: r.detail for r in report.results}


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["default", "packed", "host"])
def test_device_clauses_against_vxdp_host(sock_dir: Path, profile: str) -> None:
    sock, capture = sock_dir / "h.sock", sock_dir / "wire.pcap"
    with vxdp_host(sock, "--profile", profile, "--wire", f"pcap:out={capture}"):
        report = run_socket(sock, capture=capture)
    v, d = verdicts(report), details(report)
    assert report.ok, report.table()
    assert len(v) == len(select(side="device"))
    # the rings, notifications, status and config are all observed through the socket
    for key in ("device:2.1.2", "device:2.1.2/2", "device:2.4.1", "device:2.4.1/2",
                "device:2.7.5.1", "device:2.7.7.2", "device:2.7.10.2", "device:6.2"):
        assert v[key] == "pass", (key, d[key])
    assert v["device:2.5.2"] == "pass"  # config space over GET_CONFIG
    assert v["device:2.7.7.2/3"] == "pass"
    assert v["device:5.1.6.5.1.1"] == "pass"  # the control queue, served by the host
    assert v["device:5.1.6.2.2/2"] in ("pass", "n/a")  # transmitted frames, from the pcap
    # what a socket cannot show is n/a, with the reason, never a pass
    assert v["device:2.1.2/3"] == "n/a" and d["device:2.1.2/3"] == UNOBSERVABLE["device:2.1.2/3"]
    assert v["device:2.2.2/2"] == "n/a" and "protocol error" in d["device:2.2.2/2"]
    # CTRL_RX without CTRL_VQ: over vhost-user the front-end keeps the control queue
    assert v["device:2.2.2/3"] == "n/a" and "keeps the control queue" in d["device:2.2.2/3"]
    assert v["device:5.1.6.4.1"] == "n/a" and WIRE_NA in d["device:5.1.6.4.1"]
    if profile == "packed":
        assert v["device:2.8.15"] == v["device:2.8.15/2"] == v["device:2.8.15/3"] == "pass"
    if profile == "host":  # the offload's own rules (docs/offload-spec.md), over vhost-user
        offload = {c.key for c in select(side="device") if c.origin == VXDP}
        passed = {k for k in offload if v[k] == "pass"}
        assert len(passed) >= 15, {k: (v[k], d[k]) for k in offload - passed}
        for key in ("device:3.2.1", "device:4.5.2", "device:4.5.11", "device:4.5.14",
                    "device:6.1.1"):
            assert v[key] == "pass", (key, d[key])


def test_session_messages_follow_qemu_order(sock_dir: Path) -> None:
    sock = sock_dir / "h.sock"
    with vxdp_host(sock):
        dev = VhostUserDevice(sock)
        try:
            assert dev.messages[:4] == ["VHOST_USER_GET_FEATURES",
                                        "VHOST_USER_GET_PROTOCOL_FEATURES",
                                        "VHOST_USER_SET_PROTOCOL_FEATURES",
                                        "VHOST_USER_GET_QUEUE_NUM"]
            assert dev.read_status() == 0
            offered = dev.read_device_features()
            assert not offered >> 30 & 1  # VHOST_USER_F_PROTOCOL_FEATURES is the VMM's
            with pytest.raises(Exception, match="never offered"):
                dev.write_driver_features(offered | 1 << 4)
        finally:
            dev.close()


# -- the same host, broken behind the socket: the adapter must see it ------------------------

Mutate = Callable[[HostRuntime], None]


def _status_never_resets(host: HostRuntime) -> None:
    port = host.guests[0]
    real = port.handlers[ev.StatusQueried]

    async def lying(session: BackendSession, event: Any) -> object:
        return int(await real(session, event)) | 1  # ACKNOWLEDGE stuck on
    port.handlers = {**port.handlers, ev.StatusQueried: lying}


def _no_used_buffer_notifications(host: HostRuntime) -> None:
    BackendSession.notify = lambda self, index: False  # type: ignore[method-assign]


@contextmanager
def host_in_thread(sock: Path, mutate: Mutate) -> Iterator[HostRuntime]:
    """A HostRuntime (python datapath) on its own trio loop in a thread."""
    host = HostRuntime([str(sock)], datapath="python")
    mutate(host)
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            box["token"] = trio.lowlevel.current_trio_token()
            box["cancel"] = nursery.cancel_scope.cancel
            await nursery.start(host.run)
            ready.set()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    try:
        assert ready.wait(10), "host thread did not start"
        _wait_for_socket(sock)
        yield host
    finally:
        trio.from_thread.run_sync(box["cancel"], trio_token=box["token"])
        thread.join(10)
        host.close()


@pytest.mark.parametrize(("mutate", "clauses"), [
    (_status_never_resets, ["device:2.1.2/2", "device:2.4.1"]),
    (_no_used_buffer_notifications, ["device:2.7.7.2", "device:2.7.7.2/2"]),
])
def test_broken_host_fails_through_the_socket(sock_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                              mutate: Mutate, clauses: list[str]) -> None:
    sock = sock_dir / "m.sock"
    monkeypatch.setattr(BackendSession, "notify", BackendSession.notify)  # restored after
    with host_in_thread(sock, lambda h: None):
        sound = run_socket(sock, select(keys=clauses))
    assert set(verdicts(sound).values()) == {"pass"}, sound.table()
    with host_in_thread(sock, mutate):
        broken = run_socket(sock, select(keys=clauses))
    assert set(verdicts(broken).values()) == {"fail"}, broken.table()


# -- DPDK testpmd's net_vhost port as the device ---------------------------------------------

def _run_against_testpmd(binary: str, sock: Path, hide: int) -> tuple[Report, int]:
    async def main() -> tuple[Report, int]:
        async with dpdk.open_testpmd([f"net_vhost0,iface={sock},queues=1"],
                                     binary=binary) as pmd:
            await pmd.forward("rxonly")  # the vhost port dequeues what the guest sends
            report = await trio.to_thread.run_sync(
                lambda: run_socket(sock, hide=hide, name="dpdk net_vhost"))
            dev = await trio.to_thread.run_sync(lambda: VhostUserDevice(sock))
            offered = dev.offered
            dev.close()
            await pmd.halt()
        return report, offered
    return trio.run(main)


@pytest.mark.slow
def test_device_clauses_against_testpmd_net_vhost(testpmd: str, sock_dir: Path) -> None:
    """DPDK 22.11's vhost library through the library's eyes.  Seen as offered on the
    socket, and with the control queue hidden as QEMU hides it (it serves that queue
    itself).  The findings (see the report) are checked for consistency with what DPDK
    offers, and the transport-level clauses any working back-end meets must pass."""
    as_offered, offered = _run_against_testpmd(testpmd, sock_dir / "d.sock", 0)
    behind_qemu, _ = _run_against_testpmd(testpmd, sock_dir / "e.sock", CTRL_QUEUE_FEATURES)
    for report in (as_offered, behind_qemu):
        v = verdicts(report)
        print(report.table())
        assert len(v) == len(select(side="device"))
        for key in ("device:2.1.2", "device:2.1.2/2", "device:2.4.1", "device:2.4.1/2",
                    "device:2.7.5.1", "device:2.7.10.2", "device:6.2"):
            assert v[key] == "pass", (key, details(report)[key])
        # no CONFIG protocol feature: config clauses are n/a, never passed
        assert v["device:2.5.2"] == "n/a"
        assert "VHOST_USER_PROTOCOL_F_CONFIG" in details(report)["device:2.5.2"]
        # §5.1.3.1: HOST_ECN needs HOST_TSO4 or HOST_TSO6 offered
        ecn_alone = (offered >> N.VIRTIO_NET_F_HOST_ECN & 1 and not (
            offered >> N.VIRTIO_NET_F_HOST_TSO4 & 1 or offered >> N.VIRTIO_NET_F_HOST_TSO6 & 1))
        assert v["device:2.2.2"] == ("fail" if ecn_alone else "pass")
    v, hidden = verdicts(as_offered), verdicts(behind_qemu)
    if offered >> N.VIRTIO_NET_F_CTRL_VQ & 1:
        # CTRL_VQ offered on the socket, the queue never served: control requests unused
        assert v["device:5.1.6.5.1.1"] == "fail"
        assert v["device:6.2/2"] in ("fail", "n/a")
    # with the control queue hidden the ring clauses run on transmitq1 and pass
    for key in ("device:2.7.7.2", "device:2.7.7.2/2", "device:2.7.5.1/2"):
        assert hidden[key] == "pass", (key, details(behind_qemu)[key])


# -- the CLI ------------------------------------------------------------------------------

def test_cli_socket_target(sock_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vxdp.cli import main
    sock, capture = sock_dir / "h.sock", sock_dir / "wire.pcap"
    keys = ["device:2.4.1", "device:2.1.2/3", "device:5.1.6.2.2/2"]
    with vxdp_host(sock, "--wire", f"pcap:out={capture}"):
        argv = ["conformance", "--socket", str(sock), "--capture", str(capture), "-j"]
        assert main([*argv, *(a for k in keys for a in ("--clause", k))]) == 0
    out = json.loads(capsys.readouterr().out)
    got = {r["key"]: (r["verdict"], r["target"]) for r in out["results"]}
    target = f"vhost-user({sock})"
    assert got == {"device:2.4.1": ("pass", target), "device:2.1.2/3": ("n/a", target),
                   "device:5.1.6.2.2/2": ("pass", target)}
    assert main(["conformance", "--socket", str(sock_dir / "none.sock")]) == 2
    assert "no vhost-user back-end answers" in capsys.readouterr().err
