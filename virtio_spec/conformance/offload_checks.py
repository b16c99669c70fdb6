"""Device-side checks of the XDP offload extension, clause by clause of its written spec
(docs/offload-spec.md; the clause ids are its bracketed numbers).

The checks drive the device through a plain `DriverSession`: bodies built with
`virtio_spec.offload`, programs hand-encoded (a few instructions each: this library
imports nothing of vxdp, so no assembler and no verifier).  Every clause needs
VIRTIO_NET_F_XDP_OFFLOAD offered, except [4.5.1], which checks the class without it.

PYTEST_DONT_REWRITE: a check's message is the same under pytest (the plugin) as under
`vxdp conformance`.
"""

from __future__ import annotations

import errno as E
import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..ctrl import VIRTIO_NET_ERR, VIRTIO_NET_OK
from ..features import VirtioFeature, VirtioNetFeature, mask_of
from ..offload import (
    CONFIG_FIELDS,
    VIRTIO_NET_CTRL_EBPF,
    XDP_ABI_VERSION,
    BpfMapType,
    VirtioNetBpfMapCmd,
    VirtioNetBpfProgCmd,
    VirtioNetCtrlEbpf,
    helper_mask,
    map_buf_len,
    virtio_net_ctrl_ebpf_map,
    virtio_net_ctrl_ebpf_prog,
    virtio_net_ebpf_prog_info,
)
from ..structs import VIRTIO_NET_CONFIG_OFFSETS, virtio_net_config
from .adapter import DeviceFactory, NotApplicable
from .probes import fill, read_segments, segments, wire
from .registry import VXDP, CheckFn, device_clause
from .session import DEFAULT_WANT, CtrlReply, DriverSession, SetupError, ethernet_frame

_F, _N = VirtioFeature, VirtioNetFeature
_M, _P = VirtioNetBpfMapCmd, VirtioNetBpfProgCmd
_PROG, _MAP = VirtioNetCtrlEbpf.VIRTIO_NET_CTRL_EBPF_PROG, VirtioNetCtrlEbpf.VIRTIO_NET_CTRL_EBPF_MAP
_XDP = _N.VIRTIO_NET_F_XDP_OFFLOAD
_WANT = DEFAULT_WANT | 1 << _XDP
#: Room for SET_OFFLOAD's result (errno, log length, the log).
LOG_ROOM = 4096
QUERY_ROOM = 4 + virtio_net_ebpf_prog_info.sizeof()
#: Helpers an XDP program may call without arguments (Linux uapi ids): what the helper
#: mask check calls, choosing one the device does not offer.
NO_ARGUMENT_HELPERS = (5, 7, 8, 118, 125)


# ----------------------------------------------------------------------------------------
# programs, hand-encoded


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One struct bpf_insn."""
    return struct.pack("<BBhi", code, dst | src << 4, off, imm)


def returning(action: int) -> bytes:
    """r0 = action; exit."""
    return insn(0xB7, 0, imm=action) + insn(0x95)


def reading_past_ctx() -> bytes:
    """r0 = *(u64 *)(r1 + 100); exit: outside struct xdp_md, which every verifier
    refuses ("invalid bpf_context access")."""
    return insn(0x79, 0, 1, 100) + insn(0x95)


def calling(helper: int) -> bytes:
    """call helper; r0 = XDP_PASS; exit."""
    return insn(0x85, imm=helper) + returning(2)


def referencing(handle: int) -> bytes:
    """r1 = map handle (LD_IMM64, src_reg BPF_PSEUDO_MAP_FD); r0 = XDP_PASS; exit."""
    return insn(0x18, 1, 1, imm=handle) + insn(0) + returning(2)


# ----------------------------------------------------------------------------------------
# the device, through a driver session


@dataclass(frozen=True)
class Answer:
    """A control reply read as the extension's result: ack, errno, the rest."""

    ack: int
    errno: int | None
    rest: bytes

    @classmethod
    def of(cls, reply: CtrlReply | None, what: str) -> Answer:
        assert reply is not None, f"{what}: the device never used the request"
        errno = struct.unpack_from("<I", reply.result)[0] if len(reply.result) >= 4 else None
        return cls(reply.ack, errno, reply.result[4:])


