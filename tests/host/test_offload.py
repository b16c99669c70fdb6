"""The device side of the XDP offload (host.offload) driven by the guest's client over a
real control queue (vxdp.pair): maps with the kernel's errnos, the program verified by
the device, the object lifecycle of shared/reference/offload-behaviour.md, hostile
commands, and the offloaded program on the device model's receive path."""

from __future__ import annotations

import errno as E
import hashlib
import struct
from collections.abc import Generator
from typing import TypeVar

import pytest

from guest.offload import Answer, OffloadClient, OffloadError, OffloadRequest
from host import (
    CtrlHandled,
    FrameDropped,
    OffloadChanged,
    OffloadVerify,
    XdpBounced,
    XdpRedirected,
)
from virtio_spec.ctrl import VIRTIO_NET_ERR, VIRTIO_NET_OK
from virtio_spec.offload import (
    VIRTIO_NET_CTRL_EBPF,
    VirtioNetBpfMapCmd,
    VirtioNetBpfProgCmd,
    VirtioNetCtrlEbpf,
    XdpProgState,
    virtio_net_ctrl_ebpf_map,
)
from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.program import (
    BPF_EXIST,
    BPF_NOEXIST,
    MapSpec,
    MapType,
    Program,
    rebind_map_refs,
)
from vxdp.packets import tcp_packet, udp_packet
from vxdp.pair import Pair
from vxdp.runtime.compare import demo_program

T = TypeVar("T")
HASH = MapSpec("h", MapType.HASH, 4, 8, 2)
ARRAY = MapSpec("a", MapType.ARRAY, 4, 8, 2)
K0, K1, K2 = (struct.pack("<I", i) for i in range(3))
V = bytes(range(8))

COUNT_ASM = """
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_fd(0)
call 1
jeq %r0, 0, out
ldxdw %r1, [%r0+0]
add %r1, 1
stxdw [%r0+0], %r1
out:
mov %r0, 2
exit
"""


def counting(max_entries: int = 1) -> Program:
    """Counts every frame in slot 0 of an ARRAY map (of `max_entries`) and passes it."""
    return Program("count", "xdp", encode(assemble(COUNT_ASM)),
                   (MapSpec("cnt", MapType.ARRAY, 4, 8, max_entries),))


def returning(action: int) -> Program:
    return Program(f"ret{action}", "xdp", encode(assemble(f"mov %r0, {action}\nexit\n")))


def live(profile: str = "host") -> tuple[Pair, OffloadClient]:
    pair = Pair.create(profile)
    assert pair.negotiate()
    return pair, OffloadClient(pair.driver.xdp_caps)


def refused(pair: Pair, op: object) -> OffloadError:
    with pytest.raises(OffloadError) as info:
        pair.offload(op)  # type: ignore[arg-type]
    return info.value


def to_guest(pair: Pair, n: int = 1, **kw: object) -> list[bytes]:
    mac = pair.driver.mac.hex(":")
    return [udp_packet("10.0.0.2", "10.0.0.1", 1000 + i, 53, b"q" * 20, dst_mac=mac, **kw)
            for i in range(n)]


# -------------------------------------------------------------------------- maps


