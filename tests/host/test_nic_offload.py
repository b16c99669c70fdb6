"""A SmartNIC's device (the `smartnic` profile and engine) driven by the guest's client
over a real control queue: programs translated for its micro-engine or refused with its
own errno and log line, its limits on maps and programs, QUERY's view of the image, and
the image run on the device model's receive path."""

from __future__ import annotations

import errno as E
import struct

import pytest

from guest.offload import OffloadClient, OffloadError
from virtio_spec.offload import XdpEngine
from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.nic import CODE_STORE, translate
from vxdp.bpf.program import MapSpec, MapType, Program, rebind_map_refs
from vxdp.packets import udp_packet
from vxdp.pair import Pair

COUNTS = MapSpec("counts", MapType.ARRAY, 4, 8, 4)
#: Counts frames by their first byte & 3 with an atomic add (what the NIC can do), drops
#: the ones whose byte is odd.
ATOMIC_ASM = """
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r4, %r2
add %r4, 14
mov %r0, 2
jgt %r4, %r3, out
ldxb %r6, [%r2+0]
and %r6, 3
stxw [%r10-4], %r6
mov %r2, %r10
add %r2, -4
lddw %r1, map_fd(0)
call 1
jeq %r0, 0, pass
mov %r1, 1
lock add [%r0+0], %r1
pass:
mov %r0, %r6
and %r0, 1
add %r0, 1
out:
exit
"""
#: The same counting with a plain read-modify-write, which the micro-engine cannot do.
PLAIN_ASM = ATOMIC_ASM.replace("mov %r1, 1\nlock add [%r0+0], %r1",
                               "ldxdw %r1, [%r0+0]\nadd %r1, 1\nstxdw [%r0+0], %r1")


def counting(text: str = ATOMIC_ASM) -> Program:
    return Program("count", "xdp", encode(assemble(text)), (COUNTS,))


def nic() -> tuple[Pair, OffloadClient]:
    pair = Pair.create("smartnic", xdp_engine="smartnic")
    assert pair.negotiate()
    return pair, OffloadClient(pair.driver.xdp_caps)


def refused(pair: Pair, op: object) -> OffloadError:
    with pytest.raises(OffloadError) as info:
        pair.offload(op)  # type: ignore[arg-type]
    return info.value


def test_the_nic_translates_what_it_loads_and_query_says_so() -> None:
    pair, c = nic()
    off = pair.offload(c.load(counting()))
    image = pair.device.offload.program.image  # type: ignore[union-attr]
    # the device translated the program as the guest sent it (its map handles rebound)
    sent = rebind_map_refs(counting().insns, lambda pc, index: off.handles[index])
    again = translate(Program("offloaded", "xdp", rebind_map_refs(sent, lambda pc, h: 0),
                              (COUNTS,)))
    assert image.words == again.words
    last = off.log.strip().splitlines()[-1]
    assert last == (f"[smartnic] program of {counting().insn_count} insns translated for "
                    f"vxme-32 ({len(image.words)} insns, {image.size} B, stack "
                    f"{image.stack_size} B) and loaded under device profile smartnic")
    info = pair.offload(c.query())
    assert info is not None and info.engine is XdpEngine.SMARTNIC
    assert info.image_len == image.size == 8 * len(image.words) > 0


