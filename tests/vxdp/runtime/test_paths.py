"""The control queue vs agents comparison behind `vxdp demo`: measured in the run, and
what each path survives.  Speeds are printed, never asserted."""

from __future__ import annotations

import pytest
import trio

from vxdp.runtime.paths import SCENARIOS, compare_paths, survival

from .conftest import core_unavailable

pytestmark = pytest.mark.skipif(core_unavailable() is not None,
                                reason=str(core_unavailable()))


def test_both_paths_are_measured_in_the_same_run() -> None:
    report = compare_paths(count=256, runs=2, updates=40, scenarios=False)
    print("\n".join(report.table()))
    assert [r.via for r in report.runs] == ["controlq", "agent", "controlq", "agent"]
    assert report.agree and sum(report.expected.values()) == 256
    for r in report.runs:
        assert r.complete and r.actions == report.expected and r.in_guest == report.expected["pass"]
        assert r.setup_s is not None and r.setup_s > 0
        assert r.updates == 40 and r.updates_s > 0 and r.mpps > 0
    for via in ("controlq", "agent"):
        for spread in report.spread(via).values():
            assert 0 < spread.low <= spread.median <= spread.high
    lines = report.table()
    assert [line.split()[0] for line in lines] == ["path", "controlq", "agent"]
    doc = report.to_json()
    assert doc["agree"] and len(doc["runs"]) == 4 and set(doc["spread"]) == {"controlq", "agent"}


async def test_what_each_path_survives() -> None:
    with trio.fail_after(90):
        got = await survival(runs=2)
    for s in got:
        print(f"{s.scenario:<19} {s.via:<9} {s.text()}")
    by = {(s.scenario, s.via): s for s in got}
    assert set(by) == {(sc, via) for sc in SCENARIOS for via in ("controlq", "agent")}
    # a host without an agent: the control queue does not need one
    assert by["no host agent", "controlq"].outcome == "offloaded"
    no_agent = by["no host agent", "agent"]
    assert (no_agent.outcome, no_agent.code) == ("driver", "ENOENT")
    assert "no host agent answers" in no_agent.detail
    # a driver without the feature bit: only the agent path offloads
    unpatched = by["unpatched driver", "controlq"]
    assert (unpatched.outcome, unpatched.code) == ("driver", "EOPNOTSUPP")
    assert "did not negotiate VIRTIO_NET_F_XDP_OFFLOAD" in unpatched.detail
    assert by["unpatched driver", "agent"].outcome == "offloaded"
    # a host restart: both offload again on the new device; the maps' contents are gone
    for via in ("controlq", "agent"):
        restart = by["host restart", via]
        assert restart.outcome == "re-offloaded" and "started over" in restart.detail
        assert restart.seconds is not None and restart.seconds > 0
    # a live migration: both keep the program, the map entries and the counters on B,
    # measured over the runs; the agent path's channel is re-bound to B's host agent
    for via in ("controlq", "agent"):
        moved = by["migration", via]
        assert (moved.outcome, moved.runs) == ("migrated", 2), moved.text()
        assert "program, map entries and counters on the destination" in moved.detail
        assert moved.downtime_ms is not None and moved.downtime_ms.low > 0
        assert moved.frames_lost is not None and moved.frames_lost.low >= 0
        assert (moved.rebind_ms is not None) == (via == "agent")
    assert "agent channel re-bound" in by["migration", "agent"].detail
    # to a host without an agent: the control queue moves its offload, the agent path
    # cannot, and its program goes on in the guest's driver with its map entries
    assert by["migration, no agent", "controlq"].outcome == "migrated"
    stays = by["migration, no agent", "agent"]
    assert (stays.outcome, stays.code) == ("driver", "ENOENT"), stays.text()
    assert "moved without the offload" in stays.detail and "counting on" in stays.detail
