"""Profile names, resolved at the edge: `native`, or a device profile's capabilities.

The device profiles are defined once, as the capabilities a device advertises
(`virtio_spec.offload.PROFILES`); the verifier's profile is derived from them
(`vxdp.bpf.profiles.Profile.from_capabilities`).  vxdp.bpf may not import virtio_spec,
so the names `vxdp verify --profile` and the tests use are looked up here.
"""

from __future__ import annotations

from virtio_spec.offload import PROFILES as DEVICE_PROFILES
from vxdp.bpf.profiles import NATIVE, Profile
from vxdp.errors import UsageError

#: Every name a verifier profile goes by: `native` first, then the device profiles.
PROFILE_NAMES: tuple[str, ...] = (NATIVE.name, *sorted(DEVICE_PROFILES))


def verifier_profile(name: str | None) -> Profile:
    """The verifier profile called `name` (None: native)."""
    if name is None or name == NATIVE.name:
        return NATIVE
    caps = DEVICE_PROFILES.get(name)
    if caps is None:
        raise UsageError(f"unknown profile {name!r} (choose from {', '.join(PROFILE_NAMES)})")
    return Profile.from_capabilities(caps)


__all__ = ["PROFILE_NAMES", "verifier_profile"]
