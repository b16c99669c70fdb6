"""Device profiles are data the verifier is given: what each one offers, and its effect."""

from __future__ import annotations

import pytest

from vxdp.bpf.asm import assemble
from vxdp.bpf.helpers import RFC2019_HELPER_IDS, XDP_HELPER_IDS
from vxdp.bpf.isa import encode
from vxdp.bpf.profiles import PROFILES, get_profile
from vxdp.bpf.program import MapSpec, MapType, Program
from vxdp.bpf.verifier import verify
from vxdp.errors import UsageError


def test_profiles_mirror_the_design() -> None:
    rfc = get_profile("rfc2019")
    assert rfc.helpers == RFC2019_HELPER_IDS and rfc.max_insns == 4096
    assert rfc.map_types == {MapType.HASH, MapType.ARRAY}
    # ids >= 64 (65, 105, 106) are not offloadable through the le64 capability field
    assert rfc.helper_mask() == sum(1 << i for i in (1, 2, 3, 5, 7, 40, 44, 54))
    assert rfc.map_type_mask() == (1 << 1) | (1 << 2)
    host = get_profile(None)
    assert host.name == "host" and host.helpers == XDP_HELPER_IDS
    assert host.max_insns == 1_000_000
    nic = PROFILES["smartnic"]
    assert nic.helpers <= host.helpers and nic.map_types <= host.map_types
    with pytest.raises(UsageError, match="unknown device profile 'fpga'"):
        get_profile("fpga")


def test_profile_size_limit() -> None:
    text = "mov %r0, 0\n" * 4096 + "exit\n"
    program = Program("big", "xdp", encode(assemble(text)))
    assert verify(program).accepted
    report = verify(program, profile="rfc2019")
    assert not report.accepted
    assert "4097 insns is too large for device profile rfc2019" in report.reason


def test_profile_map_types() -> None:
    lru = MapSpec("lru", MapType.LRU_HASH, 4, 8, 16)
    text = "stw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4\nlddw %r1, map_fd(0)\ncall 1\n" \
           "mov %r0, 2\nexit\n"
    program = Program("lru", "xdp", encode(assemble(text)), (lru,))
    assert verify(program, profile="smartnic").accepted
    assert "map type LRU_HASH is not offered" in verify(program, profile="rfc2019").reason
