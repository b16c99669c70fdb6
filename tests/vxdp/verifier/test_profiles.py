"""Device profiles are data the verifier is given: what each one offers, and its effect.

The device profiles are the capabilities a device advertises (virtio_spec.offload); the
verifier's profile is derived from them, so these tests go through that derivation."""

from __future__ import annotations

from virtio_spec import offload as O
from vxdp.bpf.asm import assemble
from vxdp.bpf.helpers import XDP_HELPER_IDS
from vxdp.bpf.isa import encode
from vxdp.bpf.profiles import NATIVE, Profile
from vxdp.bpf.program import MapSpec, MapType, Program
from vxdp.bpf.verifier import verify


def test_profiles_mirror_the_design() -> None:
    rfc = Profile.from_capabilities(O.RFC2019)
    assert rfc.helpers == {1, 2, 3, 5, 7, 44, 54, 65, 105, 106} and rfc.max_insns == 4096
    assert rfc.map_types == {MapType.HASH, MapType.ARRAY}
    assert NATIVE.name == "native" and NATIVE.helpers == XDP_HELPER_IDS
    assert NATIVE.max_insns == 1_000_000
    nic = Profile.from_capabilities(O.SMARTNIC)
    assert nic.helpers <= NATIVE.helpers and nic.map_types <= NATIVE.map_types


def test_profile_size_limit() -> None:
    text = "mov %r0, 0\n" * 4096 + "exit\n"
    program = Program("big", "xdp", encode(assemble(text)))
    assert verify(program).accepted
    report = verify(program, profile=O.RFC2019)
    assert not report.accepted
    assert "4097 insns is too large for device profile rfc2019" in report.reason


def test_profile_map_types() -> None:
    lru = MapSpec("lru", MapType.LRU_HASH, 4, 8, 16)
    text = "stw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4\nlddw %r1, map_fd(0)\ncall 1\n" \
           "mov %r0, 2\nexit\n"
    program = Program("lru", "xdp", encode(assemble(text)), (lru,))
    assert verify(program, profile=O.HOST).accepted
    assert "map type LRU_HASH is not offered" in verify(program, profile=O.SMARTNIC).reason
