"""`vxdp host --control` as a real process, driven by `vxdp prog` and `vxdp map`."""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from pathlib import Path

import pytest
import trio

from .conftest import core_unavailable
from .procs import ROOT, processes
from .test_control import obj

pytestmark = pytest.mark.skipif(core_unavailable() is not None,
                                reason=str(core_unavailable()))


async def vxdp(*args: str | Path) -> tuple[int, str, str]:
    env = {**os.environ}
    env.pop("LD_PRELOAD", None)
    done = await trio.run_process([sys.executable, "-m", "vxdp", *map(str, args)],
                                  capture_stdout=True, capture_stderr=True, check=False,
                                  cwd=ROOT, env=env)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


KEY = (socket.inet_aton("10.0.0.1") + socket.inet_aton("10.0.0.2")
       + struct.pack(">HH", 4000, 53) + bytes([17, 0, 0, 0])).hex()


async def test_cli_drives_a_running_host(tmp_path: Path) -> None:
    flow, percpu = obj("xdp_flow_hash"), obj("xdp_percpu_hash")
    ctl = tmp_path / "host.ctl"
    with trio.fail_after(90):
        async with processes(tmp_path) as procs:
            host = await procs.host("--socket", str(tmp_path / "g0.sock"), "--profile",
                                    "rfc2019", "--control", str(ctl))
            assert f"control {ctl}" in host.out
            assert await vxdp("prog", "show", "--host", ctl) == (0, "", "")
            rc, out, err = await vxdp("prog", "attach", flow, "--host", ctl)
            assert rc == 0, err
            assert out.startswith("1: xdp  name xdp_flow_lookup  tag ")
            assert "map_ids 1,2" in out
            # a program the host's profile refuses: exit 1, the log, the old one stays
            rc, out, err = await vxdp("prog", "attach", percpu, "--host", ctl)
            assert rc == 1 and out == ""
            assert "rejected by the verifier (profile rfc2019)" in err
            assert "map type PERCPU_HASH is not offered" in err
            rc, out, _ = await vxdp("prog", "show", "--host", ctl, "-j")
            (shown,) = json.loads(out)
            assert (shown["id"], shown["name"], shown["maps"]) == (1, "xdp_flow_lookup",
                                                                   ["flows", "misses"])
            value = struct.pack("<IIQ", 1, 0, 0).hex()
            assert await vxdp("map", "update", "flows", "key", KEY, "value", value,
                              "noexist", "--host", ctl) == (0, "", "")
            rc, out, _ = await vxdp("map", "lookup", "name", "flows", "key", KEY, "--host",
                                    ctl, "-j")
            assert (rc, json.loads(out)) == (0, {"key": KEY, "value": value})
            rc, out, _ = await vxdp("map", "lookup", "flows", "key", KEY, "--host", ctl)
            assert out.splitlines() == [f"key: {' '.join(KEY[i:i + 2] for i in range(0, 32, 2))}",
                                        f"value: {' '.join(value[i:i + 2] for i in range(0, 32, 2))}"]
            rc, out, err = await vxdp("map", "update", "flows", "key", KEY, "value", value,
                                      "noexist", "--host", ctl)
            assert rc == 1 and "(EEXIST)" in err
            rc, out, err = await vxdp("map", "lookup", "id", "1", "key", "00" * 16, "--host",
                                      ctl, "-j")
            assert rc == 1 and json.loads(out)["errno"] == "ENOENT"
            rc, out, err = await vxdp("map", "lookup", "flows", "key", "0xzz", "--host", ctl)
            assert rc == 2 and "'0xzz' is not hex" in err
            rc, out, _ = await vxdp("map", "dump", "flows", "--host", ctl)
            assert (rc, out.splitlines()[1:]) == (0, [
                f"value: {' '.join(value[i:i + 2] for i in range(0, 32, 2))}",
                "Found 1 element"])
            rc, out, err = await vxdp("map", "dump", "flows", "--host", ctl, "-j")
            assert json.loads(out) == {"flows": {
                "type": "hash", "key_size": 16, "value_size": 16, "max_entries": 4096,
                "entries": [{"key": KEY, "value": value}]}}
            # a hostile client: garbage, then gone; the host answers the next one
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(ctl))
                s.sendall(b"\xff" * 64)
            rc, out, _ = await vxdp("prog", "dump", "xlated", "--host", ctl)
            assert rc == 0 and out.startswith("   0: (") and "map[id:1]" in out
            assert await vxdp("prog", "detach", "--host", ctl) == (
                0, "detached xdp_flow_lookup (id 1)\n", "")
            rc, out, _ = await vxdp("prog", "show", "--host", ctl, "-j")
            assert (rc, json.loads(out)) == (0, [])
            assert await host.stop() == 0
    assert not ctl.exists()
    rc, _, err = await vxdp("map", "show", "--host", ctl)
    assert rc == 2 and f"no vxdp host answers at {ctl}" in err
