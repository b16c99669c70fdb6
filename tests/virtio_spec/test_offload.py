"""The XDP offload extension: bodies byte-exact to the 2019 RFC, results, capabilities."""

from __future__ import annotations

from typing import Any

import pytest
from construct import Container

from virtio_spec import offload as O
from virtio_spec.ctrl import VirtioNetCtrlClass, build_ctrl, check_command_allowed, parse_ctrl
from virtio_spec.errors import LocalProtocolError, RemoteProtocolError
from virtio_spec.features import VirtioFeature as F
from virtio_spec.features import VirtioNetFeature as N
from virtio_spec.features import mask_of
from virtio_spec.structs import virtio_net_config

P, M = O.VirtioNetBpfProgCmd, O.VirtioNetBpfMapCmd
PROG, MAP = O.VirtioNetCtrlEbpf.VIRTIO_NET_CTRL_EBPF_PROG, O.VirtioNetCtrlEbpf.VIRTIO_NET_CTRL_EBPF_MAP
# r0 = 2 (XDP_PASS); exit
INSNS = bytes.fromhex("b700000002000000" "9500000000000000")


def plain(value: Any) -> Any:
    if isinstance(value, Container | dict):
        return {k: plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def map_body(cmd: int, buf: bytes, **kw: int) -> dict[str, Any]:
    base = {"cmd": cmd, "map_type": O.BpfMapType.BPF_MAP_TYPE_HASH, "key_size": 4,
            "value_size": 8, "max_entries": 2, "map_flags": 0, "map_fd": 0, "flags": 0}
    return {"buf_len": len(buf), **base, **kw, "buf": buf}


REQUESTS: list[tuple[str, int, dict[str, Any], bytes]] = [
    ("prog set_offload", PROG,
     {"len": 16, "cmd": P.VIRTIO_NET_BPF_CMD_SET_OFFLOAD, "gpl_compatible": 1, "insns": INSNS},
     bytes.fromhex("4001" "10000000" "0100" "0100") + INSNS),
    ("prog unset_offload", PROG,
     {"len": 0, "cmd": P.VIRTIO_NET_BPF_CMD_UNSET_OFFLOAD, "gpl_compatible": 0, "insns": b""},
     bytes.fromhex("4001" "00000000" "0200" "0000")),
    ("prog query", PROG,
     {"len": 0, "cmd": P.VIRTIO_NET_BPF_CMD_QUERY, "gpl_compatible": 0, "insns": b""},
     bytes.fromhex("4001" "00000000" "0300" "0000")),
    ("map create", MAP, map_body(M.VIRTIO_NET_BPF_CMD_CREATE_MAP, b""),
     bytes.fromhex("4002" "00000000" "01000000" "01000000" "04000000" "08000000" "02000000"
                   "00000000" "00000000" "0000000000000000")),
    ("map update", MAP,
     map_body(M.VIRTIO_NET_BPF_CMD_UPDATE_ELEM, bytes(range(12)), map_fd=3, flags=1),
     bytes.fromhex("4002" "0c000000" "03000000" "01000000" "04000000" "08000000" "02000000"
                   "00000000" "03000000" "0100000000000000") + bytes(range(12))),
]


@pytest.mark.parametrize("name,command,value,raw", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_request_vectors_parse_and_build(name: str, command: int, value: dict[str, Any],
                                         raw: bytes) -> None:
    parsed = parse_ctrl(raw)
    assert (parsed["class"], parsed.command) == (O.VIRTIO_NET_CTRL_EBPF, command)
    assert plain(parsed.data) == value
    assert build_ctrl(O.VIRTIO_NET_CTRL_EBPF, command, value) == raw


def test_headers_are_the_rfc_sizes() -> None:
    assert O.virtio_net_ctrl_ebpf_prog.build({"cmd": 1, "gpl_compatible": 0, "insns": b""}) \
        == bytes(4) + b"\x01\x00\x00\x00"
    assert O.EBPF_PROG_HDR_SIZE == 8 and O.EBPF_MAP_HDR_SIZE == 40
    assert len(O.virtio_net_ctrl_ebpf_map.build(map_body(1, b""))) == 40
    assert O.map_buf_len(4, 8) == 12 and O.map_buf_len(16, 4) == 32


def test_rfc_compat_uses_class_6_and_nothing_answers_on_0x40() -> None:
    raw9 = REQUESTS[0][3]
    raw6 = bytes([6]) + raw9[1:]
    parsed = parse_ctrl(raw6, ebpf_class=O.VIRTIO_NET_CTRL_EBPF_RFC)
    assert bytes(parsed.data.insns) == INSNS
    assert build_ctrl(6, PROG, plain(parsed.data), ebpf_class=6) == raw6
    with pytest.raises(RemoteProtocolError, match="unknown control class 64"):
        parse_ctrl(raw9, ebpf_class=6)
    # Without rfc_compat, class 6 command 1 is NOTF_COAL RX_SET, 8 bytes: the body is wrong.
    with pytest.raises(RemoteProtocolError, match="malformed control class 6"):
        parse_ctrl(raw6)


def test_rfc_compat_is_refused_when_notf_coal_is_negotiated() -> None:
    assert O.ebpf_ctrl_class(0) == 0x40
    assert O.ebpf_ctrl_class(mask_of([N.VIRTIO_NET_F_CTRL_VQ]), rfc_compat=True) == 6
    with pytest.raises(LocalProtocolError, match="NOTF_COAL"):
        O.ebpf_ctrl_class(mask_of([N.VIRTIO_NET_F_CTRL_VQ, N.VIRTIO_NET_F_NOTF_COAL]),
                          rfc_compat=True)


def test_offload_commands_need_the_feature_bit_except_in_rfc_compat() -> None:
    with pytest.raises(RemoteProtocolError, match="VIRTIO_NET_F_XDP_OFFLOAD"):
        check_command_allowed(0x40, PROG, mask_of([N.VIRTIO_NET_F_CTRL_VQ]))
    check_command_allowed(0x40, PROG, mask_of([N.VIRTIO_NET_F_CTRL_VQ, N.VIRTIO_NET_F_XDP_OFFLOAD]))
    check_command_allowed(6, MAP, mask_of([N.VIRTIO_NET_F_CTRL_VQ]), ebpf_class=6)


@pytest.mark.parametrize("raw,match", [
    (bytes.fromhex("4001" "03000000" "0100" "0000") + b"abc", "len: object failed validation: 3"),
    (bytes.fromhex("4001" "10000000" "0100" "0000") + INSNS[:8], "insns"),
    (bytes.fromhex("4001" "00000000" "0100" "0000") + INSNS, "expected end of stream"),
    (bytes.fromhex("4002" "ffffff7f") + bytes(36), "buf"),
    (bytes.fromhex("4003"), "unknown control class 64 command 3"),
])
def test_hostile_offload_bodies_are_remote_errors(raw: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        parse_ctrl(raw)


def test_split_map_buf_checks_the_sizes() -> None:
    body = parse_ctrl(REQUESTS[4][3]).data
    assert O.split_map_buf(body) == (bytes(range(4)), bytes(range(4, 12)))
    short = parse_ctrl(build_ctrl(0x40, MAP, map_body(M.VIRTIO_NET_BPF_CMD_UPDATE_ELEM,
                                                   bytes(8)))).data
    with pytest.raises(RemoteProtocolError, match="buf_len 8 shorter than the 12 bytes"):
        O.split_map_buf(short)
    lookup = parse_ctrl(build_ctrl(0x40, MAP, map_body(M.VIRTIO_NET_BPF_CMD_LOOKUP_ELEM,
                                                    bytes(4)))).data
    assert O.split_map_buf(lookup) == (bytes(4), b"")


INFO = {"state": O.XdpProgState.LOADED, "engine": O.XdpEngine.JIT,
        "flags": O.XDP_PROG_INFO_GPL, "insn_cnt": 2, "xlated_cnt": 2, "image_len": 128,
        "map_cnt": 0, "tag": bytes(range(8)), "digest": bytes(range(32))}

# (name, command, sub-command, parse params, value, bytes)
RESULTS: list[tuple[str, int, int, dict[str, int], dict[str, Any], bytes]] = [
    ("set ok with log", PROG, P.VIRTIO_NET_BPF_CMD_SET_OFFLOAD, {},
     {"errno": 0, "log_len": 9, "log": b"processed"},
     bytes.fromhex("00000000" "09000000") + b"processed"),
    ("set rejected", PROG, P.VIRTIO_NET_BPF_CMD_SET_OFFLOAD, {},
     {"errno": 13, "log_len": 3, "log": b"R0!"}, bytes.fromhex("0d000000" "03000000") + b"R0!"),
    ("unset", PROG, P.VIRTIO_NET_BPF_CMD_UNSET_OFFLOAD, {}, {"errno": 0}, bytes(4)),
    ("query", PROG, P.VIRTIO_NET_BPF_CMD_QUERY, {}, {"errno": 0, "info": INFO},
     bytes.fromhex("00000000" "02" "02" "0100" "02000000" "02000000" "80000000" "00000000")
     + bytes(range(8)) + bytes(range(32))),
    ("query no program", PROG, P.VIRTIO_NET_BPF_CMD_QUERY, {}, {"errno": 2, "info": None},
     bytes.fromhex("02000000")),
    ("create", MAP, M.VIRTIO_NET_BPF_CMD_CREATE_MAP, {}, {"errno": 0, "map_handle": 1},
     bytes.fromhex("00000000" "01000000")),
    ("lookup", MAP, M.VIRTIO_NET_BPF_CMD_LOOKUP_ELEM, {"size": 8},
     {"errno": 0, "data": bytes(range(8))}, bytes(4) + bytes(range(8))),
    ("get_next end", MAP, M.VIRTIO_NET_BPF_CMD_GET_NEXT, {"size": 4},
     {"errno": 2, "data": None}, bytes.fromhex("02000000")),
    ("delete", MAP, M.VIRTIO_NET_BPF_CMD_DELETE_ELEM, {}, {"errno": 22}, bytes.fromhex("16000000")),
]


@pytest.mark.parametrize("name,command,cmd,params,value,raw", RESULTS, ids=[r[0] for r in RESULTS])
def test_result_vectors_parse_and_build(name: str, command: int, cmd: int,
                                        params: dict[str, int], value: dict[str, Any],
                                        raw: bytes) -> None:
    struct = O.ebpf_result_struct(command, cmd)
    assert plain(struct.parse(raw, **params)) == value
    assert struct.build(value, **params) == raw


def test_query_info_is_64_bytes_after_the_errno() -> None:
    assert O.virtio_net_ebpf_prog_info.sizeof() == 60
    assert len(O.virtio_net_ebpf_prog_query_result.build({"errno": 0, "info": INFO})) == 64


def test_unknown_result_pair_is_a_remote_error() -> None:
    with pytest.raises(RemoteProtocolError, match="unknown ebpf command 2 sub-command 9"):
        O.ebpf_result_struct(MAP, 9)


def test_rfc2019_profile_is_the_rfc_less_what_xdp_may_not_call() -> None:
    caps = O.profile("rfc2019")
    assert caps.xdp_map_types == (1 << 1) | (1 << 2)
    # patch 18/18's list without csum_update (40): the kernel refuses it to XDP programs
    assert caps.helper_ids == {1, 2, 3, 5, 7, 44, 54, 65, 105, 106}
    assert (caps.xdp_max_insns, caps.xdp_abi_version) == (4096, 1)
    assert caps.allows_helper(105) and not caps.allows_helper(40)
    assert not caps.allows_helper(69)  # fib_lookup reads host state (D. Ahern)
    assert caps.allows_map_type(2) and not caps.allows_map_type(6)
    assert not caps.allows_helper(256) and not caps.allows_helper(-1)


def test_helper_ids_beyond_the_bitmap_are_refused_when_a_profile_is_built() -> None:
    with pytest.raises(LocalProtocolError, match=r"helper ids \[256\] do not fit the 256-bit"):
        O.XdpCapabilities.build("x", max_insns=1, max_maps=1, max_map_mem_kib=1,
                                map_types=(1,), helpers=(1, 256))


def test_helper_bitmap_is_four_le64_words() -> None:
    mask = 1 << 1 | 1 << 105 | 1 << 255
    assert O.helper_words(mask) == [2, 1 << 41, 0, 1 << 63]
    assert O.helper_mask(O.helper_words(mask)) == mask


def test_host_profile_leaves_out_what_a_guest_cannot_use() -> None:
    caps = O.HOST
    assert caps.map_type_ids == {1, 2, 9, 11, 14, 25}
    assert not caps.helper_ids & {12, 130, 131, 132, 133}  # tail calls, ring buffer
    assert {105, 106, 188, 189, 190} <= caps.helper_ids  # ids above 64 are advertised
    assert caps.xdp_max_insns == 1_000_000


def test_host_profile_is_every_core_helper_but_the_ones_left_out_with_a_reason() -> None:
    """A helper the core gains is decided on here: offered to guests, or left out with
    its reason in virtio_spec/offload.py's comment on HOST."""
    from vxdp.bpf.helpers import HOST_STATE_HELPER_IDS, XDP_HELPER_IDS

    left_out = {12: "one program slot", 25: "records", 69: "host routing state",
                130: "records", 131: "records", 132: "records", 133: "records",
                181: "callback needs BTF"}
    assert O.HOST.helper_ids == XDP_HELPER_IDS - set(left_out)
    assert HOST_STATE_HELPER_IDS <= set(left_out)  # nothing reads the host's state


def test_smartnic_is_a_strict_subset_of_the_host() -> None:
    nic = O.SMARTNIC
    assert nic.map_type_ids == {1, 2}
    assert O.HOST.shortfalls(nic) == []
    assert nic.shortfalls(O.HOST)  # the NIC cannot take what the host offers
    assert nic.xdp_max_map_mem_kib < O.RFC2019.xdp_max_map_mem_kib


def test_shortfalls_name_each_dimension() -> None:
    out = O.SMARTNIC.shortfalls(O.RFC2019)
    assert "xdp_max_maps 8 < 16" in out
    assert "helpers missing: [5, 54, 105, 106]" in out
    assert not any(s.startswith("map types") for s in out)


def test_capabilities_round_trip_through_config_space() -> None:
    cfg = {"mac": bytes(6), "status": 1, "max_virtqueue_pairs": 1, "mtu": 1500, "speed": 0,
           "duplex": 0, "rss_max_key_size": 0, "rss_max_indirection_table_length": 0,
           "supported_hash_types": 0, "supported_tunnel_types": 0, **O.HOST.to_config()}
    raw = virtio_net_config.build(cfg)
    assert raw[28:32] == (1_000_000).to_bytes(4, "little")
    assert raw[44:48] == (1).to_bytes(4, "little")  # xdp_abi_version
    assert raw[48:80] == O.HOST.xdp_helpers.to_bytes(32, "little")
    back = O.XdpCapabilities.from_config(virtio_net_config.parse(raw))
    assert back == O.HOST and back.shortfalls(O.HOST) == []


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(LocalProtocolError, match="host, rfc2019, smartnic"):
        O.profile("nfp")


def test_xdp_offload_feature_and_class_values() -> None:
    assert N.VIRTIO_NET_F_XDP_OFFLOAD == 58 and F.VIRTIO_F_VERSION_1 == 32
    assert O.VIRTIO_NET_CTRL_EBPF == 0x40 and O.VIRTIO_NET_CTRL_EBPF_RFC == 6
    assert O.VIRTIO_NET_CTRL_EBPF_RFC == VirtioNetCtrlClass.VIRTIO_NET_CTRL_NOTF_COAL
    assert O.VIRTIO_NET_CTRL_EBPF not in set(VirtioNetCtrlClass)
    assert [int(c) for c in M] == list(range(1, 8))
    assert [int(c) for c in P] == [1, 2, 3]


def test_verifier_profiles_are_derived_from_the_capabilities() -> None:
    """One source of truth: the verifier's profile is the advertised capabilities."""
    from vxdp.bpf.helpers import XDP_HELPER_IDS
    from vxdp.bpf.profiles import NATIVE, Profile

    for name, caps in O.PROFILES.items():
        ver = Profile.from_capabilities(caps)
        assert ver.name == name
        assert ver.helpers == caps.helper_ids
        assert {int(t) for t in ver.map_types} == caps.map_type_ids
        assert (ver.max_insns, ver.max_maps, ver.max_map_mem_kib) == (
            caps.xdp_max_insns, caps.xdp_max_maps, caps.xdp_max_map_mem_kib)
        # every profile is something the C core runs
        assert caps.helper_ids <= XDP_HELPER_IDS, name
        assert ver.map_types <= NATIVE.map_types, name