class Offload:
    """A live device with the offload negotiated, and its commands."""

    def __init__(self, make: DeviceFactory) -> None:
        self.s = DriverSession(make()).bring_up(_WANT)
        if not self.s.has(_XDP):
            raise SetupError("VIRTIO_NET_F_XDP_OFFLOAD offered but not negotiated")

    def caps(self) -> dict[str, int]:
        return capabilities(self.s)

    def prog(self, cmd: int, insns: bytes = b"", gpl: bool = True,
             room: int = LOG_ROOM) -> Answer:
        body = virtio_net_ctrl_ebpf_prog.build(dict(cmd=cmd, gpl_compatible=int(gpl),
                                                    insns=insns))
        return Answer.of(self.s.ctrl(VIRTIO_NET_CTRL_EBPF, _PROG, body, result=room),
                         f"PROG command {cmd}")

    def map(self, cmd: int, handle: int = 0, *, map_type: int = BpfMapType.BPF_MAP_TYPE_HASH,
            key_size: int = 4, value_size: int = 8, max_entries: int = 4, key: bytes = b"",
            value: bytes = b"", flags: int = 0, room: int = 16) -> Answer:
        buf = (key + value).ljust(map_buf_len(key_size, value_size), b"\0") if key else b""
        body = virtio_net_ctrl_ebpf_map.build(dict(
            cmd=cmd, map_type=map_type, key_size=key_size, value_size=value_size,
            max_entries=max_entries, map_flags=0, map_fd=handle, flags=flags, buf=buf))
        return Answer.of(self.s.ctrl(VIRTIO_NET_CTRL_EBPF, _MAP, body, result=room),
                         f"MAP command {cmd}")

    def fill_to(self, count: int) -> None:
        """Create one-entry maps until the device holds `count` (for the xdp_max_maps
        checks; n/a when that is too many to create in a check)."""
        if count > 1024:
            raise NotApplicable(f"{count} maps are too many to create in a check")
        for _ in range(count):
            self.create(max_entries=1)

    def create(self, *, max_entries: int = 4) -> int:
        """CREATE_MAP of a HASH map that must succeed; the handle."""
        a = self.map(_M.VIRTIO_NET_BPF_CMD_CREATE_MAP, max_entries=max_entries)
        assert a.ack == VIRTIO_NET_OK and a.errno == 0 and len(a.rest) >= 4, \
            f"CREATE_MAP of a HASH map refused: ack {a.ack} errno {a.errno}"
        return int(struct.unpack_from("<I", a.rest)[0])

    def update(self, handle: int, key: bytes, value: bytes, flags: int = 0) -> Answer:
        return self.map(_M.VIRTIO_NET_BPF_CMD_UPDATE_ELEM, handle, key=key, value=value,
                        flags=flags)

    def lookup(self, handle: int, key: bytes) -> Answer:
        return self.map(_M.VIRTIO_NET_BPF_CMD_LOOKUP_ELEM, handle, key=key, room=4 + 8)

    def set(self, insns: bytes) -> Answer:
        return self.prog(_P.VIRTIO_NET_BPF_CMD_SET_OFFLOAD, insns)


def capabilities(s: DriverSession) -> dict[str, int]:
    """The capability fields (xdp_helpers as one 256-bit integer)."""
    base = VIRTIO_NET_CONFIG_OFFSETS["xdp_max_insns"]
    size = virtio_net_config.sizeof() - base
    raw = s.dev.read_config(base, size)
    out: dict[str, int] = {}
    for name in CONFIG_FIELDS:
        at = VIRTIO_NET_CONFIG_OFFSETS[name] - base
        if name == "xdp_helpers":
            out[name] = helper_mask(struct.unpack_from("<4Q", raw, at))
        else:
            out[name] = struct.unpack_from("<I", raw, at)[0]
    return out


