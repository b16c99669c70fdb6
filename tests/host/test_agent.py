"""The host agent (host.agent) without I/O: one guest's channel to its device's offload.

The guest's own operations (guest.offload) are driven through the agent and through the
control queue of an identical device; the answers must be the same bytes.  A channel
reaches its own guest's device only."""

from __future__ import annotations

import errno as E
import struct
from collections.abc import Generator
from typing import Any, TypeVar

import pytest

from guest import SUPPORTED_FEATURES
from guest.ctrl import CommandRefused
from guest.offload import Answer, OffloadClient, OffloadError, OffloadRequest
from host import Device, OffloadVerify
from host.agent import AgentBinding, AgentRefused, HostAgent
from virtio_spec.ctrl import VIRTIO_NET_ERR, VIRTIO_NET_OK
from virtio_spec.features import VirtioNetFeature
from virtio_spec.offload import VIRTIO_NET_CTRL_EBPF, VirtioNetBpfProgCmd
from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.program import MapSpec, MapType, Program, rebind_map_refs
from vxdp.packets import tcp_packet, udp_packet
from vxdp.pair import Pair
from vxdp.runtime.compare import demo_program

T = TypeVar("T")
ARRAY = MapSpec("a", MapType.ARRAY, 4, 8, 4)
HASH = MapSpec("h", MapType.HASH, 4, 8, 4)
K0 = struct.pack("<I", 0)


def agent_for(pair: Pair, guest: int = 0) -> HostAgent:
    return HostAgent(AgentBinding(guest, pair.driver.mac, f"g{guest}.agent"))


def live(profile: str = "host", **kw: Any) -> Pair:
    pair = Pair.create(profile, **kw)
    assert pair.negotiate()
    return pair


def answers(agent: HostAgent, device: Device, op: Generator[OffloadRequest, Answer, T],
            log: list[tuple[int, bytes]] | None = None) -> T:
    """Run a guest.offload operation through the host agent (verification in place)."""
    try:
        request = next(op)
        while True:
            out = agent.command(device, request.cls, request.command, request.body,
                                request.room)
            if out.job is not None:
                out.job.run()
                out = agent.finish(device, device, out.job)
            if log is not None:
                log.append((out.ack, out.result))
            request = op.send(Answer(out.ack, out.result))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def over_ctrl(pair: Pair, op: Generator[OffloadRequest, Answer, T],
              log: list[tuple[int, bytes]]) -> T:
    try:
        request = next(op)
        while True:
            cmd = pair.ctrl(request.cls, request.command, request.body,
                            result_size=request.room)
            log.append((cmd.ack, bytes(cmd.result)))
            request = op.send(Answer.of(cmd))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def script(c: OffloadClient) -> Generator[OffloadRequest, Answer, list[Any]]:
    """One guest's session: maps, a refusal or two, the program, its query, reads."""
    out: list[Any] = []
    h = (yield from c.create_map(HASH)).handle
    yield from c.update(h, K0, bytes(range(8)))
    out.append((yield from c.lookup(h, K0)))
    out.append((yield from c.lookup(h, struct.pack("<I", 9))))
    try:
        yield from c.update(h, K0, bytes(8), flags=1)  # BPF_NOEXIST on a present key
    except OffloadError as exc:
        out.append(exc.errno)
    off = yield from c.load(demo_program())
    out.append((yield from c.query()))
    out.append((yield from c.dump(off.handles[0])))
    try:
        yield from c.free_map(off.handles[0])
    except OffloadError as exc:
        out.append(exc.errno)
    out.append((yield from c.unload()))
    return out


def test_the_same_operations_get_the_same_bytes_over_either_path() -> None:
    """The two paths differ only in transport: every answer, byte for byte."""
    a, b = live(), live()
    via_ctrl: list[tuple[int, bytes]] = []
    via_agent: list[tuple[int, bytes]] = []
    got_ctrl = over_ctrl(a, script(OffloadClient(a.driver.xdp_caps)), via_ctrl)
    got_agent = answers(agent_for(b), b.device, script(OffloadClient(b.driver.xdp_caps)),
                        via_agent)
    assert via_agent == via_ctrl and len(via_agent) > 10
    assert got_agent == got_ctrl
    assert got_agent[1] is None and got_agent[2] == E.EEXIST and got_agent[-2] == E.EBUSY
    assert VIRTIO_NET_ERR in {ack for ack, _ in via_agent}


