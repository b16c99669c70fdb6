"""The agent path between real processes: `vxdp guest --via agent` offloads to `vxdp
host --agent` over the guest's agent socket; `vxdp map --guest` reads the offloaded map
over it; a guest pointed at another guest's agent socket is refused; a guest whose host
runs no agent falls back in auto."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from vxdp.cli import main

from .conftest import core_unavailable
from .procs import processes
from .test_control import obj
from .test_control_process import vxdp
from .test_offload_process import counted_and_passed, stats

pytestmark = pytest.mark.skipif(core_unavailable() is not None,
                                reason=str(core_unavailable()))


async def test_offload_over_the_agent_between_processes(tmp_path: Path) -> None:
    counter = obj("xdp_array_counter")
    g0, g1 = tmp_path / "g0.sock", tmp_path / "g1.sock"
    a0, a1 = tmp_path / "g0.agent", tmp_path / "g1.agent"
    host_ctl, guest_ctl = tmp_path / "h.ctl", tmp_path / "g.ctl"
    with trio.fail_after(90):
        async with processes(tmp_path) as procs:
            host = await procs.host("--socket", str(g0), "--agent", str(a0), "--socket",
                                    str(g1), "--agent", str(a1), "--profile", "rfc2019",
                                    "--control", str(host_ctl),
                                    "--wire", "gen:count=200,rate=100,seed=5,size=128")
            assert f"agents {a0}, {a1}" in host.out
            guest = await procs.guest("--socket", str(g0), "--xdp", str(counter), "--mode",
                                      "offload", "--via", "agent", "--agent", str(a0),
                                      "--control", str(guest_ctl))
            await guest.wait_for("offload: program xdp_count_proto")
            assert "under device profile rfc2019" in guest.out
            # guest 1 dials guest 0's agent socket: the channel is not its own
            wrong = await procs.guest("--socket", str(g1), "--xdp", str(counter), "--mode",
                                      "offload", "--via", "agent", "--agent", str(a0))
            await wrong.wait_for("offload: refused: EPERM: agent: agent channel")
            rc, out, err = await vxdp("prog", "show", "--host", host_ctl, "-j")
            assert rc == 0, err
            (shown,) = json.loads(out)  # guest 0's program only
            assert shown["dev"]["guest"] == 0

            # the guest's map reads go over its agent, answered from the host's maps
            counted, passed = await counted_and_passed(guest_ctl, host_ctl, 200)
            assert counted == passed > 0
            h = await stats(host_ctl)
            mine, other = h["guests"][0]["agent"], h["guests"][1]["agent"]
            assert mine["commands"] >= 3  # create, set, GET_FIRST...
            assert (mine["hellos"], mine["crossings"]) == (1, 1)  # guest 1's hello refused
            assert (other["hellos"], other["commands"]) == (0, 0)
            g = await stats(guest_ctl)
            assert g["offload"]["via"] == "agent" and g["offload"]["sessions"] == 1


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = str(tmp_path / "g0.sock")
    for argv, words in (
            (["guest", "--socket", sock, "--xdp", "x.o", "--mode", "offload", "--via", "agent"],
             "--via agent and --agent PATH go together"),
            (["guest", "--socket", sock, "--agent", "a"], "--agent PATH is for --via agent"),
            (["guest", "--socket", sock, "--via", "agent", "--agent", "a"],
             "give --mode offload or auto"),
            (["host", "--socket", sock, "--socket", "g1.sock", "--agent", "a"],
             "give one --agent per --socket")):
        assert main(argv) == 2
        assert words in capsys.readouterr().err


async def test_no_agent_on_the_host(tmp_path: Path) -> None:
    counter = obj("xdp_array_counter")
    sock = tmp_path / "g0.sock"
    with trio.fail_after(60):
        async with processes(tmp_path) as procs:
            await procs.host("--socket", str(sock), "--profile", "rfc2019")
            guest = await procs.guest("--socket", str(sock), "--xdp", str(counter), "--mode",
                                      "auto", "--via", "agent", "--agent",
                                      str(tmp_path / "g0.agent"))
            await guest.wait_for("falling back to driver mode: ENOENT: agent: no host agent")
