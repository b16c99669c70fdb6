"""Device profiles and the virtio-net configuration space they produce.

A `DeviceProfile` is everything a host decides about a virtio-net device before a guest
sees it: the feature bits it offers and the values behind them (MAC, MTU, queue pairs,
queue size, link state, XDP offload capabilities).  `PROFILES` names the ones scenarios
and the CLI use; `get_profile()` looks one up.

`ConfigSpace` serves the device-specific configuration (virtio 1.3 §5.1.4) as the bytes of
`virtio_spec.structs.virtio_net_config`.  A field holds its value only when a feature that
makes it exist is offered (`VIRTIO_NET_CONFIG_FIELD_FEATURES`); otherwise it reads as 0.
The space is 28 bytes (the standard fields) or 80 when VIRTIO_NET_F_XDP_OFFLOAD is
offered (vxdp's capability fields follow `supported_tunnel_types`, DESIGN.md).  Reads
outside it are the peer's mistake; writes are refused (virtio 1.3 §5.1.4.2: "The driver
MUST NOT write to any of the device configuration fields").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from virtio_spec.errors import LocalProtocolError, RemoteProtocolError
from virtio_spec.features import VirtioFeature, VirtioNetFeature, check_offer, mask_of
from virtio_spec.offload import CONFIG_FIELDS as XDP_CONFIG_FIELDS
from virtio_spec.offload import PROFILES as XDP_PROFILES
from virtio_spec.offload import XdpCapabilities
from virtio_spec.structs import (
    MAX_QUEUE_SIZE,
    VIRTIO_NET_CONFIG_FIELD_FEATURES,
    VIRTIO_NET_CONFIG_SIZE,
    VIRTIO_NET_CONFIG_STD_SIZE,
    VirtioNetStatus,
    virtio_net_config,
    virtio_net_config_zero,
)

_F = VirtioFeature
_N = VirtioNetFeature
#: What a field reads as when no offered feature makes it exist (virtio 1.3 §5.1.4).
EMPTY_CONFIG: Final[dict[str, int | bytes | list[int]]] = virtio_net_config_zero()

@dataclass(frozen=True)
class DeviceProfile:
    """What a host offers: features and the values behind them."""

    name: str
    features: int
    mac: bytes = bytes.fromhex("525400123456")
    mtu: int = 1500
    max_queue_pairs: int = 1
    max_queue_size: int = 256
    link_up: bool = True
    xdp: XdpCapabilities | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if len(self.mac) != 6:
            raise LocalProtocolError(f"profile {self.name}: mac must be 6 bytes")
        # virtio 1.3 §5.1.4: max_virtqueue_pairs is 1..0x8000; mtu is 68..65535.
        if not 1 <= self.max_queue_pairs <= 0x8000:
            raise LocalProtocolError(f"profile {self.name}: max_queue_pairs outside 1..0x8000")
        if not 68 <= self.mtu <= 0xFFFF:
            raise LocalProtocolError(f"profile {self.name}: mtu outside 68..65535")
        if not 1 <= self.max_queue_size <= MAX_QUEUE_SIZE:
            raise LocalProtocolError(f"profile {self.name}: max_queue_size outside 1..32768")
        if self.offers(_N.VIRTIO_NET_F_XDP_OFFLOAD) != (self.xdp is not None):
            raise LocalProtocolError(
                f"profile {self.name}: VIRTIO_NET_F_XDP_OFFLOAD and xdp capabilities go "
                "together")
        broken = [v for v in check_offer(self.features) if v.level == "MUST"]
        if broken:
            # virtio 1.3 §2.2.2: "The device MUST NOT offer a feature which requires
            # another feature which was not offered."
            raise LocalProtocolError(f"profile {self.name}: {broken[0]}")

    def offers(self, bit: int) -> bool:
        """True when the profile offers feature `bit`."""
        return bool(self.features >> bit & 1)

    def with_features(self, *, add: tuple[int, ...] = (), remove: tuple[int, ...] = (),
                      name: str | None = None, xdp: XdpCapabilities | None = None,
                      description: str | None = None) -> DeviceProfile:
        """A copy offering `add` and not `remove` (dependencies are re-checked).

        Adding VIRTIO_NET_F_XDP_OFFLOAD needs `xdp`; removing it drops the capabilities.
        """
        features = (self.features | mask_of(add)) & ~mask_of(remove)
        caps = xdp if xdp is not None else self.xdp
        if not features >> _N.VIRTIO_NET_F_XDP_OFFLOAD & 1:
            caps = None
        return replace(self, features=features, name=name or self.name, xdp=caps,
                       description=self.description if description is None else description)


_COMMON: Final = (
    _F.VIRTIO_F_VERSION_1, _F.VIRTIO_F_EVENT_IDX, _F.VIRTIO_F_INDIRECT_DESC,
    _N.VIRTIO_NET_F_MAC, _N.VIRTIO_NET_F_STATUS, _N.VIRTIO_NET_F_MTU,
    _N.VIRTIO_NET_F_MRG_RXBUF, _N.VIRTIO_NET_F_CTRL_VQ, _N.VIRTIO_NET_F_CTRL_RX,
    _N.VIRTIO_NET_F_CTRL_VLAN, _N.VIRTIO_NET_F_CTRL_MAC_ADDR, _N.VIRTIO_NET_F_GUEST_ANNOUNCE,
    _N.VIRTIO_NET_F_MQ, _N.VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, _N.VIRTIO_NET_F_GUEST_CSUM,
)

_DEFAULT = DeviceProfile(
    "default", mask_of(_COMMON), max_queue_pairs=2,
    description="a QEMU-like virtio-net: ctrl queue, filters, MQ, mergeable rx, EVENT_IDX")


def _profiles() -> dict[str, DeviceProfile]:
    xdp = _N.VIRTIO_NET_F_XDP_OFFLOAD
    out = {
        "default": _DEFAULT,
        "packed": _DEFAULT.with_features(add=(_F.VIRTIO_F_RING_PACKED,), name="packed"),
        "minimal": DeviceProfile(
            "minimal", mask_of((_F.VIRTIO_F_VERSION_1, _N.VIRTIO_NET_F_MAC)),
            description="VERSION_1 and MAC only: no control queue, no mergeable rx"),
    }
    for caps in XDP_PROFILES.values():
        out[caps.name] = _DEFAULT.with_features(
            add=(xdp,), name=caps.name, xdp=caps,
            description=f"default plus XDP offload with the {caps.name} capabilities")
    return out


#: Named profiles (`vxdp demo`, scenarios, Pair.create).
PROFILES: Final[dict[str, DeviceProfile]] = _profiles()


def get_profile(name: str) -> DeviceProfile:
    """The profile called `name`; LocalProtocolError lists the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise LocalProtocolError(
            f"unknown device profile {name!r} (known: {', '.join(sorted(PROFILES))})") from None


