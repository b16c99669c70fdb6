"""The device's control virtqueue (virtio 1.3 §5.1.6.5): chain shape, dispatch, handlers.

Rules
-----
* A control chain is `u8 class; u8 command; data[]` (device-readable), then `u8 ack`
  (exactly one device-writable byte), then optional device-writable result buffers
  (the virtio 1.4 `command-specific-result`).  Results go after the ack, never into the
  driver's readable request (virtio 1.3 §2.7.5.1; DESIGN.md).
* A chain without the 2-byte header or without a 1-byte writable ack is *malformed*: the
  device cannot even answer, so it sets DEVICE_NEEDS_RESET (QEMU `virtio_net_handle_ctrl`
  "virtio-net ctrl missing headers"), see `CtrlOutcome.malformed`.
* A chain with more readable bytes than `ControlQueue.max_request` is answered
  VIRTIO_NET_ERR, naming the limit, before anything past its header is read: a driver can
  make a chain of up to 4 GiB out of a few MiB of memory (§2.7.5.2).  The default is the
  largest standard command the device accepts (`MAX_STANDARD_REQUEST`, a MAC_TABLE_SET of
  `MAC_TABLE_MAX_READ` addresses); a class with larger commands raises it.
* Everything else is answered: an unknown (class, command), a command whose feature was
  not negotiated, a malformed body or a value out of range acks VIRTIO_NET_ERR with the
  reason in the trace; the used length is 1 + result bytes.
* Handlers live in one table keyed by (class, command); `host.Device` registers the XDP
  offload's class (`host.offload`) when its profile offers it.  A handler gets the parsed
  `CtrlRequest` and returns a `CtrlReply`; it changes `NetState`, which the receive path
  reads for every frame.
* A reply may be *pending* (`CtrlReply.job`): the command waits for work done outside
  the device (an offloaded program's verification).  `handle` then writes nothing and
  returns the job in `CtrlOutcome.pending`; `complete(chain, reply)` answers the chain
  once the work is done.

Reset state (`NetState.reset`): one queue pair in use (§5.1.6.5.6.2), filters as in
`host.rxfilter`, every negotiated guest offload on (QEMU), ANNOUNCE clear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from virtio_spec.chain import Chain
from virtio_spec.ctrl import (
    VIRTIO_NET_CTRL_ACK_SIZE,
    VIRTIO_NET_CTRL_HDR_SIZE,
    VIRTIO_NET_ERR,
    VIRTIO_NET_OK,
    VirtioNetCtrlAnnounce,
    VirtioNetCtrlClass,
    VirtioNetCtrlGuestOffloads,
    VirtioNetCtrlMac,
    VirtioNetCtrlMq,
    VirtioNetCtrlRx,
    VirtioNetCtrlVlan,
    check_command_allowed,
    command_name,
    parse_ctrl,
    switch_key,
)
from virtio_spec.errors import RemoteProtocolError
from virtio_spec.features import VirtioNetFeature, describe, mask_of
from virtio_spec.offload import VIRTIO_NET_CTRL_EBPF
from virtio_spec.structs import VirtioNetStatus

from .config import ConfigSpace, DeviceProfile
from .events import CtrlHandled
from .rxfilter import MAC_TABLE_ENTRIES, MAX_VLAN, RxFilter, mac_str

_N = VirtioNetFeature
_C = VirtioNetCtrlClass

#: Guest offloads GUEST_OFFLOADS_SET may toggle (QEMU `virtio_net_supported_guest_offloads`).
GUEST_OFFLOAD_BITS = mask_of((
    _N.VIRTIO_NET_F_GUEST_CSUM, _N.VIRTIO_NET_F_GUEST_TSO4, _N.VIRTIO_NET_F_GUEST_TSO6,
    _N.VIRTIO_NET_F_GUEST_ECN, _N.VIRTIO_NET_F_GUEST_UFO, _N.VIRTIO_NET_F_GUEST_USO4,
    _N.VIRTIO_NET_F_GUEST_USO6))


#: The most addresses a VIRTIO_NET_CTRL_MAC_TABLE_SET may carry, both tables together.
#: The device keeps MAC_TABLE_ENTRIES and takes a longer table as overflow (every address
#: of that kind accepted, as QEMU does), so past that the addresses only cost reading;
#: 64 times QEMU's table is more than any driver's address lists.
MAC_TABLE_MAX_READ = 64 * MAC_TABLE_ENTRIES
#: The largest standard command: the header and a MAC_TABLE_SET of MAC_TABLE_MAX_READ
#: addresses (two le32 `entries`, 6 bytes an address, virtio 1.3 §5.1.6.5.2).
MAX_STANDARD_REQUEST = VIRTIO_NET_CTRL_HDR_SIZE + 2 * 4 + 6 * MAC_TABLE_MAX_READ


def _readable_head(chain: Chain, n: int) -> bytes:
    """The first `n` device-readable bytes of `chain` (nothing past them is read)."""
    out = b""
    for seg in chain.readable:
        out += bytes(seg.view[:n - len(out)])
        if len(out) >= n:
            break
    return out


@dataclass
class NetState:
    """What the control queue changes and the datapath reads."""

    profile: DeviceProfile
    config: ConfigSpace
    rx_filter: RxFilter
    curr_queue_pairs: int = 1
    guest_offloads: int = 0
    negotiated: int = 0

    @classmethod
    def initial(cls, profile: DeviceProfile, config: ConfigSpace) -> NetState:
        return cls(profile, config, RxFilter(config.mac))

    def reset(self, config: ConfigSpace) -> None:
        """Device reset (virtio 1.3 §2.4)."""
        self.config = config
        self.rx_filter.reset(config.mac, vlan_filtering=False)
        self.curr_queue_pairs = 1
        self.guest_offloads = 0
        self.negotiated = 0

    def apply_features(self, negotiated: int, *, filters: bool = True) -> None:
        """FEATURES_OK taken: the filter and offloads follow the negotiated set.

        `filters=False`: the control queue is a vhost-user front-end's, so its VLAN table
        never reaches this device, which then filters no VLAN."""
        self.negotiated = negotiated
        # virtio 1.3 §5.1.6.5.3.1: without CTRL_VLAN "the device MUST accept all VLAN
        # tagged packets"; with it, the VLAN table (empty after reset) filters.
        self.rx_filter.vlan_filtering = filters and bool(
            negotiated >> _N.VIRTIO_NET_F_CTRL_VLAN & 1)
        self.guest_offloads = negotiated & GUEST_OFFLOAD_BITS


@dataclass(frozen=True)
class CtrlRequest:
    """A parsed, allowed control command: the body container and the result room."""

    cls: int
    command: int
    body: Any
    result_room: int


@dataclass(frozen=True)
class CtrlReply:
    """A handler's answer: ack, result bytes written after the ack, and what it did.
    `job`: the answer waits for it (see the rules); `changed`: the handler changed what
    the datapath runs (the offloaded program)."""

    ack: int
    detail: str
    result: bytes = b""
    job: Any = None
    changed: bool = False

    @classmethod
    def ok(cls, detail: str, result: bytes = b"") -> CtrlReply:
        return cls(int(VIRTIO_NET_OK), detail, result)

    @classmethod
    def err(cls, detail: str) -> CtrlReply:
        return cls(int(VIRTIO_NET_ERR), detail)


Handler = Callable[[CtrlRequest], CtrlReply]


@dataclass(frozen=True)
class CtrlOutcome:
    """What handling one chain came to.  `malformed` set: no ack was written; `pending`
    set: nothing written yet, the chain waits for that job (`ControlQueue.complete`)."""

    cls: int
    command: int
    name: str
    ack: int
    written: int
    detail: str
    malformed: RemoteProtocolError | None = None
    pending: Any = None
    changed: bool = False

    def event(self, queue: int, head: int) -> CtrlHandled:
        return CtrlHandled(queue, head, self.cls, self.command, self.name, self.ack,
                           self.written, self.detail)


class ControlQueue:
    """The (class, command) dispatch table and the chain handling around it."""

    def __init__(self, net: NetState, *, ebpf_class: int = VIRTIO_NET_CTRL_EBPF,
                 max_request: int = MAX_STANDARD_REQUEST) -> None:
        self.net = net
        self.ebpf_class = ebpf_class
        #: Readable bytes a command may have (header included); longer chains are
        #: answered VIRTIO_NET_ERR unread.  Raise it for a class with larger commands.
        self.max_request = max_request
        self._table: dict[tuple[int, int], Handler] = {}
        for rx in VirtioNetCtrlRx:
            self.register(_C.VIRTIO_NET_CTRL_RX, rx, self._rx_mode)
        self.register(_C.VIRTIO_NET_CTRL_MAC, VirtioNetCtrlMac.VIRTIO_NET_CTRL_MAC_TABLE_SET,
                      self._mac_table_set)
        self.register(_C.VIRTIO_NET_CTRL_MAC, VirtioNetCtrlMac.VIRTIO_NET_CTRL_MAC_ADDR_SET,
                      self._mac_addr_set)
        for vlan in VirtioNetCtrlVlan:
            self.register(_C.VIRTIO_NET_CTRL_VLAN, vlan, self._vlan)
        self.register(_C.VIRTIO_NET_CTRL_ANNOUNCE,
                      VirtioNetCtrlAnnounce.VIRTIO_NET_CTRL_ANNOUNCE_ACK, self._announce_ack)
        self.register(_C.VIRTIO_NET_CTRL_MQ, VirtioNetCtrlMq.VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
                      self._vq_pairs_set)
        self.register(_C.VIRTIO_NET_CTRL_GUEST_OFFLOADS,
                      VirtioNetCtrlGuestOffloads.VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET,
                      self._guest_offloads_set)

    def register(self, cls: int, command: int, handler: Handler) -> None:
        """Add or replace the handler of (class, command)."""
        self._table[(int(cls), int(command))] = handler

    @property
    def commands(self) -> frozenset[tuple[int, int]]:
        """Every (class, command) this device answers with a handler."""
        return frozenset(self._table)

    def handle(self, chain: Chain, negotiated: int) -> CtrlOutcome:
        """Answer one control chain (see the rules at the top of this file)."""
        head_len = chain.readable_len
        if head_len < VIRTIO_NET_CTRL_HDR_SIZE:
            return CtrlOutcome(-1, -1, "malformed", -1, 0, "", RemoteProtocolError(
                f"control chain {chain.head} has {head_len} readable bytes, no class/command "
                "header", "5.1.6.5"))
        if not chain.writable or chain.writable[0].length != VIRTIO_NET_CTRL_ACK_SIZE:
            got = chain.writable[0].length if chain.writable else 0
            return CtrlOutcome(-1, -1, "malformed", -1, 0, "", RemoteProtocolError(
                f"control chain {chain.head}: the ack must be 1 device-writable byte, the "
                f"first writable buffer has {got}", "5.1.6.5"))
        if head_len > self.max_request:
            cls, command = _readable_head(chain, VIRTIO_NET_CTRL_HDR_SIZE)
            return self.complete(chain, cls, command, CtrlReply.err(
                f"control chain {chain.head}: {head_len} readable bytes, more than the "
                f"{self.max_request} this device reads for a command (max_request); not "
                f"read"))
        data = chain.read()
        cls, command = data[0], data[1]
        reply = self._answer(cls, command, data, chain.writable_len - 1, negotiated)
        if reply.job is not None:
            name = command_name(cls, command, ebpf_class=self.ebpf_class)
            return CtrlOutcome(cls, command, name, -1, 0, reply.detail, pending=reply.job)
        return self.complete(chain, cls, command, reply)

    def complete(self, chain: Chain, cls: int, command: int, reply: CtrlReply) -> CtrlOutcome:
        """Write the ack and the result into the chain's writable buffers."""
        name = command_name(cls, command, ebpf_class=self.ebpf_class)
        if len(reply.result) > chain.writable_len - 1:
            reply = CtrlReply.err(f"result of {len(reply.result)} bytes does not fit the "
                                  f"{chain.writable_len - 1} writable bytes after the ack")
        written = chain.write(bytes([reply.ack]) + reply.result)
        return CtrlOutcome(cls, command, name, reply.ack, written, reply.detail,
                           changed=reply.changed)

    def _answer(self, cls: int, command: int, data: bytes, room: int,
                negotiated: int) -> CtrlReply:
        try:
            check_command_allowed(cls, command, negotiated, ebpf_class=self.ebpf_class)
            handler = self._table.get(switch_key(cls, command, self.ebpf_class))
            if handler is None:
                return CtrlReply.err(f"class {cls} command {command} is not implemented")
            parsed = parse_ctrl(data, ebpf_class=self.ebpf_class)
            return handler(CtrlRequest(cls, command, parsed.data, room))
        except RemoteProtocolError as err:
            return CtrlReply.err(str(err))

    # ---------------------------------------------------------------- handlers

    def _rx_mode(self, req: CtrlRequest) -> CtrlReply:
        attr = VirtioNetCtrlRx(req.command).name.removeprefix("VIRTIO_NET_CTRL_RX_").lower()
        on = bool(req.body.on)
        setattr(self.net.rx_filter, attr, on)
        return CtrlReply.ok(f"{attr} {'on' if on else 'off'}")

    def _mac_table_set(self, req: CtrlRequest) -> CtrlReply:
        uni = [bytes(m) for m in req.body.unicast.macs]
        multi = [bytes(m) for m in req.body.multicast.macs]
        # virtio 1.3 §5.1.6.5.2.2: the first table holds "non-multicast MAC addresses",
        # the second multicast ones.
        bad = [m for m in uni if m[0] & 1] + [m for m in multi if not m[0] & 1]
        if bad:
            return CtrlReply.err(f"mac {mac_str(bad[0])} is in the wrong table (\u00a75.1.6.5.2.2)")
        # §5.1.6.5.2.1: "The device MUST update the MAC filtering table before it
        # consumes the VIRTIO_NET_CTRL_MAC_TABLE_SET command."
        self.net.rx_filter.set_tables(uni, multi)
        shown = ", ".join(mac_str(m) for m in uni + multi) or "none"
        return CtrlReply.ok(f"{len(uni)} unicast, {len(multi)} multicast: {shown}")

    def _mac_addr_set(self, req: CtrlRequest) -> CtrlReply:
        mac = bytes(req.body.mac)
        if mac[0] & 1 or mac == bytes(6):
            return CtrlReply.err(f"{mac_str(mac)} is not a unicast address")
        # §5.1.6.5.2.1: "The device MUST update the MAC address field in the
        # configuration space before it consumes the VIRTIO_NET_CTRL_MAC_ADDR_SET command."
        self.net.config.mac = mac
        self.net.rx_filter.mac = mac
        return CtrlReply.ok(f"mac now {mac_str(mac)}")

    def _vlan(self, req: CtrlRequest) -> CtrlReply:
        vid = int(req.body.vid)
        if vid >= MAX_VLAN:
            return CtrlReply.err(f"vlan id {vid} is not below {MAX_VLAN}")
        vlans = self.net.rx_filter.vlans
        if req.command == VirtioNetCtrlVlan.VIRTIO_NET_CTRL_VLAN_ADD:
            vlans.add(vid)
            return CtrlReply.ok(f"vlan {vid} added")
        vlans.discard(vid)
        return CtrlReply.ok(f"vlan {vid} removed")

    def _announce_ack(self, req: CtrlRequest) -> CtrlReply:
        # virtio 1.3 §5.1.6.5.4.2: the device clears VIRTIO_NET_S_ANNOUNCE in status
        # before it marks the ANNOUNCE_ACK buffer used.
        self.net.config.status &= ~int(VirtioNetStatus.VIRTIO_NET_S_ANNOUNCE)
        return CtrlReply.ok("status.ANNOUNCE cleared")

    def _vq_pairs_set(self, req: CtrlRequest) -> CtrlReply:
        pairs = int(req.body.virtqueue_pairs)
        top = self.net.profile.max_queue_pairs
        if not 1 <= pairs <= top:
            # virtio 1.3 §5.1.6.5.6.1: virtqueue_pairs between 1 and max_virtqueue_pairs.
            return CtrlReply.err(f"virtqueue_pairs {pairs} outside 1..{top} (\u00a75.1.6.5.6.1)")
        self.net.curr_queue_pairs = pairs
        return CtrlReply.ok(f"{pairs} queue pair(s) in use")

    def _guest_offloads_set(self, req: CtrlRequest) -> CtrlReply:
        offloads = int(req.body.offloads)
        allowed = self.net.negotiated & GUEST_OFFLOAD_BITS
        if offloads & ~allowed:
            # virtio 1.3 §5.1.6.5.8.2: the driver MUST NOT enable an offload whose
            # feature was not negotiated.
            return CtrlReply.err(f"offloads {describe(offloads & ~allowed)} not negotiated "
                                 f"(\u00a75.1.6.5.8.2)")
        self.net.guest_offloads = offloads
        return CtrlReply.ok(f"guest offloads: {', '.join(describe(offloads)) or 'none'}")


__all__ = ["GUEST_OFFLOAD_BITS", "MAC_TABLE_MAX_READ", "MAX_STANDARD_REQUEST", "ControlQueue",
           "CtrlOutcome", "CtrlReply", "CtrlRequest", "Handler", "NetState"]
