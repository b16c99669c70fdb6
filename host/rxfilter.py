"""The receive filter of a virtio-net device: which frames reach the guest's rx queues.

Everything the control queue's RX, MAC and VLAN classes change lives here, and one
function, `RxFilter.check(frame)`, applies it to each frame on its way to the guest.
The order of the tests is QEMU's (hw/net/virtio-net.c `receive_filter`), which is the
behaviour guests are written against:

1. promiscuous mode accepts everything (even tagged frames of unknown VLANs);
2. an 802.1Q tagged frame whose VID is not in the VLAN table is dropped (only when
   VIRTIO_NET_F_CTRL_VLAN was negotiated: virtio 1.3 §5.1.6.5.3.1 "If
   VIRTIO_NET_F_CTRL_VLAN is not negotiated, the device MUST accept all VLAN tagged
   packets");
3. multicast: broadcast unless NOBCAST; nothing if NOMULTI; everything if ALLMULTI or
   the multicast table overflowed; else the multicast table;
4. unicast: nothing if NOUNI; everything if ALLUNI or the unicast table overflowed; else
   the device's own MAC address and the unicast table.

Reset state (QEMU `virtio_net_reset`): promiscuous on, every other mode off, both MAC
tables empty (virtio 1.3 §5.1.6.5.2.1: "The device MUST have an empty MAC filtering table
on reset"), the VLAN table empty, the MAC address back to the one in config space.
A table longer than `MAC_TABLE_ENTRIES` is not stored; it sets the overflow flag, which
accepts every address of that kind (QEMU's way of degrading gracefully).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Unicast plus multicast entries a MAC table holds (QEMU's MAC_TABLE_ENTRIES).
MAC_TABLE_ENTRIES = 64
#: VLAN ids are 12 bits (802.1Q); the ctrl VLAN commands carry a le16 vid.
MAX_VLAN = 1 << 12
ETH_HLEN = 14
ETH_P_8021Q = 0x8100
BROADCAST = b"\xff" * 6


def mac_str(mac: bytes) -> str:
    """`02:00:00:00:00:01` from 6 bytes."""
    return ":".join(f"{b:02x}" for b in mac)


@dataclass(frozen=True)
class Verdict:
    """Whether a frame passes the filter, and the rule that decided it."""

    accepted: bool
    reason: str


@dataclass
class RxFilter:
    """Filter state; `reset()` puts it back to the device's reset state."""

    mac: bytes
    vlan_filtering: bool = False
    promisc: bool = True
    allmulti: bool = False
    alluni: bool = False
    nomulti: bool = False
    nouni: bool = False
    nobcast: bool = False
    unicast: list[bytes] = field(default_factory=list)
    multicast: list[bytes] = field(default_factory=list)
    uni_overflow: bool = False
    multi_overflow: bool = False
    vlans: set[int] = field(default_factory=set)

    def reset(self, mac: bytes, *, vlan_filtering: bool) -> None:
        """Back to the reset state with the config-space `mac`."""
        self.mac = bytes(mac)
        self.vlan_filtering = vlan_filtering
        self.promisc, self.allmulti, self.alluni = True, False, False
        self.nomulti = self.nouni = self.nobcast = False
        self.unicast, self.multicast = [], []
        self.uni_overflow = self.multi_overflow = False
        self.vlans = set()

    def set_tables(self, unicast: list[bytes], multicast: list[bytes]) -> None:
        """VIRTIO_NET_CTRL_MAC_TABLE_SET: replace both tables (overflow flags as QEMU)."""
        self.uni_overflow = len(unicast) > MAC_TABLE_ENTRIES
        self.unicast = [] if self.uni_overflow else [bytes(m) for m in unicast]
        room = MAC_TABLE_ENTRIES - len(self.unicast)
        self.multi_overflow = len(multicast) > room
        self.multicast = [] if self.multi_overflow else [bytes(m) for m in multicast]

    def check(self, frame: bytes | memoryview) -> Verdict:
        """Decide one frame (an Ethernet frame without virtio_net_hdr)."""
        if self.promisc:
            return Verdict(True, "promiscuous mode")
        if len(frame) < ETH_HLEN:
            return Verdict(False, f"runt frame of {len(frame)} bytes")
        dst = bytes(frame[:6])
        ethertype = int.from_bytes(frame[12:14], "big")
        if self.vlan_filtering and ethertype == ETH_P_8021Q and len(frame) >= 16:
            vid = int.from_bytes(frame[14:16], "big") & 0xFFF
            if vid not in self.vlans:
                return Verdict(False, f"vlan {vid} not in the vlan table")
        if dst[0] & 1:
            if dst == BROADCAST:
                return (Verdict(False, "broadcast with NOBCAST") if self.nobcast
                        else Verdict(True, "broadcast"))
            if self.nomulti:
                return Verdict(False, f"multicast {mac_str(dst)} with NOMULTI")
            if self.allmulti:
                return Verdict(True, "all-multicast mode")
            if self.multi_overflow:
                return Verdict(True, "multicast table overflowed")
            if dst in self.multicast:
                return Verdict(True, f"multicast {mac_str(dst)} in the mac table")
            return Verdict(False, f"multicast {mac_str(dst)} not in the mac table")
        if self.nouni:
            return Verdict(False, f"unicast {mac_str(dst)} with NOUNI")
        if self.alluni:
            return Verdict(True, "all-unicast mode")
        if self.uni_overflow:
            return Verdict(True, "unicast table overflowed")
        if dst == self.mac:
            return Verdict(True, f"own mac {mac_str(dst)}")
        if dst in self.unicast:
            return Verdict(True, f"unicast {mac_str(dst)} in the mac table")
        return Verdict(False, f"unicast {mac_str(dst)} not in the mac table")


__all__ = ["MAC_TABLE_ENTRIES", "MAX_VLAN", "RxFilter", "Verdict", "mac_str"]
