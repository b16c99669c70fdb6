"""A device's saved state (host.migration) between two device models over one guest
memory (vxdp.pair): what moves (features, status, config, control-queue state, ring
indices, maps with every entry, the program as sent), what a destination refuses, and
saved state corrupted one field at a time, each refused with an error naming the field."""

from __future__ import annotations

import copy
import errno as E
import hashlib
import struct
from collections.abc import Callable
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from guest.offload import Answer, OffloadClient
from host import Device, OffloadVerify, get_profile
from host.migration import (
    STATE_VERSION,
    Destination,
    encode,
    finish,
    load,
    restore,
    save,
    shortfalls,
)
from virtio_spec.ctrl import VIRTIO_NET_OK, VirtioNetCtrlClass, VirtioNetCtrlRx
from virtio_spec.features import VirtioNetFeature
from virtio_spec.offload import HOST, RFC2019, SMARTNIC
from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode as encode_insns
from vxdp.bpf.program import MapSpec, MapType
from vxdp.errors import MigrationError, StateError
from vxdp.packets import udp_packet
from vxdp.pair import InProcessTransport, Pair

from .test_offload import counting

K = struct.pack("<I", 0)


def to_guest(pair: Pair, n: int) -> list[bytes]:
    mac = pair.driver.mac.hex(":")
    return [udp_packet("10.0.0.2", "10.0.0.1", 1000 + i, 53, b"q" * 20, dst_mac=mac)
            for i in range(n)]


def offloaded(profile: str = "rfc2019") -> tuple[Pair, OffloadClient, int, int]:
    """A live pair with the counting program offloaded, 5 frames counted, and a hash
    map with two entries the guest wrote; (pair, client, counter handle, hash handle)."""
    pair = Pair.create(profile)
    assert pair.negotiate()
    client = OffloadClient(pair.driver.xdp_caps)
    pair.offload(client.load(counting()))
    assert client.offloaded is not None
    (counter,) = client.offloaded.handles
    table = pair.offload(client.create_map(MapSpec("t", MapType.HASH, 4, 4, 8))).handle
    pair.offload(client.update(table, b"\x01\0\0\0", b"one!"))
    pair.offload(client.update(table, b"\x02\0\0\0", b"two!"))
    assert len(pair.deliver_to_guest(to_guest(pair, 5))) == 5
    return pair, client, counter, table


def stop_all(device: Device) -> dict[int, int]:
    out = {}
    for index in range(device.num_queues):
        stopped = device.stop_queue(index)
        if stopped is not None:
            out[index] = stopped[0]
    return out


def move(pair: Pair, dest: str = "rfc2019", *, engine: str = "interp") -> Device:
    """Stop the pair's device, save, load and restore on a device of profile `dest`,
    resume its rings at the saved bases: the driver goes on with the new device."""
    old = pair.device
    addresses = {i: old.slot(i).addresses for i in range(old.num_queues)  # type: ignore[union-attr]
                 if old.slot(i) is not None}
    stop_all(old)
    saved = load(encode(save(old)))
    restoring = restore(saved, get_profile(dest), xdp_engine=engine)
    if restoring.job is not None:
        restoring.job.run()
    new = finish(restoring)
    new.set_memory(pair.memory)
    for q in saved.queues:
        new.set_queue(q.index, q.size, *addresses[q.index], base=q.base)
        new.enable_queue(q.index)
    pair.device = new
    pair.transport = InProcessTransport(new)
    return new


# ------------------------------------------------------------------------- what moves


