"""Verifier profiles: what a target runs, as data the verifier is given (PREVAIL's
"platform"): the helpers a program may call, the map types it may use, how many
instructions it may have.

The device profiles (`rfc2019`, `host`, `smartnic`) have one definition: the capabilities
a device advertises in config space (`virtio_spec.offload`: `xdp_max_insns`,
`xdp_map_types`, the 256-bit `xdp_helpers`...).  `Profile.from_capabilities` derives the
verifier's profile from them, so the guest that read the capabilities and the device that
advertised them verify against exactly the same rules.  vxdp.bpf may not import
virtio_spec (DESIGN.md), so it takes any object with the capability fields
(`Capabilities`); the edge resolves profile names (`vxdp verify --profile`).

`NATIVE` is not a device profile: it is everything the C core runs (every helper of
vxdp.bpf.helpers marked `xdp`, every map type the core implements) under the kernel's
limits.  Driver-mode XDP in a guest and programs an operator attaches on a host are
verified against it, as the kernel verifies a program loaded without a target device.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from typing import Protocol

from vxdp.bpf.helpers import XDP_HELPER_IDS
from vxdp.bpf.program import MapType
from vxdp.errors import UsageError

COMPLEXITY_LIMIT = 1_000_000  # BPF_COMPLEXITY_LIMIT_INSNS: instructions processed


class Capabilities(Protocol):
    """What a device advertises (virtio_spec.offload.XdpCapabilities has these)."""

    @property
    def name(self) -> str: ...
    @property
    def xdp_max_insns(self) -> int: ...
    @property
    def xdp_max_maps(self) -> int: ...
    @property
    def xdp_max_map_mem_kib(self) -> int: ...
    @property
    def helper_ids(self) -> Set[int]: ...
    @property
    def map_type_ids(self) -> Set[int]: ...


@dataclass(frozen=True)
class Profile:
    name: str
    helpers: frozenset[int]
    map_types: frozenset[MapType]
    max_insns: int
    max_maps: int = 64
    max_map_mem_kib: int = 1 << 20
    description: str = ""

    @classmethod
    def from_capabilities(cls, caps: Capabilities, name: str | None = None) -> Profile:
        """The verifier profile of a device's advertised capabilities.  Map type ids
        vxdp does not know are left out (no program can declare them here)."""
        known = {int(t) for t in MapType}
        return cls(name or caps.name or "device", frozenset(caps.helper_ids),
                   frozenset(MapType(t) for t in caps.map_type_ids if t in known),
                   caps.xdp_max_insns, caps.xdp_max_maps, caps.xdp_max_map_mem_kib,
                   getattr(caps, "description", "") or "a device's advertised capabilities")

    def allows_helper(self, helper_id: int) -> bool:
        return helper_id in self.helpers


_ALL_MAPS = frozenset(MapType) - {MapType.UNSPEC, MapType.STRUCT_OPS}

NATIVE = Profile("native", XDP_HELPER_IDS, _ALL_MAPS, COMPLEXITY_LIMIT,
                 description="everything the C core runs (driver mode, host-attached)")

DEFAULT_PROFILE = NATIVE.name


def get_profile(profile: Profile | Capabilities | str | None) -> Profile:
    """A Profile from a Profile, a device's capabilities, or the name `native` (None:
    native); UsageError for other names: device profiles are capabilities, which the
    edge looks up (virtio_spec.offload.profile)."""
    if isinstance(profile, Profile):
        return profile
    if profile is None or profile == NATIVE.name:
        return NATIVE
    if isinstance(profile, str):
        raise UsageError(f"unknown verifier profile {profile!r}: {NATIVE.name!r}, or a "
                         f"device's capabilities (rfc2019, host, smartnic: "
                         f"virtio_spec.offload.profile)")
    return Profile.from_capabilities(profile)


__all__ = ["COMPLEXITY_LIMIT", "DEFAULT_PROFILE", "NATIVE", "Capabilities", "Profile",
           "get_profile"]
