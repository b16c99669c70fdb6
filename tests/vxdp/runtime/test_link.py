"""A guest's link and announce requests as operator actions: `GuestPort.set_link` and
`announce`, the control socket's guest.* ops, and `vxdp link`, against in-process hosts
and guests (real vhost-user over socketpairs, the config change on the back-end request
channel)."""

from __future__ import annotations

import errno as E
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from guest.driver import SUPPORTED_FEATURES
from virtio_spec.features import VirtioNetFeature
from vxdp.cli import main
from vxdp.errors import GuestPortError
from vxdp.runtime import open_port

from .conftest import Rig, until
from .test_control import ctl, refused, served_host, serving

RigFactory = Callable[..., Rig]
_ANNOUNCE = 1 << VirtioNetFeature.VIRTIO_NET_F_GUEST_ANNOUNCE


async def test_guest_ops_without_front_ends(tmp_path: Path) -> None:
    """No guest connected: list shows the sockets; a link setting is kept for the next
    session; announce has no device to ask; a guest number past the last is ENODEV."""
    path = tmp_path / "host.ctl"
    async with served_host(path, ["g0.sock", "g1.sock"]) as host:
        listed = await ctl(path, "guest.list")
        assert [(g["guest"], g["socket"], g["link"], g["connected"], g["live"],
                 g["features"]) for g in listed] == [
            (0, "g0.sock", "up", False, False, []), (1, "g1.sock", "up", False, False, [])]
        assert listed[1]["mac"] == host.guests[1].profile.mac.hex(":")
        done = await ctl(path, "guest.link", guest=1, up=False)
        assert (done["link"], done["changed"], done["signalled"]) == ("down", True, False)
        again = await ctl(path, "guest.link", guest=1, up=False)
        assert again["changed"] is False
        assert [g["link"] for g in await ctl(path, "guest.list")] == ["up", "down"]
        assert host.guests[1].profile.link_up is False  # what its next Device gets
        err = (await refused(path, "guest.announce", guest=0)).error
        assert (err.errno, err.kind) == (E.ENOTCONN, "failed")
        assert err.message == "guest 0: no front-end connected (never connected)"
        err = (await refused(path, "guest.link", guest=2, up=True)).error
        assert (err.errno, err.kind) == (E.ENODEV, "usage")
        assert err.message == "no guest 2 on this host (guests: 0..1)"
        err = (await refused(path, "guest.announce", guest=7)).error
        assert err.errno == E.ENODEV


async def test_link_and_announce_reach_a_live_guest_and_outlive_its_reconnect(
        rig_factory: RigFactory, tmp_path: Path) -> None:
    path = tmp_path / "host.ctl"
    with trio.fail_after(30):
        rig = rig_factory()
        await serving(rig.nursery, rig.host, path)
        guest = await rig.add_guest(port=open_port("null"))
        (g,) = await ctl(path, "guest.list")
        assert (g["link"], g["live"], g["announce_pending"]) == ("up", True, False)
        assert "VIRTIO_NET_F_GUEST_ANNOUNCE" in g["features"]
        assert g["status"] == "ACKNOWLEDGE|DRIVER|DRIVER_OK|FEATURES_OK"
        done = await ctl(path, "guest.link", guest=0, up=False)
        assert (done["changed"], done["signalled"]) == (True, True)
        await until(lambda: ("config_changed", "config changed: link down") in guest.reports,
                    "the guest's driver to read the link down")
        done = await ctl(path, "guest.announce", guest=0)
        assert done["signalled"] is True
        await until(lambda: ("config_changed", "config changed: link down, announce "
                             "requested") in guest.reports, "the guest to see the request")
        port = rig.host.guests[0]
        await until(lambda: not port.link_info()["announce_pending"],
                    "the guest's ANNOUNCE_ACK to clear status.ANNOUNCE")
        assert port.device is not None and port.device.stats["ctrl_commands"] >= 1
        # the guest's connection goes and comes back: a new device, with the link down
        # (no reference to the old one is kept here: it views the memory that goes)
        rig.kill_host_side(0)
        await until(lambda: port.session is None, "the host to let go")
        rig.connect(0)
        await until(lambda: port.live and port.sessions == 2, "a new live device")
        assert port.device is not None and port.device.read_config(6, 2) == b"\x00\x00"
        (g,) = await ctl(path, "guest.list")
        assert (g["link"], g["live"]) == ("down", True)
        seen = len(guest.reports)
        # only a device that starts down has a change to tell when the link comes up
        done = await ctl(path, "guest.link", guest=0, up=True)
        assert (done["changed"], done["signalled"]) == (True, True)
        await until(lambda: ("config_changed", "config changed: link up")
                    in guest.reports[seen:], "the link back up after the reconnect")
        assert port.device.read_config(6, 2) == b"\x01\x00"