def _errno(a: Answer, want: int, what: str) -> None:
    name = E.errorcode.get(want, str(want))
    assert a.ack == VIRTIO_NET_ERR and a.errno == want, \
        f"{what}: ack {a.ack} errno {a.errno}, not VIRTIO_NET_ERR with {name}"


def _ok(a: Answer, what: str) -> None:
    assert a.ack == VIRTIO_NET_OK and a.errno == 0, \
        f"{what}: ack {a.ack} errno {a.errno}, not VIRTIO_NET_OK with errno 0"


def _clause(id: str, title: str, must: str, *, requires: Sequence[int] = (_XDP,)
            ) -> Callable[[CheckFn], CheckFn]:
    return device_clause(id, title, must, requires=requires, origin=VXDP)


# ----------------------------------------------------------------------------------------
# §2 feature bit, §3 configuration


@_clause("2.2.1", "offload feature dependencies",
         "The device must refuse FEATURES_OK when XDP_OFFLOAD is accepted without CTRL_VQ or "
         "without VERSION_1.")
def check_offload_2_2_1_dependencies(make: DeviceFactory) -> None:
    """The device MUST NOT offer VIRTIO_NET_F_XDP_OFFLOAD unless it offers
    VIRTIO_NET_F_CTRL_VQ and VIRTIO_F_VERSION_1, and MUST refuse FEATURES_OK when the
    driver accepted VIRTIO_NET_F_XDP_OFFLOAD without both (docs/offload-spec.md §2.2.1)."""
    s = DriverSession(make())
    need = mask_of([_F.VIRTIO_F_VERSION_1, _N.VIRTIO_NET_F_CTRL_VQ])
    assert s.offered & need == need, "XDP_OFFLOAD offered without CTRL_VQ and VERSION_1"
    for features in (mask_of([_F.VIRTIO_F_VERSION_1, _XDP]),
                     mask_of([_N.VIRTIO_NET_F_CTRL_VQ, _XDP])):
        assert not s.negotiate(exact=features), f"FEATURES_OK taken for {features:#x}"
    assert s.negotiate(exact=need | 1 << _XDP), \
        "FEATURES_OK refused for XDP_OFFLOAD with its dependencies"


@_clause("3.2.1", "xdp_abi_version is 1",
         "The device must set xdp_abi_version to 1.")
def check_offload_3_2_1_abi(make: DeviceFactory) -> None:
    """The device MUST set xdp_abi_version to 1 (docs/offload-spec.md §3.2.1)."""
    abi = capabilities(DriverSession(make()))["xdp_abi_version"]
    assert abi == XDP_ABI_VERSION, f"xdp_abi_version {abi}"


@_clause("3.2.2", "capability limits are non-zero",
         "The device must set xdp_max_insns, xdp_max_maps, xdp_max_map_mem_kib and "
         "xdp_map_types to non-zero values.")
def check_offload_3_2_2_limits(make: DeviceFactory) -> None:
    """The device MUST set xdp_max_insns, xdp_max_maps, xdp_max_map_mem_kib and
    xdp_map_types to non-zero values (docs/offload-spec.md §3.2.2)."""
    caps = capabilities(DriverSession(make()))
    for name in ("xdp_max_insns", "xdp_max_maps", "xdp_max_map_mem_kib", "xdp_map_types"):
        assert caps[name] > 0, f"{name} is 0"


@_clause("3.2.3", "capabilities never change",
         "The device must show the same capability fields before FEATURES_OK, after "
         "DRIVER_OK and after a reset.")
def check_offload_3_2_3_stable(make: DeviceFactory) -> None:
    """The device MUST NOT change the capability fields while it exists
    (docs/offload-spec.md §3.2.3)."""
    s = DriverSession(make())
    before = capabilities(s)
    s.bring_up(_WANT)
    live = capabilities(s)
    s.reset()
    after = capabilities(s)
    assert before == live == after, f"capabilities {before} then {live} then {after}"


# ----------------------------------------------------------------------------------------
# §4.5 the control class