def test_maps_program_and_indices_move_and_the_driver_goes_on() -> None:
    """docs/offload-spec.md [10.1.2] (the capabilities kept) and [10.1.4] (rings resume
    at their bases): the driver goes on as if nothing moved."""
    pair, client, counter, table = offloaded()
    old = pair.device
    new = move(pair, "host")  # a destination whose capabilities cover rfc2019's
    assert new.negotiated == old.negotiated and new.read_status() == old.read_status()
    assert new.config.mac == old.config.mac
    # the device keeps the capabilities its driver read ([3.2.3]), named as they are
    assert new.offload is not None and new.offload.caps == RFC2019
    assert new.offload.profile.name == "rfc2019"
    # every map and entry, under the same handles; the program as the guest sent it
    assert pair.offload(client.lookup(counter, K)) == struct.pack("<Q", 5)
    assert pair.offload(client.lookup(table, b"\x02\0\0\0")) == b"two!"
    info = pair.offload(client.query())
    assert info is not None and info.digest == old.offload.program.digest.hex()  # type: ignore[union-attr]
    # the program runs on the new device's receive path, counting on from 5
    assert len(pair.deliver_to_guest(to_guest(pair, 3))) == 3
    assert pair.offload(client.lookup(counter, K)) == struct.pack("<Q", 8)
    # new handles go on from where the source was (never reused)
    assert pair.offload(client.create_map(MapSpec("u", MapType.ARRAY, 4, 4, 1))).handle == 3
    # both directions of the rings go on where the old device stopped
    assert pair.send_from_guest(to_guest(pair, 2)) == to_guest(pair, 2)


def test_control_queue_state_moves() -> None:
    pair = Pair.create("default")
    assert pair.negotiate()
    rx = VirtioNetCtrlClass.VIRTIO_NET_CTRL_RX
    assert pair.ctrl(rx, VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_PROMISC, {"on": 0}).ack == \
        VIRTIO_NET_OK
    new = move(pair, "default")
    assert new.net.rx_filter.promisc is False
    other = udp_packet("10.0.0.2", "10.0.0.1", 1, 53, b"x" * 20, dst_mac="02:00:00:00:00:09")
    assert pair.deliver_to_guest([other]) == []  # still filtered on the destination
    assert len(pair.deliver_to_guest(to_guest(pair, 1))) == 1


def test_a_command_the_source_had_not_answered_is_answered_by_the_destination() -> None:
    pair, client, counter, _ = offloaded()
    op = client.update(counter, K, struct.pack("<Q", 1000))
    request = next(op)
    cmd = pair.driver.ctrl_command(request.cls, request.command, request.body,
                                   result_size=request.room)  # in the ring, not kicked
    new = move(pair, "rfc2019")
    assert not cmd.done
    pair.notify(new.num_queues - 1)
    assert cmd.done and cmd.ack == VIRTIO_NET_OK
    assert new.offload.maps[counter].map.lookup(K) == struct.pack("<Q", 1000)  # type: ignore[union-attr]


def test_a_verification_in_progress_is_done_again_by_the_destination() -> None:
    """The control queue stops while SET_OFFLOAD waits for its verification: the job is
    cancelled (nothing loaded on the source) and the destination answers the command
    from the ring, verifying the program itself."""
    pair = Pair.create("rfc2019")
    assert pair.negotiate()
    client = OffloadClient(pair.driver.xdp_caps)
    op = client.load(counting())
    request = next(op)  # CREATE_MAP
    request = op.send(Answer.of(pair.ctrl(request.cls, request.command, request.body,
                                          result_size=request.room)))
    cmd = pair.driver.ctrl_command(request.cls, request.command, request.body,
                                   result_size=request.room)  # SET_OFFLOAD
    ctrlq = pair.device.num_queues - 1
    events = pair.device.notify(ctrlq)
    job = next(e.job for e in events if isinstance(e, OffloadVerify))
    new = move(pair, "rfc2019")
    assert job.cancelled and not cmd.done
    assert new.offload is not None and new.offload.program is None
    pair.notify(ctrlq)
    assert cmd.done and cmd.ack == VIRTIO_NET_OK and new.offload.program is not None


# ------------------------------------------------------------------------- refusals


def test_a_destination_must_cover_features_queues_and_capabilities() -> None:
    """docs/offload-spec.md [10.1.2] on the destination, [10.2.1] for the front-end."""
    pair, *_ = offloaded()
    stop_all(pair.device)
    saved = load(encode(save(pair.device)))
    for dest, words in (("default", "VIRTIO_NET_F_XDP_OFFLOAD"),
                        ("smartnic", "fall short"), ("minimal", "VIRTIO_NET_F_CTRL_VQ")):
        with pytest.raises(MigrationError) as info:
            restore(saved, get_profile(dest))
        assert info.value.errno == E.EOPNOTSUPP and words in str(info.value)
    assert "helpers missing" in " ".join(shortfalls(
        Destination.of(get_profile("smartnic")), negotiated=saved.negotiated,
        max_queue_pairs=2, caps=RFC2019))
    assert shortfalls(Destination.of(get_profile("host")), negotiated=saved.negotiated,
                      max_queue_pairs=2, caps=RFC2019) == []
    assert SMARTNIC.shortfalls(HOST) and not HOST.shortfalls(RFC2019)