def test_map_elements_follow_the_kernel_semantics() -> None:
    """offload-behaviour.md item 12: exist on a missing key ENOENT, noexist on a present
    key EEXIST, a full map E2BIG, dump returns what was written, getnext walks to
    ENOENT, delete works on a hash and is refused on an array (EINVAL)."""
    pair, c = live()
    h = pair.offload(c.create_map(HASH)).handle
    assert refused(pair, c.update(h, K0, V, BPF_EXIST)).errno == E.ENOENT
    pair.offload(c.update(h, K0, V))
    assert refused(pair, c.update(h, K0, V, BPF_NOEXIST)).errno == E.EEXIST
    pair.offload(c.update(h, K1, V[::-1]))
    assert refused(pair, c.update(h, K2, V)).errno == E.E2BIG  # max_entries 2
    assert pair.offload(c.lookup(h, K1)) == V[::-1]
    assert pair.offload(c.lookup(h, K2)) is None
    assert sorted(pair.offload(c.dump(h))) == [(K0, V), (K1, V[::-1])]
    first = pair.offload(c.next_key(h, None))
    second = pair.offload(c.next_key(h, first))
    assert {first, second} == {K0, K1} and pair.offload(c.next_key(h, second)) is None
    pair.offload(c.delete(h, K0))
    assert refused(pair, c.delete(h, K0)).errno == E.ENOENT
    a = pair.offload(c.create_map(ARRAY)).handle
    assert refused(pair, c.delete(a, K0)).errno == E.EINVAL
    assert pair.offload(c.lookup(a, K1)) == bytes(8)  # arrays hold every index


def test_map_limits_come_from_the_capabilities() -> None:
    pair, c = live("rfc2019")
    lru = MapSpec("lru", MapType.LRU_HASH, 4, 8, 2)
    err = refused(pair, c.create_map(lru))
    assert err.errno == E.EOPNOTSUPP and "LRU_HASH is not offered by device profile " \
                                           "rfc2019" in str(pair.trace.of_kind("ctrl")[-1].text)
    big = MapSpec("big", MapType.HASH, 64, 1024, 4200)  # 4.3 MiB > xdp_max_map_mem_kib
    assert refused(pair, c.create_map(big)).errno == E.ENOMEM
    for _ in range(16):
        pair.offload(c.create_map(ARRAY))
    assert refused(pair, c.create_map(ARRAY)).errno == E.ENOSPC  # xdp_max_maps 16
    assert len(pair.device.offload.maps) == 16


def test_handles_are_checked_and_never_reach_another_device() -> None:
    """A handle is this device's only: another guest's device answers EBADF, and its
    own maps are untouched."""
    a, ca = live()
    b, cb = live()
    h = a.offload(ca.create_map(HASH)).handle
    a.offload(ca.update(h, K0, V))
    cb.maps[h] = ca.maps[h]  # a guest that names another device's handle
    assert refused(b, cb.update(h, K0, bytes(8))).errno == E.EBADF
    assert refused(b, cb.free_map(h)).errno == E.EBADF
    assert a.offload(ca.lookup(h, K0)) == V


def test_free_of_a_map_the_program_uses_is_busy_until_unset() -> None:
    pair, c = live()
    off = pair.offload(c.load(counting()))
    (h,) = off.handles
    assert refused(pair, c.free_map(h)).errno == E.EBUSY
    assert pair.offload(c.unload()) is True
    assert c.maps == {} and pair.device.offload.maps == {}


def test_a_result_that_would_not_fit_is_refused_before_anything_is_done() -> None:
    """CREATE_MAP with no room for the handle: EMSGSIZE, and no map was created (its
    handle would be lost)."""
    pair, _ = live()
    body = virtio_net_ctrl_ebpf_map.build(dict(
        cmd=VirtioNetBpfMapCmd.VIRTIO_NET_BPF_CMD_CREATE_MAP, map_type=1, key_size=4,
        value_size=8, max_entries=4, map_flags=0, map_fd=0, flags=0, buf=b""))
    cmd = pair.ctrl(VIRTIO_NET_CTRL_EBPF, VirtioNetCtrlEbpf.VIRTIO_NET_CTRL_EBPF_MAP, body,
                    result_size=4)
    assert cmd.ack == VIRTIO_NET_ERR and struct.unpack("<I", cmd.result[:4])[0] == E.EMSGSIZE
    assert pair.device.offload.maps == {}