@_clause("4.5.1", "offload class refused when not negotiated",
         "Without XDP_OFFLOAD negotiated the device must answer class VIRTIO_NET_CTRL_EBPF "
         "with VIRTIO_NET_ERR.", requires=(_N.VIRTIO_NET_F_CTRL_VQ,))
def check_offload_4_5_1_needs_feature(make: DeviceFactory) -> None:
    """The device MUST answer a command of class VIRTIO_NET_CTRL_EBPF with VIRTIO_NET_ERR
    when VIRTIO_NET_F_XDP_OFFLOAD was not negotiated (docs/offload-spec.md §4.5.1)."""
    s = DriverSession(make()).bring_up(DEFAULT_WANT & ~(1 << _XDP))
    query = virtio_net_ctrl_ebpf_prog.build(dict(cmd=_P.VIRTIO_NET_BPF_CMD_QUERY,
                                                 gpl_compatible=0, insns=b""))
    reply = s.ctrl(VIRTIO_NET_CTRL_EBPF, _PROG, query, result=QUERY_ROOM)
    assert reply is not None, "request never used"
    assert reply.ack == VIRTIO_NET_ERR, f"ack {reply.ack} without XDP_OFFLOAD negotiated"


@_clause("4.5.2", "results after the ack",
         "Offload results must go into the device-writable buffers after the ack, never "
         "into the driver's readable request; used.len covers them.")
def check_offload_4_5_2_results_after_ack(make: DeviceFactory) -> None:
    """The device MUST write results into the device-writable buffers after the ack and
    MUST NOT write the driver's request; used.len MUST cover the ack and the result
    (docs/offload-spec.md §4.5.2).  A valid CREATE_MAP and a QUERY: a device answering
    VIRTIO_NET_ERR to everything fails here (no handle, no errno 0)."""
    s = DriverSession(make()).bring_up(_WANT)
    create = virtio_net_ctrl_ebpf_map.build(dict(
        cmd=_M.VIRTIO_NET_BPF_CMD_CREATE_MAP, map_type=BpfMapType.BPF_MAP_TYPE_HASH,
        key_size=4, value_size=8, max_entries=16, map_flags=0, map_fd=0, flags=0, buf=b""))
    query = virtio_net_ctrl_ebpf_prog.build(dict(cmd=_P.VIRTIO_NET_BPF_CMD_QUERY,
                                                 gpl_compatible=0, insns=b""))
    mem = s.memory()
    for command, body, room, need in ((_MAP, create, 8, 9), (_PROG, query, QUERY_ROOM, 5)):
        head = s.add(s.ctrlq, [bytes([VIRTIO_NET_CTRL_EBPF, command]), body], [1, room])
        segs = segments(s, s.ctrlq, head)
        before = read_segments(mem, segs)
        fill(mem, segments(s, s.ctrlq, head, writable=True))
        s.kick(s.ctrlq)
        assert read_segments(mem, segs) == before, \
            f"command {command}: the device wrote into the readable request"
        used = [u for u in s.reap(s.ctrlq) if u.id == head]
        assert used, f"command {command}: request never used"
        u = used[0]
        assert u.data and u.data[0] in (VIRTIO_NET_OK, VIRTIO_NET_ERR), \
            f"command {command}: ack {u.data[:1].hex()}"
        assert u.len >= need, f"command {command}: used.len {u.len} leaves no result " \
                              f"(at least {need} bytes: ack, errno" \
                              f"{', handle' if command == _MAP else ''})"
        errno = struct.unpack_from("<I", u.data, 1)[0]
        if command == _MAP:
            assert u.data[0] == VIRTIO_NET_OK and errno == 0, \
                f"CREATE_MAP of a HASH map: ack {u.data[0]} errno {errno}"


@_clause("4.5.3", "ack agrees with errno",
         "The device must ack VIRTIO_NET_OK exactly when it writes errno 0.")