def test_saving_needs_every_ring_stopped() -> None:
    """docs/offload-spec.md [10.1.1]."""
    pair, *_ = offloaded()
    with pytest.raises(MigrationError, match=r"queue 0 \(receiveq1\) is running") as info:
        save(pair.device)
    assert info.value.errno == E.EBUSY


def test_the_destination_verifier_has_the_last_word() -> None:
    """docs/offload-spec.md [10.1.3]: a state whose program the destination's verifier refuses (here: an endless loop,
    with a digest that matches, so only the verifier can tell) is not restored."""
    pair, *_ = offloaded()
    stop_all(pair.device)
    doc = save(pair.device)
    loop = encode_insns(assemble("mov %r0, 2\nja -1\nexit\n"))
    doc["offload"]["program"].update(insns=loop, digest=hashlib.sha256(loop).digest())
    restoring = restore(load(encode(doc)), get_profile("rfc2019"))
    assert restoring.job is not None
    restoring.job.run()
    with pytest.raises(MigrationError, match="verifier refused") as info:
        finish(restoring)
    assert info.value.errno == E.EACCES
    assert restoring.device.offload.program is None  # type: ignore[union-attr]


# ------------------------------------------------------------------------- corrupted state


def _valid() -> dict[str, Any]:
    pair, *_ = offloaded()
    stop_all(pair.device)
    return save(pair.device)


Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.replace("[", ".").replace("]", "").split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return mutate