def test_the_nic_refuses_what_its_verifier_accepted_with_its_own_errno_and_log() -> None:
    """netdevsim's model (offload-behaviour.md item 2): the device's line ends the log; here
    the translator's `[vxme]` line names the pc, and the maps the load made are freed."""
    pair, c = nic()
    err = refused(pair, c.load(counting(PLAIN_ASM)))
    assert err.errno == E.EOPNOTSUPP and err.what == "SET_OFFLOAD"
    lines = err.log.strip().splitlines()
    assert any(line.startswith("processed ") for line in lines)  # the verifier took it
    assert lines[-2] == ("[vxme] pc 17: (7b) *(u64 *)(r0 +0) = r1: map writes not "
                         "supported: the micro-engine changes map values with atomic adds "
                         "only")
    assert lines[-1].startswith(f"[smartnic] program of {counting(PLAIN_ASM).insn_count} "
                                f"insns refused by the vxme-32 translator: pc 17: ")
    assert pair.device.offload.maps == {} and c.maps == {}
    assert pair.offload(c.query()) is None
    # the same program under the same capabilities, on a host's device: loaded
    host = Pair.create("smartnic")
    assert host.negotiate()
    hc = OffloadClient(host.driver.xdp_caps)
    assert host.offload(hc.load(counting(PLAIN_ASM))).log.strip().endswith(
        "loaded on engine interp under device profile smartnic")


@pytest.mark.parametrize(("spec", "errno"), [
    (MapSpec("wide", MapType.HASH, 16, 56, 4), E.ENOMEM),  # 16 + 56 > the NIC's 64 B
    (MapSpec("flagged", MapType.HASH, 4, 8, 4, flags=1), E.EINVAL),  # BPF_F_NO_PREALLOC
    (MapSpec("lru", MapType.LRU_HASH, 4, 8, 4), E.EOPNOTSUPP),  # not advertised
    (MapSpec("huge", MapType.ARRAY, 4, 8, 300_000), E.ENOMEM),  # 3.4 MiB > 2 MiB
])
def test_the_nic_refuses_maps_past_its_limits(spec: MapSpec, errno: int) -> None:
    pair, c = nic()
    assert refused(pair, c.create_map(spec)).errno == errno
    assert pair.device.offload.maps == {}


def test_the_nic_holds_eight_maps() -> None:
    pair, c = nic()
    for _ in range(8):
        pair.offload(c.create_map(COUNTS))
    assert refused(pair, c.create_map(COUNTS)).errno == E.ENOSPC


def test_the_nic_refuses_programs_past_its_limits() -> None:
    """More instructions than advertised (the device's verifier), a helper it lacks (the
    verifier, under the capabilities), an image past its code store (the translator)."""
    pair, c = nic()
    long = Program("long", "xdp", encode(assemble("mov %r0, 2\n" * 2800 + "exit")))
    err = refused(pair, c.load(long))
    assert err.errno == E.E2BIG
    ktime = Program("ktime", "xdp", encode(assemble("call 5\nmov %r0, 2\nexit")))
    err = refused(pair, c.load(ktime))
    assert err.errno == E.EACCES and "bpf_ktime_get_ns#5" in err.log
    muls = Program("muls", "xdp", encode(assemble("mov %r1, 3\n" + "mul %r1, %r1\n" * 2000
                                                  + "mov %r0, 2\nexit")))
    err = refused(pair, c.load(muls))
    assert err.errno == E.E2BIG
    assert f"passes the code store of {CODE_STORE} instructions" in err.log.splitlines()[-1]


def test_the_model_path_runs_the_image() -> None:
    """Frames through the device model's receive path: the offloaded program runs as
    the NIC's image (on its micro-engine's simulator); the guest reads its counters."""
    pair, c = nic()
    off = pair.offload(c.load(counting()))
    mac = pair.driver.mac.hex(":")
    frames = [bytes([i % 4]) + udp_packet("10.0.0.2", "10.0.0.1", 1000 + i, 53, b"q" * 20,
                                          dst_mac=mac)[1:] for i in range(12)]
    got = pair.deliver_to_guest(frames)
    assert len(got) == 6  # the odd first bytes were dropped on the NIC
    (h,) = off.handles
    counts = [struct.unpack("<Q", pair.offload(c.lookup(h, struct.pack("<I", k))))[0]
              for k in range(4)]
    assert counts == [3, 3, 3, 3]
    assert pair.device.stats["offload_drop"] == 6 and pair.device.stats["offload_pass"] == 6