def check_offload_4_5_3_ack_and_errno(make: DeviceFactory) -> None:
    """The device MUST ack VIRTIO_NET_OK exactly when it writes errno 0
    (docs/offload-spec.md §4.5.3): a success, a miss, a refusal."""
    d = Offload(make)
    h = d.create()
    answers = [d.update(h, bytes(4), bytes(8)), d.lookup(h, b"\x01\0\0\0"),
               d.prog(_P.VIRTIO_NET_BPF_CMD_QUERY, room=QUERY_ROOM), d.set(reading_past_ctx())]
    assert any(a.errno for a in answers), "nothing was refused: the check proves nothing"
    for a in answers:
        assert a.errno is not None, f"ack {a.ack} without an errno"
        assert (a.ack == VIRTIO_NET_OK) == (a.errno == 0), \
            f"ack {a.ack} with errno {a.errno}"


@_clause("4.5.4", "map handles are non-zero and distinct",
         "CREATE_MAP must return a non-zero handle no other live map has.")
def check_offload_4_5_4_handles(make: DeviceFactory) -> None:
    """The device MUST return a non-zero map handle from CREATE_MAP that no other map it
    holds has (docs/offload-spec.md §4.5.4)."""
    d = Offload(make)
    count = min(4, d.caps()["xdp_max_maps"])
    handles = [d.create() for _ in range(count)]
    assert 0 not in handles, f"handle 0 among {handles}"
    assert len(set(handles)) == len(handles), f"handles {handles} repeat"


@_clause("4.5.5", "map types not offered are refused",
         "CREATE_MAP of a map type whose bit in xdp_map_types is clear must fail with "
         "EOPNOTSUPP.")
def check_offload_4_5_5_map_types(make: DeviceFactory) -> None:
    """The device MUST refuse CREATE_MAP of a map type whose bit in xdp_map_types is
    clear with EOPNOTSUPP, and create nothing (docs/offload-spec.md §4.5.5)."""
    d = Offload(make)
    types = d.caps()["xdp_map_types"]
    missing = next((t for t in range(1, 32) if not types >> t & 1), None)
    if missing is None:
        raise NotApplicable("every map type is offered")
    _errno(d.map(_M.VIRTIO_NET_BPF_CMD_CREATE_MAP, map_type=missing), E.EOPNOTSUPP,
           f"CREATE_MAP of map type {missing}")


@_clause("4.5.6", "xdp_max_maps is enforced",
         "CREATE_MAP beyond xdp_max_maps maps must fail with ENOSPC.")
def check_offload_4_5_6_max_maps(make: DeviceFactory) -> None:
    """The device MUST refuse CREATE_MAP when it holds xdp_max_maps maps, with ENOSPC
    (docs/offload-spec.md §4.5.6)."""
    d = Offload(make)
    top = d.caps()["xdp_max_maps"]
    d.fill_to(top)
    _errno(d.map(_M.VIRTIO_NET_BPF_CMD_CREATE_MAP, max_entries=1), E.ENOSPC,
           f"CREATE_MAP number {top + 1} (xdp_max_maps {top})")


@_clause("4.5.7", "map handles are checked",
         "Every map command with a handle the device does not hold must fail with EBADF.")
def check_offload_4_5_7_unknown_handles(make: DeviceFactory) -> None:
    """The device MUST check the handle of every map command and answer one it does not
    hold with EBADF (docs/offload-spec.md §4.5.7)."""
    d = Offload(make)
    h = d.create()
    d.update(h, bytes(4), bytes(8))
    bogus = h + 1000
    _errno(d.update(bogus, bytes(4), bytes(8)), E.EBADF, f"UPDATE_ELEM of handle {bogus}")
    _errno(d.lookup(bogus, bytes(4)), E.EBADF, f"LOOKUP_ELEM of handle {bogus}")
    _errno(d.map(_M.VIRTIO_NET_BPF_CMD_DELETE_ELEM, bogus, key=bytes(4)), E.EBADF,
           f"DELETE_ELEM of handle {bogus}")
    _errno(d.map(_M.VIRTIO_NET_BPF_CMD_FREE_MAP, bogus), E.EBADF, f"FREE_MAP of handle {bogus}")