@pytest.mark.parametrize("mutate,errno", [
    (dict(cmd=9), E.EINVAL),                       # no such sub-command
    (dict(key_size=8), E.EINVAL),                  # sizes unlike the map's
    (dict(map_fd=77), E.EBADF),                    # no such handle
    (dict(buf=b"\0\0"), E.EINVAL),                 # buf shorter than the key
])
def test_malformed_map_commands_get_an_errno_and_the_device_stays_usable(
        mutate: dict[str, object], errno: int) -> None:
    pair, c = live()
    h = pair.offload(c.create_map(HASH)).handle
    fields = dict(cmd=VirtioNetBpfMapCmd.VIRTIO_NET_BPF_CMD_UPDATE_ELEM, map_type=1,
                  key_size=4, value_size=8, max_entries=2, map_flags=0, map_fd=h, flags=0,
                  buf=K0 + V)
    fields.update(mutate)
    cmd = pair.ctrl(VIRTIO_NET_CTRL_EBPF, VirtioNetCtrlEbpf.VIRTIO_NET_CTRL_EBPF_MAP,
                    bytes(virtio_net_ctrl_ebpf_map.build(fields)), result_size=4)
    assert cmd.ack == VIRTIO_NET_ERR
    assert struct.unpack("<I", cmd.result[:4])[0] == errno
    handled = [e for e in pair.trace.of_kind("ctrl")][-1]
    assert E.errorcode[errno] in handled.text  # the log line names the errno and why
    pair.offload(c.update(h, K0, V))  # and the next command works
    assert pair.offload(c.lookup(h, K0)) == V


# -------------------------------------------------------------------------- programs


def test_the_program_is_verified_by_the_device_and_queried() -> None:
    pair, c = live()
    off = pair.offload(c.load(demo_program()))
    assert off.log.rstrip().endswith("loaded on engine interp under device profile host")
    info = pair.offload(c.query())
    assert info is not None and info.state is XdpProgState.LOADED
    assert info.insn_cnt == demo_program().insn_count and info.tag == demo_program().tag
    # the digest is of the instructions as sent: map references carry the device's handles
    sent = rebind_map_refs(demo_program().insns, lambda pc, index: off.handles[index])
    assert info.digest == hashlib.sha256(sent).hexdigest() and info.map_cnt == 1
    changed = [e for e in pair.trace.of_kind("offload")]
    assert changed and changed[-1].data["tag"] == demo_program().tag


def test_carried_entries_are_written_before_the_program_is_set() -> None:
    """load(program, contents): every entry of a map written right after its CREATE and
    before SET_OFFLOAD (what a move onto another device carries over), so the first
    frame the program sees finds them."""
    pair, c = live()
    contents = {"cnt": [(K0, struct.pack("<Q", 41))], "unused": [(K1, V)]}
    sent: list[str] = []

    def recorded(op: Generator[OffloadRequest, Answer, T]
                 ) -> Generator[OffloadRequest, Answer, T]:
        request = next(op)
        while True:
            sent.append(request.what)
            try:
                request = op.send((yield request))
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    off = pair.offload(recorded(c.load(counting(), contents)))
    assert sent == ["CREATE_MAP", "UPDATE_ELEM", "SET_OFFLOAD"]
    pair.device.receive(to_guest(pair))
    assert pair.offload(c.lookup(off.handles[0], K0)) == struct.pack("<Q", 42)


def test_a_refused_program_returns_the_log_and_leaves_nothing_behind() -> None:
    """offload-behaviour.md item 2: the device's verifier refuses, the log ends with the
    device's own line; the maps the load created are freed again."""
    pair, c = live()
    bad = Program("bad", "xdp", encode(assemble(
        "lddw %r1, map_fd(0)\nldxdw %r0, [%r1+100]\nexit\n")), (HASH,))
    err = refused(pair, c.load(bad))
    assert err.errno == E.EACCES and err.what == "SET_OFFLOAD"
    lines = err.log.strip().splitlines()
    assert lines[-1].startswith("[vxdp] program of 4 insns refused under device profile host")
    assert any("processed" in line for line in lines)
    assert pair.device.offload.maps == {} and c.maps == {}
    assert pair.offload(c.query()) is None