@dataclass
class ConfigSpace:
    """The device-specific configuration of one device (virtio 1.3 §5.1.4)."""

    profile: DeviceProfile
    mac: bytes = b""
    status: int = 0
    link_up: bool = True  # the carrier: the profile's until `Device.set_link` changes it

    def __post_init__(self) -> None:
        self.link_up = self.profile.link_up
        self.reset()

    def reset(self) -> None:
        """Back to the profile's values (a device reset restores the MAC, QEMU-style),
        except the carrier: status keeps LINK_UP as last set and loses ANNOUNCE, as
        QEMU's virtio_net_reset clears only VIRTIO_NET_S_ANNOUNCE."""
        self.mac = self.profile.mac
        self.status = int(VirtioNetStatus.VIRTIO_NET_S_LINK_UP) if self.link_up else 0

    @property
    def size(self) -> int:
        """28 bytes, or 80 with the XDP capability fields."""
        if self.profile.offers(_N.VIRTIO_NET_F_XDP_OFFLOAD):
            return VIRTIO_NET_CONFIG_SIZE
        return VIRTIO_NET_CONFIG_STD_SIZE

    def values(self) -> dict[str, int | bytes | list[int]]:
        """Every field with its current value; 0 where its feature is not offered."""
        p = self.profile
        xdp = p.xdp
        raw: dict[str, int | bytes | list[int]] = {
            "mac": self.mac, "status": self.status, "max_virtqueue_pairs": p.max_queue_pairs,
            "mtu": p.mtu, "speed": 0xFFFFFFFF, "duplex": 0xFF, "rss_max_key_size": 0,
            "rss_max_indirection_table_length": 0, "supported_hash_types": 0,
            "supported_tunnel_types": 0,
        }
        raw.update(xdp.to_config() if xdp else {f: EMPTY_CONFIG[f] for f in XDP_CONFIG_FIELDS})
        out: dict[str, int | bytes | list[int]] = {}
        for name, value in raw.items():
            present = any(p.offers(bit) for bit in VIRTIO_NET_CONFIG_FIELD_FEATURES[name])
            out[name] = value if present else EMPTY_CONFIG[name]
        return out

    def to_bytes(self) -> bytes:
        """The whole space as the driver reads it."""
        return bytes(virtio_net_config.build(self.values()))[:self.size]

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes at `offset`; a read outside the space is the driver's error."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise RemoteProtocolError(
                f"config read of {length} bytes at offset {offset} is outside the "
                f"{self.size}-byte virtio_net_config", "5.1.4")
        return self.to_bytes()[offset:offset + length]

    def write(self, offset: int, data: bytes) -> None:
        """Always refused: virtio-net config is read-only to the driver."""
        # virtio 1.3 §5.1.4.2: "The driver MUST NOT write to any of the device
        # configuration fields."
        raise RemoteProtocolError(
            f"driver wrote {len(data)} bytes of device config at offset {offset}", "5.1.4.2")


__all__ = ["PROFILES", "ConfigSpace", "DeviceProfile", "get_profile"]