@_clause("4.5.8", "element commands follow kernel maps",
         "LOOKUP returns what UPDATE wrote and ENOENT for a missing key; NOEXIST on a "
         "present key EEXIST; EXIST on a missing key ENOENT; GET_NEXT after the last key "
         "ENOENT.")
def check_offload_4_5_8_elements(make: DeviceFactory) -> None:
    """The device MUST answer element commands as a kernel map does
    (docs/offload-spec.md §4.5.8)."""
    d = Offload(make)
    h = d.create()
    k0, k1, v = b"\x01\0\0\0", b"\x02\0\0\0", bytes(range(8))
    _errno(d.lookup(h, k0), E.ENOENT, "LOOKUP_ELEM of a key never written")
    _errno(d.update(h, k0, v, flags=2), E.ENOENT, "UPDATE_ELEM BPF_EXIST of a missing key")
    _ok(d.update(h, k0, v), "UPDATE_ELEM")
    _errno(d.update(h, k0, v, flags=1), E.EEXIST, "UPDATE_ELEM BPF_NOEXIST of a present key")
    got = d.lookup(h, k0)
    _ok(got, "LOOKUP_ELEM")
    assert got.rest[:8] == v, f"LOOKUP_ELEM returned {got.rest[:8].hex()}, {v.hex()} written"
    first = d.map(_M.VIRTIO_NET_BPF_CMD_GET_FIRST, h, key=bytes(4), room=8)
    _ok(first, "GET_FIRST")
    assert first.rest[:4] == k0, f"GET_FIRST {first.rest[:4].hex()} of a one-key map"
    _errno(d.map(_M.VIRTIO_NET_BPF_CMD_GET_NEXT, h, key=k0, room=8), E.ENOENT,
           "GET_NEXT after the last key")
    _errno(d.map(_M.VIRTIO_NET_BPF_CMD_DELETE_ELEM, h, key=k1), E.ENOENT,
           "DELETE_ELEM of a missing key")


@_clause("4.5.9", "results that cannot fit are refused before acting",
         "A command whose result does not fit the writable room must be refused (EMSGSIZE) "
         "before it is carried out: no map is created.")
def check_offload_4_5_9_room(make: DeviceFactory) -> None:
    """The device MUST refuse a command whose result does not fit the writable room after
    the ack before carrying it out (docs/offload-spec.md §4.5.9).  Fill the device to
    xdp_max_maps - 1, send CREATE_MAP with room for the errno only, then one more with
    room: if the first had made a map, the second would find the device full."""
    d = Offload(make)
    top = d.caps()["xdp_max_maps"]
    d.fill_to(top - 1)
    _errno(d.map(_M.VIRTIO_NET_BPF_CMD_CREATE_MAP, max_entries=1, room=4), E.EMSGSIZE,
           "CREATE_MAP with 4 bytes of room for an 8-byte result")
    last = d.map(_M.VIRTIO_NET_BPF_CMD_CREATE_MAP, max_entries=1)
    _ok(last, f"CREATE_MAP number {top} (the refused one must not have counted)")


@_clause("4.5.10", "xdp_max_insns is enforced",
         "SET_OFFLOAD of more than xdp_max_insns instructions must fail with E2BIG.")
def check_offload_4_5_10_max_insns(make: DeviceFactory) -> None:
    """The device MUST refuse SET_OFFLOAD of more than xdp_max_insns instructions with
    E2BIG (docs/offload-spec.md §4.5.10)."""
    d = Offload(make)
    top = d.caps()["xdp_max_insns"]
    if top > 65536:
        raise NotApplicable(f"xdp_max_insns {top}: the program would not fit a check")
    big = insn(0xB7, 0, imm=2) * top + insn(0x95)
    _errno(d.set(big), E.E2BIG, f"SET_OFFLOAD of {top + 1} insns (xdp_max_insns {top})")
    _errno(d.prog(_P.VIRTIO_NET_BPF_CMD_QUERY, room=QUERY_ROOM), E.ENOENT,
           "QUERY after the refused SET_OFFLOAD")


@_clause("4.5.11", "the device verifies every program",
         "The device must refuse an unsafe program with EACCES and a non-empty log.")
