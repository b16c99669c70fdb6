"""Device profiles: what an offload target runs, as data (DESIGN.md "Protocol decisions").

A profile is the platform knowledge the verifier is given instead of hard-coding it
(PREVAIL's "platform"): the helpers a program may call, the map types it may use, how many
instructions it may have.  The same numbers fill the device's capability fields in config
space (`xdp_max_insns`, `xdp_map_types`, `xdp_helpers`), so a guest sees exactly what the
host's verifier will accept.

* `rfc2019`: exactly the 2019 RFC: HASH and ARRAY maps, helpers 1,2,3,5,7,40,44,54,65,105,106,
  4096 instructions.
* `host`: everything the C core runs (every `xdp=True` helper), 1,000,000 instructions.
* `smartnic`: a NIC-like subset: key/value maps, devmap redirects, no ring buffer, no string
  parsing, no tail calls; 8192 instructions and small maps.
"""

from __future__ import annotations

from dataclasses import dataclass

from vxdp.bpf.helpers import HELPERS, RFC2019_HELPER_IDS, XDP_HELPER_IDS
from vxdp.bpf.program import MapType
from vxdp.errors import UsageError

COMPLEXITY_LIMIT = 1_000_000  # BPF_COMPLEXITY_LIMIT_INSNS: instructions processed


@dataclass(frozen=True)
class Profile:
    name: str
    helpers: frozenset[int]
    map_types: frozenset[MapType]
    max_insns: int
    max_maps: int = 64
    max_map_mem_kib: int = 1 << 20
    description: str = ""

    def allows_helper(self, helper_id: int) -> bool:
        return helper_id in self.helpers

    def helper_mask(self) -> int:
        """The le64 `xdp_helpers` capability: bit i set when helper i (< 64) is allowed."""
        return sum(1 << i for i in self.helpers if i < 64)

    def map_type_mask(self) -> int:
        """The le32 `xdp_map_types` capability: bit t set for each allowed map type."""
        return sum(1 << int(t) for t in self.map_types if t < 32)


_ALL_MAPS = frozenset(MapType) - {MapType.UNSPEC, MapType.STRUCT_OPS}

PROFILES: dict[str, Profile] = {p.name: p for p in [
    Profile("rfc2019", RFC2019_HELPER_IDS, frozenset({MapType.HASH, MapType.ARRAY}), 4096,
            max_maps=16, max_map_mem_kib=4096,
            description="the 2019 RFC's offload: HASH and ARRAY, eleven helpers"),
    Profile("host", XDP_HELPER_IDS, _ALL_MAPS, COMPLEXITY_LIMIT,
            description="everything the host's C core runs"),
    Profile("smartnic",
            frozenset({1, 2, 3, 5, 7, 8, 23, 28, 44, 51, 54, 65, 188}) & frozenset(HELPERS),
            frozenset({MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH, MapType.PERCPU_ARRAY,
                       MapType.LRU_HASH, MapType.DEVMAP, MapType.DEVMAP_HASH}),
            8192, max_maps=32, max_map_mem_kib=2048,
            description="a NIC-like subset: key/value maps and redirects, small maps"),
]}

DEFAULT_PROFILE = "host"


def get_profile(name: str | None) -> Profile:
    """The named profile (None: `host`); UsageError for an unknown name."""
    key = name or DEFAULT_PROFILE
    try:
        return PROFILES[key]
    except KeyError:
        raise UsageError(f"unknown device profile {key!r} "
                         f"(choose from {', '.join(PROFILES)})") from None


__all__ = ["COMPLEXITY_LIMIT", "DEFAULT_PROFILE", "PROFILES", "Profile", "get_profile"]