def _drop(path: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for p in parents:
            node = node[p]
        del node[last]
    return mutate


CORRUPTIONS: list[tuple[str, Mutation, str, str]] = [
    ("version", _set("version", STATE_VERSION + 1), "version", "reads version 1"),
    ("kind", _set("kind", "virtio-blk"), "kind", "must be one of"),
    ("offered", _set("features.offered", "lots"), "features.offered", "must be an integer"),
    ("negotiated not offered", _set("features.negotiated", 1 << 63),
     "features.negotiated", "were not offered"),
    ("negotiated breaks a rule", lambda d: d["features"].update(
        negotiated=d["features"]["negotiated"] & ~(1 << VirtioNetFeature.VIRTIO_NET_F_CTRL_VQ)),
     "features.negotiated", "refuses it as it would the driver"),
    ("status", _set("status", 0x4F), "status", "past FEATURES_OK"),
    ("status skips", _set("status", 0x0D), "status", "skips a step"),
    ("ctrl owner", _set("ctrl_owner", "nobody"), "ctrl_owner", "must be one of"),
    ("mac size", _set("config.mac", b"\x52\x54"), "config.mac", "must be 6"),
    ("mac multicast", _set("config.mac", b"\x01\0\0\0\0\1"), "config.mac", "not a unicast"),
    ("net status", _set("config.status", 0x80), "config.status", "does not define"),
    ("mtu", _set("config.mtu", 12), "config.mtu", "outside 68..65535"),
    ("pairs", _set("config.max_virtqueue_pairs", 0), "config.max_virtqueue_pairs", "outside"),
    ("curr pairs", _set("net.curr_queue_pairs", 3), "net.curr_queue_pairs", "outside 1..2"),
    ("guest offloads", _set("net.guest_offloads", 1 << 7), "net.guest_offloads",
     "not negotiated"),
    ("promisc", _set("net.rx_filter.promisc", 1), "net.rx_filter.promisc", "true or false"),
    ("unicast table", _set("net.rx_filter.unicast", [b"\x01\0\0\0\0\1"]),
     "net.rx_filter.unicast[0]", "other table"),
    ("vlan", _set("net.rx_filter.vlans", [5000]), "net.rx_filter.vlans[0]", "below 4096"),
    ("queue index", _set("queues.0.index", 9), "queues[0]", "does not exist"),
    ("queue twice", _set("queues.4.index", 0), "queues[4].index", "appears twice"),
    ("queue size", _set("queues.1.size", 100), "queues[1]", "not a power of 2"),
    ("queue base", _set("queues.2.base", 1 << 16), "queues[2].base", "outside"),
    ("caps", _set("offload.caps.xdp_abi_version", 2), "offload.caps.xdp_abi_version",
     "outside 1..1"),
    ("engine", _set("offload.engine", "fpga"), "offload.engine", "must be one of"),
    ("next handle", _set("offload.next_handle", 2), "offload.maps[1].handle", "outside 1..1"),
    ("handle twice", _set("offload.maps.1.handle", 1), "offload.maps[1].handle",
     "appears twice"),
    ("map type", _set("offload.maps.1.type", 9), "offload.maps[1].type", "xdp_map_types"),
    ("key size", _set("offload.maps.1.entries.0.0", b"\x01"), "offload.maps[1].entries[0].key",
     "must be 4 bytes"),
    ("value size", _set("offload.maps.1.entries.1.1", b"x" * 9),
     "offload.maps[1].entries[1].value", "must be 4 bytes"),
    ("key twice", lambda d: d["offload"]["maps"][1]["entries"].append(
        list(d["offload"]["maps"][1]["entries"][0])), "offload.maps[1].entries[2].key",
     "appears twice"),
    ("too many entries", _set("offload.maps.1.max_entries", 1), "offload.maps[1].entries",
     "at most 1"),
    ("array index", _set("offload.maps.0.entries.0.0", b"\x07\0\0\0"),
     "offload.maps[0].entries[0]", "not below max_entries 1"),
    ("map memory", _set("offload.maps.1.max_entries", 1 << 20), "offload.maps[1].max_entries",
     "xdp_max_map_mem_kib"),
    ("insns", lambda d: d["offload"]["program"].update(insns=d["offload"]["program"]["insns"]
                                                       + b"\0"),
     "offload.program.insns", "8-byte instructions"),
    ("digest", _set("offload.program.digest", bytes(32)), "offload.program.digest",
     "not the SHA-256"),
    ("gpl", _set("offload.program.gpl", "yes"), "offload.program.gpl", "true or false"),
    ("unknown field", _set("offload.program.secret", 1), "offload.program.secret",
     "unknown field"),
    ("missing field", _drop("net.guest_offloads"), "net.guest_offloads", "missing"),
    ("source", _set("source.frames_dropped", -1), "source.frames_dropped", "outside"),
]


@pytest.mark.parametrize("what, mutate, field, words", CORRUPTIONS,
                         ids=[c[0] for c in CORRUPTIONS])
def test_corrupted_state_is_refused_naming_the_field(what: str, mutate: Mutation,
                                                     field: str, words: str) -> None:
    doc = copy.deepcopy(_valid())
    mutate(doc)
    with pytest.raises(StateError) as info:
        saved = load(encode(doc))
        restore(saved, get_profile("rfc2019"))
    assert info.value.field == field, str(info.value)
    assert words in str(info.value)
    assert info.value.errno == E.EINVAL


def test_a_map_handle_the_program_names_must_be_saved() -> None:
    doc = _valid()
    del doc["offload"]["maps"][0]  # the counter the program references
    with pytest.raises(StateError) as info:
        restore(load(encode(doc)), get_profile("rfc2019"))
    assert info.value.field == "offload.program.insns"
    assert "names map handle 1, which this device does not hold" in str(info.value)


@pytest.mark.parametrize("data, words", [
    (b"\xc1", "not msgpack"), (msgpack.packb([1, 2]), "must be a map"),
    (b"\x81" * 3, "not msgpack")])
def test_bytes_that_are_no_state_are_refused(data: bytes, words: str) -> None:
    with pytest.raises(StateError, match=words):
        load(data)


def test_state_above_the_limit_is_refused_before_parsing() -> None:
    with pytest.raises(StateError, match="more than the 100 this destination reads"):
        load(b"\0" * 101, limit=100)