def check_offload_4_5_11_verifies(make: DeviceFactory) -> None:
    """The device MUST verify every program it is given, whatever the driver checked,
    and refuse one that is unsafe with EACCES and a non-empty log
    (docs/offload-spec.md §4.5.11)."""
    d = Offload(make)
    a = d.set(reading_past_ctx())
    _errno(a, E.EACCES, "SET_OFFLOAD of a program reading past struct xdp_md")
    size = struct.unpack_from("<I", a.rest)[0] if len(a.rest) >= 4 else 0
    assert size > 0 and a.rest[4:4 + size].strip(), "the refusal came without a log"
    _ok(d.set(returning(2)), "SET_OFFLOAD of `r0 = XDP_PASS; exit`")


@_clause("4.5.12", "helpers not offered are refused",
         "The device must refuse a program that calls a helper whose bit in xdp_helpers "
         "is clear.")
def check_offload_4_5_12_helpers(make: DeviceFactory) -> None:
    """The device MUST refuse a program that calls a helper whose bit in xdp_helpers is
    clear (docs/offload-spec.md §4.5.12)."""
    d = Offload(make)
    mask = d.caps()["xdp_helpers"]
    helper = next((h for h in NO_ARGUMENT_HELPERS if not mask >> h & 1), None)
    if helper is None:
        raise NotApplicable(f"every helper of {NO_ARGUMENT_HELPERS} is offered")
    a = d.set(calling(helper))
    assert a.ack == VIRTIO_NET_ERR and a.errno, \
        f"SET_OFFLOAD of a call to helper {helper}, not in xdp_helpers: ack {a.ack} " \
        f"errno {a.errno}"


@_clause("4.5.13", "map references are checked",
         "The device must refuse a program whose map reference names a handle it does not "
         "hold, with EBADF.")
def check_offload_4_5_13_map_references(make: DeviceFactory) -> None:
    """The device MUST refuse a program whose map reference names a handle the device
    does not hold, with EBADF (docs/offload-spec.md §4.5.13)."""
    d = Offload(make)
    h = d.create()
    _errno(d.set(referencing(h + 1000)), E.EBADF,
           f"SET_OFFLOAD referencing map handle {h + 1000}")
    _ok(d.set(referencing(h)), f"SET_OFFLOAD referencing map handle {h}")


@_clause("4.5.14", "maps in use are not freed",
         "FREE_MAP of a map the offloaded program uses must fail with EBUSY; after "
         "UNSET_OFFLOAD it must succeed.")
def check_offload_4_5_14_busy(make: DeviceFactory) -> None:
    """The device MUST refuse FREE_MAP of a map the offloaded program uses, with EBUSY;
    after UNSET_OFFLOAD it MUST free it (docs/offload-spec.md §4.5.14)."""
    d = Offload(make)
    h = d.create()
    _ok(d.set(referencing(h)), "SET_OFFLOAD")
    _errno(d.map(_M.VIRTIO_NET_BPF_CMD_FREE_MAP, h), E.EBUSY, "FREE_MAP of the program's map")
    _ok(d.prog(_P.VIRTIO_NET_BPF_CMD_UNSET_OFFLOAD, room=4), "UNSET_OFFLOAD")
    _ok(d.map(_M.VIRTIO_NET_BPF_CMD_FREE_MAP, h), "FREE_MAP after UNSET_OFFLOAD")
    _errno(d.lookup(h, bytes(4)), E.EBADF, "LOOKUP_ELEM of the freed map")


@_clause("4.5.15", "QUERY reports the program",
         "QUERY must answer ENOENT with no program, else the instruction count and the "
         "SHA-256 of the instructions as sent.")