async def test_announce_needs_guest_announce_negotiated(rig_factory: RigFactory,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "host.ctl"
    with trio.fail_after(30):
        rig = rig_factory()
        await serving(rig.nursery, rig.host, path)
        guest = await rig.add_guest(port=open_port("null"),
                                    features=SUPPORTED_FEATURES & ~_ANNOUNCE)
        assert not guest.driver.has(VirtioNetFeature.VIRTIO_NET_F_GUEST_ANNOUNCE)
        err = (await refused(path, "guest.announce", guest=0)).error
        assert (err.errno, err.code, err.kind) == (E.EOPNOTSUPP, "EOPNOTSUPP", "failed")
        assert "did not negotiate VIRTIO_NET_F_GUEST_ANNOUNCE" in err.message
        port = rig.host.guests[0]
        assert not port.link_info()["announce_pending"]
        with pytest.raises(GuestPortError, match="GUEST_ANNOUNCE"):
            port.announce()
        # the link still works for it: it negotiated VIRTIO_NET_F_STATUS
        assert (await ctl(path, "guest.link", guest=0, up=False))["signalled"] is True
        await until(lambda: ("config_changed", "config changed: link down") in guest.reports,
                    "the guest to see the link go down")


async def vxdp_cli(*argv: str) -> int:
    return await trio.to_thread.run_sync(main, list(argv))


async def test_vxdp_link_cli(rig_factory: RigFactory, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "host.ctl")
    with trio.fail_after(30):
        rig = rig_factory(sockets=2)
        await serving(rig.nursery, rig.host, Path(path))
        guest = await rig.add_guest(port=open_port("null"))
        capsys.readouterr()
        assert await vxdp_cli("link", "show", "--host", path) == 0
        out = capsys.readouterr().out.splitlines()
        mac0, mac1 = (g.profile.mac.hex(":") for g in rig.host.guests)
        assert out[0] == f"0: socket unused-0.sock  mac {mac0}  link up  live"
        assert out[1].startswith("\tstatus ACKNOWLEDGE|DRIVER|DRIVER_OK|FEATURES_OK  "
                                 "ifindex 2  config changes ")
        assert out[2].startswith("\tfeatures ") and "VIRTIO_NET_F_STATUS" in out[2]
        assert out[3:] == [f"1: socket unused-1.sock  mac {mac1}  link up  no front-end"]
        assert await vxdp_cli("link", "set", "0", "down", "--host", path) == 0
        assert capsys.readouterr().out == "guest 0: link down (config change sent)\n"
        await until(lambda: ("config_changed", "config changed: link down") in guest.reports,
                    "the guest to see the link go down")
        assert await vxdp_cli("link", "set", "0", "down", "--host", path) == 0
        assert capsys.readouterr().out == "guest 0: link down (unchanged)\n"
        assert await vxdp_cli("link", "set", "1", "down", "--host", path) == 0
        assert capsys.readouterr().out == ("guest 1: link down (no front-end: its next "
                                           "device starts with the link down)\n")
        assert await vxdp_cli("link", "announce", "0", "--host", path, "-j") == 0
        done = json.loads(capsys.readouterr().out)
        assert (done["guest"], done["signalled"], done["link"]) == (0, True, "down")
        assert await vxdp_cli("link", "show", "--host", path, "-j") == 0
        assert [g["link"] for g in json.loads(capsys.readouterr().out)] == ["down", "down"]
        # failures: 1 for a guest without a device, 2 for one that does not exist
        assert await vxdp_cli("link", "announce", "1", "--host", path) == 1
        assert capsys.readouterr().err == ("Error: guest 1: no front-end connected (never "
                                           "connected) (ENOTCONN)\n")
        assert await vxdp_cli("link", "set", "5", "up", "--host", path, "-j") == 2
        assert json.loads(capsys.readouterr().out) == {
            "error": "no guest 5 on this host (guests: 0..1)", "errno": "ENODEV"}
        assert await vxdp_cli("link", "set", "zero", "up", "--host", path) == 2
        assert "guest 'zero' is not a number" in capsys.readouterr().err
    assert await vxdp_cli("link", "show", "--host", str(tmp_path / "nobody.ctl")) == 2
    assert "no vxdp host answers at" in capsys.readouterr().err


async def test_no_traffic_either_way_while_the_link_is_down(rig_factory: RigFactory,
                                                           datapath: str) -> None:
    """As QEMU with a netdev's link down: wire frames never reach the guest and what it
    transmits is taken and dropped; both count as drops.link_down, and traffic resumes
    with the link."""
    with trio.fail_after(30):
        rig = rig_factory()
        guest = await rig.add_guest(port=open_port("null"))
        port = rig.host.guests[0]
        frames = [bytes.fromhex("ffffffffffff020000000001") + b"\x08\x00" + bytes(46)] * 10
        port.set_link(False)
        rig.host.from_wire(frames)
        await guest.transmit(frames[:4])
        await until(lambda: port.drops["link_down"] == 14, "14 frames dropped at the link")
        assert guest.stack["packets"] == 0 and rig.host.wire.tx_packets == 0
        assert await rig.host.wait_for_room(5) == 5  # a guest with no link holds no wire back
        port.set_link(True)
        rig.host.from_wire(frames)
        await guest.transmit(frames[:4])
        await until(lambda: guest.stack["packets"] == 10, "10 frames in the guest")
        await until(lambda: rig.host.wire.tx_packets == 4, "4 frames on the wire")
    assert port.stats()["drops"]["link_down"] == 14