def test_what_the_agent_offloads_runs_on_the_device_s_receive_path() -> None:
    pair = live()
    client = OffloadClient(pair.driver.xdp_caps)
    off = answers(agent_for(pair), pair.device, client.load(demo_program()))
    assert pair.device.offloaded is not None
    assert pair.device.offloaded.handles == off.handles
    mac = pair.driver.mac.hex(":")
    got = pair.deliver_to_guest([udp_packet("10.0.0.2", "10.0.0.1", 53, 5355, b"odd",
                                            dst_mac=mac),
                                 tcp_packet("10.0.0.2", "10.0.0.1", 80, 4000, b"s",
                                            dst_mac=mac)])
    assert got == []  # dropped (odd UDP port) and bounced (TCP) on the host
    assert pair.device.stats["offload_drop"] == pair.device.stats["offload_tx"] == 1
    # the guest reads the program's counters over the control queue: the same maps
    counted = pair.offload(client.lookup(off.handles[0], struct.pack("<I", 1)))
    assert counted == struct.pack("<Q", 1)


def test_a_channel_is_bound_to_its_guest() -> None:
    pair = live()
    agent = agent_for(pair, guest=0)
    agent.check(0, pair.driver.mac)
    agent.check(None, None)
    with pytest.raises(AgentRefused) as other:
        agent.check(1)
    assert other.value.errno == E.EPERM and "cannot reach guest 1" in str(other.value)
    with pytest.raises(AgentRefused) as mac:
        agent.check(None, bytes.fromhex("525400123457"))
    assert mac.value.errno == E.EPERM and "different guests" in str(mac.value)
    assert agent.counts["crossings"] == 2


def test_another_guest_s_map_handles_are_not_this_device_s() -> None:
    """Guest 1 holds map 1 on its device; guest 0's channel names handle 1 and reaches
    only guest 0's device, which holds no such map."""
    g0, g1 = live(), live()
    c1 = OffloadClient(g1.driver.xdp_caps)
    h = answers(agent_for(g1, 1), g1.device, c1.create_map(ARRAY)).handle
    answers(agent_for(g1, 1), g1.device, c1.update(h, K0, b"secret!!"))
    c0 = OffloadClient(g0.driver.xdp_caps)
    c0.maps[h] = c1.maps[h]  # a guest that pretends to hold guest 1's handle
    with pytest.raises(OffloadError) as refused:
        answers(agent_for(g0, 0), g0.device, c0.lookup(h, K0))
    assert refused.value.errno == E.EBADF
    assert g1.device.offload is not None and g1.device.offload.maps[h].map.lookup(K0) \
        == b"secret!!"


def test_no_live_device_is_enodev() -> None:
    pair = live()
    agent = agent_for(pair)
    req = next(OffloadClient(pair.driver.xdp_caps).create_map(ARRAY))
    with pytest.raises(AgentRefused) as none:
        agent.command(None, req.cls, req.command, req.body, req.room)
    assert none.value.errno == E.ENODEV and "not connected" in str(none.value)
    pair.device.write_status(0)
    with pytest.raises(AgentRefused) as reset:
        agent.command(pair.device, req.cls, req.command, req.body, req.room)
    assert reset.value.errno == E.ENODEV and "not live" in str(reset.value)