def check_offload_4_5_15_query(make: DeviceFactory) -> None:
    """The device MUST answer QUERY with ENOENT when no program is offloaded, and
    otherwise with the program's instruction count and the SHA-256 of the instructions
    as the driver sent them (docs/offload-spec.md §4.5.15)."""
    d = Offload(make)
    _errno(d.prog(_P.VIRTIO_NET_BPF_CMD_QUERY, room=QUERY_ROOM), E.ENOENT,
           "QUERY with no program")
    h = d.create()
    sent = referencing(h)
    _ok(d.set(sent), "SET_OFFLOAD")
    a = d.prog(_P.VIRTIO_NET_BPF_CMD_QUERY, room=QUERY_ROOM)
    _ok(a, "QUERY")
    info = virtio_net_ebpf_prog_info.parse(a.rest.ljust(virtio_net_ebpf_prog_info.sizeof(),
                                                        b"\0"))
    assert info.insn_cnt == len(sent) // 8, f"insn_cnt {info.insn_cnt}, {len(sent) // 8} sent"
    assert bytes(info.digest) == hashlib.sha256(sent).digest(), \
        "digest is not the SHA-256 of the instructions as sent"
    assert info.map_cnt == 1, f"map_cnt {info.map_cnt} for a program using one map"


@_clause("4.5.16", "removing nothing is not an error",
         "UNSET_OFFLOAD with no program offloaded must answer errno 0.")
def check_offload_4_5_16_unset_nothing(make: DeviceFactory) -> None:
    """The device MUST answer UNSET_OFFLOAD with errno 0 when no program is offloaded
    (docs/offload-spec.md §4.5.16)."""
    d = Offload(make)
    for attempt in (1, 2):
        _ok(d.prog(_P.VIRTIO_NET_BPF_CMD_UNSET_OFFLOAD, room=4),
            f"UNSET_OFFLOAD with no program (attempt {attempt})")


# ----------------------------------------------------------------------------------------
# §5 the receive path, §6 reset


@_clause("5.1.1", "the offloaded program sees every frame first",
         "The device must run the offloaded program on every frame before it places the "
         "frame in a receive queue; a dropped frame never reaches the driver.")
def check_offload_5_1_1_receive_path(make: DeviceFactory) -> None:
    """The device MUST run the offloaded program on every frame before it places the
    frame in a receive queue; a frame the program drops MUST NOT reach the driver
    (docs/offload-spec.md §5.1.1).  Frames pass with XDP_PASS offloaded (the wire
    works), then none with XDP_DROP."""
    d = Offload(make)
    dev = wire(d.s)
    if dev is None:
        raise NotApplicable("the adapter cannot put frames on the device's wire")
    mac = d.s.dev.read_config(VIRTIO_NET_CONFIG_OFFSETS["mac"], 6)
    for action, want in ((2, 4), (1, 0)):
        _ok(d.set(returning(action)), f"SET_OFFLOAD of `r0 = {action}; exit`")
        d.s.post_rx(4, 2048)
        dev.receive([ethernet_frame(i, dst=mac) for i in range(4)])
        got = [u for u in d.s.reap(d.s.rxq()) if u.len > d.s.hdr_size]
        verdict = "XDP_PASS" if action == 2 else "XDP_DROP"
        assert len(got) == want, f"{len(got)} of 4 frames reached the driver with " \
                                 f"{verdict} offloaded"


@_clause("6.1.1", "reset destroys offloaded objects",
         "A device reset must destroy the program and every map: QUERY answers ENOENT and "
         "the old handles EBADF.")
def check_offload_6_1_1_reset(make: DeviceFactory) -> None:
    """A device reset MUST destroy the offloaded program and every map
    (docs/offload-spec.md §6.1.1)."""
    d = Offload(make)
    h = d.create()
    _ok(d.update(h, bytes(4), bytes(8)), "UPDATE_ELEM")
    _ok(d.set(referencing(h)), "SET_OFFLOAD")
    d.s.bring_up(_WANT)  # resets first
    _errno(d.prog(_P.VIRTIO_NET_BPF_CMD_QUERY, room=QUERY_ROOM), E.ENOENT,
           "QUERY after a reset")
    _errno(d.lookup(h, bytes(4)), E.EBADF, f"LOOKUP_ELEM of handle {h} after a reset")


__all__ = [name for name in dir() if name.startswith("check_")]
