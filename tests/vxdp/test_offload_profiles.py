"""Profile names at the edge, and the offload profiles checked against the live kernel."""

from __future__ import annotations

import os
import struct

import pytest

from virtio_spec import offload as O
from vxdp.bpf import syscall as sc
from vxdp.bpf.kernel import kernel_unavailable
from vxdp.bpf.profiles import NATIVE, Profile, get_profile
from vxdp.errors import UsageError
from vxdp.offload_profiles import PROFILE_NAMES, verifier_profile

BPF_PROG_TYPE_XDP = 6


def test_names_resolve_to_native_or_the_derived_device_profiles() -> None:
    assert PROFILE_NAMES == ("native", "host", "rfc2019", "smartnic")
    assert verifier_profile(None) is NATIVE and verifier_profile("native") is NATIVE
    assert verifier_profile("rfc2019") == Profile.from_capabilities(O.RFC2019)
    with pytest.raises(UsageError, match="choose from native, host, rfc2019, smartnic"):
        verifier_profile("nfp")


def test_vxdp_bpf_takes_capabilities_and_only_the_native_name() -> None:
    assert get_profile(O.SMARTNIC).helpers == O.SMARTNIC.helper_ids
    assert get_profile(None) is NATIVE
    with pytest.raises(UsageError, match="unknown verifier profile 'rfc2019'"):
        get_profile("rfc2019")


def _kernel_refuses_helper_to_xdp(helper: int) -> bool:
    """Load `call helper; r0 = XDP_PASS; exit` as XDP: the kernel says "cannot use helper"
    (or "invalid func") before it looks at arguments when XDP may not call it."""
    insns = (struct.pack("<BBhi", 0x85, 0, 0, helper) + struct.pack("<BBhi", 0xB7, 0, 0, 2)
             + struct.pack("<BBhi", 0x95, 0, 0, 0))
    result = sc.prog_load(BPF_PROG_TYPE_XDP, insns, "GPL", log_level=1, log_size=1 << 16)
    if result.fd is not None:
        os.close(result.fd)
        return False
    return "cannot use helper" in result.log or "invalid func" in result.log


@pytest.mark.kernel
def test_no_profile_holds_a_helper_the_kernel_refuses_to_xdp() -> None:
    if reason := kernel_unavailable():
        pytest.skip(reason)
    assert _kernel_refuses_helper_to_xdp(40)  # csum_update: the RFC allowed it, XDP may not
    offered = set().union(*(caps.helper_ids for caps in O.PROFILES.values()))
    refused = sorted(h for h in offered | NATIVE.helpers if _kernel_refuses_helper_to_xdp(h))
    assert refused == []