def test_the_device_verifies_whatever_the_guest_checked() -> None:
    """A guest that skips its own check (or lies) is refused by the device: a helper the
    profile does not offer (bpf_redirect under rfc2019)."""
    pair, c = live("rfc2019")
    prog = Program("redir", "xdp", encode(assemble("mov %r1, 1\nmov %r2, 0\ncall 23\nexit\n")))
    assert not c.check(prog).accepted  # what the guest would have seen
    err = refused(pair, c.load(prog))
    assert err.errno == E.EACCES and "not offered by device profile rfc2019" in err.log


def test_size_and_unknown_handles_are_refused_before_verification() -> None:
    pair, c = live("rfc2019")
    big = Program("big", "xdp", encode(assemble("mov %r0, 2\n" * 4096 + "exit\n")))
    assert refused(pair, c.load(big)).errno == E.E2BIG
    assert not pair.trace.of_kind("offload_verify")  # never handed to the verifier
    bogus = Program("bogus", "xdp", encode(assemble("lddw %r1, map_fd(0)\nmov %r0, 2\n"
                                                     "exit\n")), (HASH,))
    insns = bytearray(bogus.insns)
    struct.pack_into("<i", insns, 4, 99)
    body = c._prog_request(VirtioNetBpfProgCmd.VIRTIO_NET_BPF_CMD_SET_OFFLOAD,
                           bytes(insns), True, room=4096).body
    cmd = pair.ctrl(VIRTIO_NET_CTRL_EBPF, VirtioNetCtrlEbpf.VIRTIO_NET_CTRL_EBPF_PROG, body,
                    result_size=4096)
    assert cmd.ack == VIRTIO_NET_ERR and struct.unpack("<I", cmd.result[:4])[0] == E.EBADF


def test_replace_and_unset_follow_the_kernel() -> None:
    """offload-behaviour.md item 7: removing what is not there is a silent no-op; a new
    program replaces the old one and the old one's maps are freed."""
    pair, c = live()
    assert pair.offload(c.unload()) is False
    assert pair.offload(c.unload()) is False
    first = pair.offload(c.load(counting()))
    second = pair.offload(c.load(counting()))
    assert set(c.maps) == set(second.handles) and not set(first.handles) & set(c.maps)
    assert set(pair.device.offload.maps) == set(second.handles)


def test_reset_destroys_every_offloaded_object() -> None:
    """offload-behaviour.md item 14: removing (here: resetting) the device destroys its
    programs and maps; an old handle is unknown to the new session (EBADF)."""
    pair, c = live()
    off = pair.offload(c.load(counting()))
    pair.reset()
    assert [e for e in pair.trace.of_kind("offload")][-1].data["tag"] is None
    assert pair.negotiate()
    assert pair.offload(c.query()) is None
    assert refused(pair, c.lookup(off.handles[0], K0)).errno == E.EBADF
    assert pair.device.offload.maps == {}


def test_reset_during_verification_cancels_the_load() -> None:
    """offload-behaviour.md item 15: a load in flight when the device goes fails: the
    verified program is never loaded."""
    pair, c = live()
    op = c.load(returning(2))
    request = next(op)
    cmd = pair.driver.ctrl_command(request.cls, request.command, request.body,
                                   result_size=request.room)
    events = pair.device.notify(2 * pair.driver.max_pairs)
    verify = [e for e in events if isinstance(e, OffloadVerify)]
    assert verify and not cmd.done  # the command waits for its verification
    pair.device.write_status(0)
    verify[0].job.run()
    assert pair.device.finish_ctrl(verify[0].job) == []
    assert pair.device.offloaded is None and pair.device.offload.program is None