def test_what_the_control_queue_answers_err_without_a_result_so_does_the_agent() -> None:
    pair = live()
    agent = agent_for(pair)
    req = next(OffloadClient(pair.driver.xdp_caps).create_map(ARRAY))
    cases = [(VIRTIO_NET_CTRL_EBPF + 1, req.command, req.body, "not the offload's"),
             (req.cls, req.command, req.body[:20], "malformed"),
             (req.cls, 9, req.body, "unknown control class")]
    for cls, command, body, words in cases:
        out = agent.command(pair.device, cls, command, body, req.room)
        assert (out.ack, out.result) == (VIRTIO_NET_ERR, b"") and words in out.detail
    plain = live("default")
    out = agent.command(plain.device, req.cls, req.command, req.body, req.room)
    assert (out.ack, out.result) == (VIRTIO_NET_ERR, b"") and "no XDP offload" in out.detail
    assert agent.counts["refused"] == 4


def test_the_agent_does_not_need_the_feature_bit() -> None:
    """A driver without VIRTIO_NET_F_XDP_OFFLOAD (an unpatched guest kernel): the
    control queue refuses the class, the agent reaches the device's offload."""
    pair = live(features=SUPPORTED_FEATURES & ~(1 << VirtioNetFeature.VIRTIO_NET_F_XDP_OFFLOAD))
    assert pair.driver.xdp_caps is None and pair.device.offload is not None
    client = OffloadClient(pair.device.offload.caps)
    with pytest.raises(CommandRefused, match="without negotiating VIRTIO_NET_F_XDP_OFFLOAD"):
        pair.offload(client.create_map(ARRAY))  # the driver will not send the class
    m = answers(agent_for(pair), pair.device, client.create_map(ARRAY))
    assert m.handle in pair.device.offload.maps


def set_offload(pair: Pair, agent: HostAgent) -> Any:
    c = OffloadClient(pair.driver.xdp_caps)
    prog = Program("ret", "xdp", encode(assemble("mov %r0, 2\nexit\n")))
    req = next(c.load(prog))
    return agent.command(pair.device, req.cls, req.command, req.body, req.room)


def test_one_verification_at_a_time_and_a_reset_cancels_it() -> None:
    pair = live()
    agent = agent_for(pair)
    first = set_offload(pair, agent)
    assert first.job is not None
    busy = set_offload(pair, agent)
    assert busy.ack == VIRTIO_NET_ERR and busy.result == struct.pack("<I", E.EBUSY)
    pair.device.write_status(0)  # the guest resets its device meanwhile
    first.job.run()
    gone = agent.finish(pair.device, pair.device, first.job)
    assert gone.ack == VIRTIO_NET_ERR and gone.result == struct.pack("<I", E.ENODEV)
    assert pair.device.offloaded is None
    assert pair.negotiate()
    again = set_offload(pair, agent)
    assert again.job is not None
    again.job.run()
    other = live()
    moved = agent.finish(pair.device, other.device, again.job)  # the guest's device now
    assert moved.result == struct.pack("<I", E.ENODEV) and pair.device.offloaded is None


def test_a_control_queue_load_during_the_agent_s_wins_and_the_agent_hears_ebusy() -> None:
    pair = live()
    agent = agent_for(pair)
    mine = set_offload(pair, agent)
    assert mine.job is not None
    # the guest's driver sends its own SET_OFFLOAD over the control queue meanwhile
    c = OffloadClient(pair.driver.xdp_caps)
    h = pair.offload(c.create_map(demo_program().maps[0])).handle
    insns = rebind_map_refs(demo_program().insns, lambda pc, i: h)
    req = c._prog_request(VirtioNetBpfProgCmd.VIRTIO_NET_BPF_CMD_SET_OFFLOAD, insns, True,
                          room=4096)
    cmd = pair.driver.ctrl_command(req.cls, req.command, req.body, result_size=req.room)
    events = pair.device.notify(2 * pair.driver.max_pairs)
    (verify,) = [e for e in events if isinstance(e, OffloadVerify)]
    mine.job.run()
    late = agent.finish(pair.device, pair.device, mine.job)
    assert late.result == struct.pack("<I", E.EBUSY) and "replaced" in late.detail
    verify.job.run()
    pair._device_events(pair.device.finish_ctrl(verify.job))
    assert cmd.ok and pair.device.offloaded is not None
    assert pair.device.offloaded.handles == (h,) and cmd.ack == VIRTIO_NET_OK
