"""Feature bits of a virtio-net device and the rules that tie them together.

virtio 1.3 §2.2 (feature bits), §5.1.3 (network device feature bits), §5.1.3.1 (feature
bit requirements), §6 (reserved feature bits), plus vxdp's own VIRTIO_NET_F_XDP_OFFLOAD.

Feature sets are plain Python ints used as bitmasks (bit N set = feature N), because
that is what travels on the wire (vhost-user GET_FEATURES, the PCI feature windows) and
because bits above 63 exist (virtio 1.4 adds bit 64).  `bits_of` and `mask_of` convert
to and from sets of bit numbers.

The dependency rules are data (`FEATURE_RULES`).  Three functions read them:

* `check_offer(offered)`: what a device broke by offering that set (§2.2.2, §6.2).
* `check_accept(offered, accepted)`: what a driver broke by accepting that set (§2.2.1,
  §6.1).  A device refuses FEATURES_OK on any MUST violation (§2.2.2, §3.1.1).
* `negotiate(offered, wanted)`: the set a sane driver accepts: what it wants and the
  device offers, minus anything whose dependencies are missing, plus VERSION_1.

Each check returns a list of `Violation`s naming the clause; `ensure_valid_offer` and
`ensure_valid_accept` raise FeatureError for the first MUST violation instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, Literal

from .errors import FeatureError

Level = Literal["MUST", "SHOULD"]


class VirtioFeature(IntEnum):
    """Transport and queue feature bits (virtio 1.3 §6, §6.3 for the legacy ones)."""

    VIRTIO_F_NOTIFY_ON_EMPTY = 24  # legacy only (§6.3)
    VIRTIO_F_ANY_LAYOUT = 27  # legacy only (§6.3); implied by VERSION_1
    VIRTIO_F_INDIRECT_DESC = 28
    VIRTIO_F_EVENT_IDX = 29
    VIRTIO_F_VERSION_1 = 32
    VIRTIO_F_ACCESS_PLATFORM = 33
    VIRTIO_F_RING_PACKED = 34
    VIRTIO_F_IN_ORDER = 35
    VIRTIO_F_ORDER_PLATFORM = 36
    VIRTIO_F_SR_IOV = 37
    VIRTIO_F_NOTIFICATION_DATA = 38
    VIRTIO_F_NOTIF_CONFIG_DATA = 39
    VIRTIO_F_RING_RESET = 40
    VIRTIO_F_ADMIN_VQ = 41  # 1.3; PCI transport only


class VirtioNetFeature(IntEnum):
    """virtio-net feature bits (virtio 1.3 §5.1.3, legacy ones from §5.1.3.2).

    Bit 41 and 42 are legacy-only net bits that share their numbers with modern
    transport bits (41 = VIRTIO_F_ADMIN_VQ), which is why this is a separate enum.
    VIRTIO_NET_F_XDP_OFFLOAD (58) is vxdp's extension: bit 58 is unassigned in virtio
    1.2 to 1.4 and in Linux's uapi header.
    """

    VIRTIO_NET_F_CSUM = 0
    VIRTIO_NET_F_GUEST_CSUM = 1
    VIRTIO_NET_F_CTRL_GUEST_OFFLOADS = 2
    VIRTIO_NET_F_MTU = 3
    VIRTIO_NET_F_MAC = 5
    VIRTIO_NET_F_GSO = 6  # legacy only (§5.1.3.2)
    VIRTIO_NET_F_GUEST_TSO4 = 7
    VIRTIO_NET_F_GUEST_TSO6 = 8
    VIRTIO_NET_F_GUEST_ECN = 9
    VIRTIO_NET_F_GUEST_UFO = 10
    VIRTIO_NET_F_HOST_TSO4 = 11
    VIRTIO_NET_F_HOST_TSO6 = 12
    VIRTIO_NET_F_HOST_ECN = 13
    VIRTIO_NET_F_HOST_UFO = 14
    VIRTIO_NET_F_MRG_RXBUF = 15
    VIRTIO_NET_F_STATUS = 16
    VIRTIO_NET_F_CTRL_VQ = 17
    VIRTIO_NET_F_CTRL_RX = 18
    VIRTIO_NET_F_CTRL_VLAN = 19
    VIRTIO_NET_F_CTRL_RX_EXTRA = 20
    VIRTIO_NET_F_GUEST_ANNOUNCE = 21
    VIRTIO_NET_F_MQ = 22
    VIRTIO_NET_F_CTRL_MAC_ADDR = 23
    VIRTIO_NET_F_GUEST_RSC4 = 41  # legacy only (§5.1.3.2)
    VIRTIO_NET_F_GUEST_RSC6 = 42  # legacy only (§5.1.3.2)
    VIRTIO_NET_F_DEVICE_STATS = 50  # virtio 1.4 (control class 8)
    VIRTIO_NET_F_HASH_TUNNEL = 51
    VIRTIO_NET_F_VQ_NOTF_COAL = 52
    VIRTIO_NET_F_NOTF_COAL = 53
    VIRTIO_NET_F_GUEST_USO4 = 54
    VIRTIO_NET_F_GUEST_USO6 = 55
    VIRTIO_NET_F_HOST_USO = 56
    VIRTIO_NET_F_HASH_REPORT = 57
    VIRTIO_NET_F_XDP_OFFLOAD = 58  # vxdp extension (DESIGN.md "Protocol decisions")
    VIRTIO_NET_F_GUEST_HDRLEN = 59
    VIRTIO_NET_F_RSS = 60
    VIRTIO_NET_F_RSC_EXT = 61
    VIRTIO_NET_F_STANDBY = 62
    VIRTIO_NET_F_SPEED_DUPLEX = 63


_F = VirtioFeature
_N = VirtioNetFeature

#: Bits only the legacy interface defines; with VERSION_1 they are reserved (§6.3, §5.1.3.2).
LEGACY_ONLY: Final[frozenset[int]] = frozenset({
    _F.VIRTIO_F_NOTIFY_ON_EMPTY, _F.VIRTIO_F_ANY_LAYOUT,
    _N.VIRTIO_NET_F_GSO, _N.VIRTIO_NET_F_GUEST_RSC4, _N.VIRTIO_NET_F_GUEST_RSC6,
})

#: Every bit this module can name in a modern (VERSION_1) negotiation.
KNOWN_MODERN: Final[frozenset[int]] = frozenset(
    {int(f) for f in VirtioFeature} | {int(f) for f in VirtioNetFeature}) - LEGACY_ONLY


# ----------------------------------------------------------------------------------------
# Conversions


def bits_of(mask: int) -> frozenset[int]:
    """The bit numbers set in a feature bitmask: `bits_of(0b101) == {0, 2}`."""
    if mask < 0:
        raise ValueError(f"feature mask {mask} is negative")
    return frozenset(i for i in range(mask.bit_length()) if mask >> i & 1)


def mask_of(bits: Iterable[int]) -> int:
    """The feature bitmask with these bit numbers set: `mask_of([0, 2]) == 0b101`."""
    mask = 0
    for bit in bits:
        if bit < 0:
            raise ValueError(f"feature bit {bit} is negative")
        mask |= 1 << bit
    return mask


def feature_name(bit: int, *, legacy: bool = False) -> str:
    """The spec name of one bit (`VIRTIO_F_VERSION_1`), or `bit N` when undescribed.

    Bits 41 and 42 name the modern transport bit unless `legacy` is true.
    """
    if legacy and bit in LEGACY_ONLY and bit in VirtioNetFeature._value2member_map_:
        return VirtioNetFeature(bit).name
    if bit in VirtioFeature._value2member_map_:
        return VirtioFeature(bit).name
    if bit in VirtioNetFeature._value2member_map_:
        return VirtioNetFeature(bit).name
    return f"bit {bit}"


def describe(mask: int, *, legacy: bool = False) -> list[str]:
    """Names of every bit set in `mask`, lowest bit first."""
    return [feature_name(b, legacy=legacy) for b in sorted(bits_of(mask))]


# ----------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True)
class FeatureRule:
    """`feature` needs every bit of `requires_all` and at least one of `requires_any`.

    `source` names where the requirement is written; `level` is MUST for §5.1.3.1's
    table and SHOULD for the §5.1.4.1/§5.1.4.2 recommendations.  `offer_clause` and
    `accept_clause` are the normative clauses a device offering, or a driver accepting,
    `feature` without its requirements breaks.
    """

    feature: int
    requires_all: frozenset[int] = frozenset()
    requires_any: frozenset[int] = frozenset()
    source: str = "virtio 1.3 §5.1.3.1"
    level: Level = "MUST"
    offer_clause: str = "2.2.2"
    accept_clause: str = "2.2.1"

    def holds(self, bits: frozenset[int]) -> bool:
        """True when `feature` is absent or its requirements are present in `bits`."""
        if self.feature not in bits:
            return True
        if not self.requires_all <= bits:
            return False
        return not self.requires_any or bool(self.requires_any & bits)

    def requirement(self) -> str:
        """The requirement in words, e.g. `VIRTIO_NET_F_CTRL_VQ and (A or B)`."""
        parts = [feature_name(b) for b in sorted(self.requires_all)]
        if self.requires_any:
            anyof = " or ".join(feature_name(b) for b in sorted(self.requires_any))
            parts.append(f"({anyof})" if len(self.requires_any) > 1 and parts else anyof)
        return " and ".join(parts)


def _needs(feature: int, *requires_all: int, any_of: Iterable[int] = (),
           source: str = "virtio 1.3 §5.1.3.1") -> FeatureRule:
    return FeatureRule(feature, frozenset(requires_all), frozenset(any_of), source)


def _should_have_ctrl_vq(feature: int) -> FeatureRule:
    # virtio 1.3 §5.1.4.1: "The device SHOULD NOT offer ... if it does not offer
    # VIRTIO_NET_F_CTRL_VQ"; §5.1.4.2: "A driver SHOULD NOT negotiate ... if it does not
    # negotiate VIRTIO_NET_F_CTRL_VQ."
    return FeatureRule(feature, frozenset({_N.VIRTIO_NET_F_CTRL_VQ}), frozenset(),
                       "virtio 1.3 §5.1.4.1 / §5.1.4.2", "SHOULD", "5.1.4.1", "5.1.4.2")


_OURS = "vxdp extension (DESIGN.md: protocol decisions)"

#: Every dependency a feature set must satisfy, as data.
FEATURE_RULES: Final[tuple[FeatureRule, ...]] = (
    _needs(_N.VIRTIO_NET_F_GUEST_TSO4, _N.VIRTIO_NET_F_GUEST_CSUM),
    _needs(_N.VIRTIO_NET_F_GUEST_TSO6, _N.VIRTIO_NET_F_GUEST_CSUM),
    _needs(_N.VIRTIO_NET_F_GUEST_ECN,
           any_of=(_N.VIRTIO_NET_F_GUEST_TSO4, _N.VIRTIO_NET_F_GUEST_TSO6)),
    _needs(_N.VIRTIO_NET_F_GUEST_UFO, _N.VIRTIO_NET_F_GUEST_CSUM),
    _needs(_N.VIRTIO_NET_F_GUEST_USO4, _N.VIRTIO_NET_F_GUEST_CSUM),
    _needs(_N.VIRTIO_NET_F_GUEST_USO6, _N.VIRTIO_NET_F_GUEST_CSUM),
    _needs(_N.VIRTIO_NET_F_HOST_TSO4, _N.VIRTIO_NET_F_CSUM),
    _needs(_N.VIRTIO_NET_F_HOST_TSO6, _N.VIRTIO_NET_F_CSUM),
    _needs(_N.VIRTIO_NET_F_HOST_ECN,
           any_of=(_N.VIRTIO_NET_F_HOST_TSO4, _N.VIRTIO_NET_F_HOST_TSO6)),
    _needs(_N.VIRTIO_NET_F_HOST_UFO, _N.VIRTIO_NET_F_CSUM),
    _needs(_N.VIRTIO_NET_F_HOST_USO, _N.VIRTIO_NET_F_CSUM),
    _needs(_N.VIRTIO_NET_F_CTRL_RX, _N.VIRTIO_NET_F_CTRL_VQ),
    _needs(_N.VIRTIO_NET_F_CTRL_VLAN, _N.VIRTIO_NET_F_CTRL_VQ),
    _needs(_N.VIRTIO_NET_F_GUEST_ANNOUNCE, _N.VIRTIO_NET_F_CTRL_VQ),
    _needs(_N.VIRTIO_NET_F_MQ, _N.VIRTIO_NET_F_CTRL_VQ),
    _needs(_N.VIRTIO_NET_F_CTRL_MAC_ADDR, _N.VIRTIO_NET_F_CTRL_VQ),
    _needs(_N.VIRTIO_NET_F_NOTF_COAL, _N.VIRTIO_NET_F_CTRL_VQ),
    _needs(_N.VIRTIO_NET_F_RSC_EXT,
           any_of=(_N.VIRTIO_NET_F_HOST_TSO4, _N.VIRTIO_NET_F_HOST_TSO6)),
    _needs(_N.VIRTIO_NET_F_RSS, _N.VIRTIO_NET_F_CTRL_VQ),
    _needs(_N.VIRTIO_NET_F_VQ_NOTF_COAL, _N.VIRTIO_NET_F_CTRL_VQ),
    _needs(_N.VIRTIO_NET_F_HASH_TUNNEL, _N.VIRTIO_NET_F_CTRL_VQ,
           any_of=(_N.VIRTIO_NET_F_RSS, _N.VIRTIO_NET_F_HASH_REPORT)),
    _should_have_ctrl_vq(_N.VIRTIO_NET_F_HASH_REPORT),
    _should_have_ctrl_vq(_N.VIRTIO_NET_F_CTRL_RX_EXTRA),
    # The offload travels over the control virtqueue and speaks little-endian only.
    _needs(_N.VIRTIO_NET_F_XDP_OFFLOAD, _N.VIRTIO_NET_F_CTRL_VQ, _F.VIRTIO_F_VERSION_1,
           source=_OURS),
)


@dataclass(frozen=True)
class Violation:
    """One broken rule: the clause it breaks, MUST or SHOULD, and a lowercase message."""

    clause: str
    level: Level
    message: str
    feature: int | None = None

    def __str__(self) -> str:
        return f"{self.message} ({self.level}, virtio 1.3 \u00a7{self.clause})"


def _rule_violations(bits: frozenset[int], *, offering: bool) -> list[Violation]:
    out = []
    verb = "offered" if offering else "accepted"
    for rule in FEATURE_RULES:
        if not rule.holds(bits):
            out.append(Violation(
                rule.offer_clause if offering else rule.accept_clause,
                rule.level,
                f"{feature_name(rule.feature)} {verb} without {rule.requirement()} "
                f"(required by {rule.source})",
                rule.feature))
    return out


def check_offer(offered: int) -> list[Violation]:
    """What a device breaks by offering `offered` (device side).

    virtio 1.3 §2.2.2: "The device MUST NOT offer a feature which requires another
    feature which was not offered."  §6.2: "A device MUST offer VIRTIO_F_VERSION_1."
    """
    bits = bits_of(offered)
    out: list[Violation] = []
    if _F.VIRTIO_F_VERSION_1 not in bits:
        out.append(Violation("6.2", "MUST", "device does not offer VIRTIO_F_VERSION_1",
                             _F.VIRTIO_F_VERSION_1))
    out.extend(_rule_violations(bits, offering=True))
    return out


def check_accept(offered: int, accepted: int) -> list[Violation]:
    """What a driver breaks by accepting `accepted` out of `offered` (driver side).

    virtio 1.3 §2.2.1: "The driver MUST NOT accept a feature which the device did not
    offer, and MUST NOT accept a feature which requires another feature which was not
    accepted."  It also MUST NOT accept undescribed or reserved bits.
    §6.1: "A driver MUST accept VIRTIO_F_VERSION_1 if it is offered."
    """
    offered_bits, bits = bits_of(offered), bits_of(accepted)
    out: list[Violation] = []
    for bit in sorted(bits - offered_bits):
        out.append(Violation("2.2.1", "MUST",
                             f"driver accepted {feature_name(bit)} the device did not offer",
                             bit))
    modern = _F.VIRTIO_F_VERSION_1 in bits
    for bit in sorted(bits & offered_bits):
        if bit in LEGACY_ONLY and modern:
            out.append(Violation("2.2.1", "SHOULD",
                                 f"driver accepted legacy-only {feature_name(bit, legacy=True)} "
                                 "together with VIRTIO_F_VERSION_1", bit))
        elif bit not in KNOWN_MODERN and bit not in LEGACY_ONLY:
            out.append(Violation("2.2.1", "MUST",
                                 f"driver accepted undescribed feature {feature_name(bit)}", bit))
    if _F.VIRTIO_F_VERSION_1 in offered_bits and not modern:
        out.append(Violation("6.1", "MUST",
                             "driver did not accept VIRTIO_F_VERSION_1 although it was offered",
                             _F.VIRTIO_F_VERSION_1))
    out.extend(_rule_violations(bits, offering=False))
    return out


def _raise_first_must(violations: list[Violation]) -> None:
    for v in violations:
        if v.level == "MUST":
            raise FeatureError(v.message, v.clause)


def ensure_valid_offer(offered: int) -> None:
    """Raise FeatureError naming the clause of the first MUST `check_offer` finds."""
    _raise_first_must(check_offer(offered))


def ensure_valid_accept(offered: int, accepted: int) -> None:
    """Raise FeatureError naming the clause of the first MUST `check_accept` finds."""
    _raise_first_must(check_accept(offered, accepted))


def dependents(bit: int) -> int:
    """The features whose MUST rules require `bit` (for VIRTIO_NET_F_CTRL_VQ: the control
    queue's classes, MQ, RSS, ... and the XDP offload), as a mask."""
    return mask_of(r.feature for r in FEATURE_RULES if bit in r.requires_all
                   and r.level == "MUST")


def negotiate(offered: int, wanted: int) -> int:
    """The feature set a sane driver writes back: the bits it wants that the device
    offers and this module describes, with VERSION_1 whenever offered (§6.1), without
    legacy-only bits in a modern negotiation, and without any feature whose MUST or
    SHOULD dependencies did not survive (dropped until nothing more changes).
    """
    offered_bits = bits_of(offered)
    bits = set(bits_of(wanted) & offered_bits & KNOWN_MODERN)
    if _F.VIRTIO_F_VERSION_1 in offered_bits:
        bits.add(_F.VIRTIO_F_VERSION_1)
    changed = True
    while changed:
        frozen = frozenset(bits)
        broken = {r.feature for r in FEATURE_RULES if not r.holds(frozen)}
        changed = bool(broken)
        bits -= broken
    return mask_of(bits)


__all__ = [
    "FEATURE_RULES",
    "KNOWN_MODERN",
    "LEGACY_ONLY",
    "FeatureRule",
    "Level",
    "Violation",
    "VirtioFeature",
    "VirtioNetFeature",
    "bits_of",
    "check_accept",
    "check_offer",
    "dependents",
    "describe",
    "ensure_valid_accept",
    "ensure_valid_offer",
    "feature_name",
    "mask_of",
    "negotiate",
]