def test_commands_behind_a_pending_load_wait_their_turn() -> None:
    pair, c = live()
    h = pair.offload(c.create_map(HASH)).handle
    load = next(c.load(returning(1)))
    first = pair.driver.ctrl_command(load.cls, load.command, load.body, result_size=load.room)
    upd = c._map_request(VirtioNetBpfMapCmd.VIRTIO_NET_BPF_CMD_UPDATE_ELEM, HASH, h,
                         key=K0, value=V)
    second = pair.driver.ctrl_command(upd.cls, upd.command, upd.body, result_size=4)
    events = pair.device.notify(2 * pair.driver.max_pairs)
    (verify,) = [e for e in events if isinstance(e, OffloadVerify)]
    assert not [e for e in events if isinstance(e, CtrlHandled)]
    assert pair.device.offload.maps[h].map.lookup(K0) is None  # the update waits
    verify.job.run()
    done = pair.device.finish_ctrl(verify.job)
    handled = [e for e in done if isinstance(e, CtrlHandled)]
    assert [h.ack for h in handled] == [VIRTIO_NET_OK, VIRTIO_NET_OK]
    assert any(isinstance(e, OffloadChanged) for e in done)
    pair._device_events(done)
    assert first.ok and second.ok
    assert pair.device.offload.maps[h].map.lookup(K0) == V


def test_a_device_without_the_offload_refuses_it() -> None:
    """offload-behaviour.md item 1: no offload backend, EOPNOTSUPP to the guest."""
    pair = Pair.create("default", extra_features=0)
    assert pair.negotiate()
    c = OffloadClient(pair.driver.xdp_caps)
    with pytest.raises(OffloadError, match="does not offer VIRTIO_NET_F_XDP_OFFLOAD"):
        c.check(returning(2))


def test_hostile_answers_are_errors_not_crashes() -> None:
    c = OffloadClient(None)
    op = c.create_map(HASH)
    next(op)
    with pytest.raises(OffloadError, match="does not agree with errno") as info:
        op.send(Answer(VIRTIO_NET_OK, struct.pack("<II", E.EPERM, 1)))
    assert info.value.errno == E.EPROTO
    op = c.create_map(HASH)
    next(op)
    with pytest.raises(OffloadError, match="does not implement the offload") as info:
        op.send(Answer(VIRTIO_NET_ERR, b""))
    assert info.value.errno == E.EOPNOTSUPP


# -------------------------------------------------------------------------- the receive path


def test_the_offloaded_program_runs_on_the_way_into_the_guest() -> None:
    pair, c = live()
    pair.offload(c.load(demo_program()))
    mac = pair.driver.mac.hex(":")
    frames = [udp_packet("10.0.0.2", "10.0.0.1", 7, 9, b"odd", dst_mac=mac),    # DROP
              udp_packet("10.0.0.2", "10.0.0.1", 7, 8, b"even", dst_mac=mac),   # PASS
              tcp_packet("10.0.0.2", "10.0.0.1", 7, 80, b"syn", dst_mac=mac)]   # TX
    events = pair.device.receive(frames)
    got = pair.deliver_to_guest([])
    drops = [e for e in events if isinstance(e, FrameDropped)]
    bounced = [e for e in events if isinstance(e, XdpBounced)]
    assert len(drops) == 1 and "XDP_DROP" in drops[0].reason
    assert len(bounced) == 1 and bounced[0].frame[:6] == frames[2][6:12]  # MACs swapped
    pair._device_events(events)
    assert pair.received[-1] == frames[1] and got == []
    stats = pair.device.stats
    assert (stats["offload_drop"], stats["offload_pass"], stats["offload_tx"]) == (1, 1, 1)


def test_redirect_and_faults_become_events_and_aborted_counts() -> None:
    pair, c = live()
    redir = Program("redir", "xdp", encode(assemble("mov %r1, 7\nmov %r2, 0\ncall 23\n"
                                                     "exit\n")))
    pair.offload(c.load(redir))
    events = pair.device.receive(to_guest(pair, 2))
    assert [e.ifindex for e in events if isinstance(e, XdpRedirected)] == [7, 7]
    pair.offload(c.load(returning(9)))  # not an xdp_action: ABORTED
    pair.device.receive(to_guest(pair, 1))
    assert pair.device.stats["offload_aborted"] == 1
