"""A virtio-net device's saved state, for live migration (sans-I/O): taken on the source,
checked and put back on the destination.

What migrates is the device a guest's driver is using: the driver stays where it is (the
guest process, the VMM and its memory) and its vhost-user back-end moves from one host
to another, as QEMU moves a VM between two back-ends.  The driver must not notice: the
destination resumes every ring where the source stopped, with the same negotiated
features, config space, control-queue state and offloaded objects.

Rules
-----
* The state is plain, versioned data: one msgpack map of ints, bools, strings, bytes,
  lists and maps (`STATE_VERSION`; docs/offload-spec.md §10 lists the fields).  No
  pickles, no host handles: map contents are key and value bytes, the program is the
  instructions as the guest sent them (map handles in LD_IMM64 imm).
* `save()` reads a device whose rings are all stopped (vhost-user GET_VRING_BASE, which
  `Device.stop_queue` carries out), the control queue first, so that no command is
  answered after the snapshot; what was answered is in it.
* `load()` is the one entry point for state bytes and trusts nothing: every field is
  checked for type, range and consistency with the others (sizes of every key and value,
  handles, the instructions' digest, the capabilities' limits), and the first field at
  fault raises `StateError` naming it.  Nothing is built until the whole state held up.
* `restore()` builds a *new* device for the destination's profile and replays what the
  driver did through the device's own rules (status one bit at a time, the negotiated
  features at FEATURES_OK), so a state no driver could have produced is refused as the
  device would refuse the driver.  The offloaded program is verified again by the
  destination under the capabilities the migrated device keeps (the source's, which
  the destination must cover: [3.2.3] forbids the device to change them under the
  driver); that is a job the caller runs (CPU only: a worker thread), then `finish()`
  puts the program on the receive path or raises.  The caller swaps the new device in
  only after `finish()` returned: nothing is ever half-restored.
* `shortfalls()` is the compatibility check both ends apply: the front-end before the
  source stops (from the destination's GET_FEATURES and config space), the destination
  again on restore.  Features negotiated must be offered, the queue layout
  (max_virtqueue_pairs) must be the same, and when the offload was negotiated the
  destination's capabilities must cover the source's (`XdpCapabilities.shortfalls`).
"""

from __future__ import annotations

import errno as E
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]

from virtio_spec.errors import RemoteProtocolError, RingError
from virtio_spec.features import VirtioFeature, VirtioNetFeature, describe
from virtio_spec.offload import XdpCapabilities, helper_mask
from virtio_spec.status import DeviceStatus
from virtio_spec.structs import MAX_QUEUE_SIZE, VirtioNetStatus, check_queue_size
from vxdp.bpf.coremaps import CoreMap
from vxdp.bpf.program import BPF_ANY, MapSpec, MapType
from vxdp.errors import MapError, MigrationError, StateError

from .config import DeviceProfile
from .ctrl import GUEST_OFFLOAD_BITS
from .device import CtrlOwner, Device
from .offload import ENGINES, OffloadedMap, OffloadRefused, VerifyJob
from .rxfilter import MAC_TABLE_ENTRIES, MAX_VLAN

#: The version of the layout below; a state of another version is refused.
STATE_VERSION: Final = 1
#: What the state says it is.
STATE_KIND: Final = "vxdp virtio-net device"
#: State bytes a destination reads at most without offloaded maps; with them, add what
#: its capabilities let maps hold (`state_limit`).
BASE_STATE_LIMIT: Final = 16 << 20

_S = DeviceStatus
_N = VirtioNetFeature
_INIT = (_S.ACKNOWLEDGE, _S.DRIVER, _S.FEATURES_OK, _S.DRIVER_OK)
_FILTER_FLAGS = ("promisc", "allmulti", "alluni", "nomulti", "nouni", "nobcast",
                 "uni_overflow", "multi_overflow")
_NET_STATUS = int(VirtioNetStatus.VIRTIO_NET_S_LINK_UP | VirtioNetStatus.VIRTIO_NET_S_ANNOUNCE)
_U64 = (1 << 64) - 1


def state_limit(caps: XdpCapabilities | None) -> int:
    """How many state bytes a destination with capabilities `caps` accepts: the fixed
    part and three times the map storage it offers (msgpack framing of small entries)."""
    return BASE_STATE_LIMIT + (3 * caps.xdp_max_map_mem_kib * 1024 if caps else 0)


# ---------------------------------------------------------------------------- the state

@dataclass(frozen=True)
class SavedMap:
    handle: int
    spec: MapSpec
    entries: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class SavedProgram:
    insns: bytes  # as the guest sent them: map handles in LD_IMM64 imm
    gpl: bool
    engine: str  # what the source ran it on

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.insns).digest()


@dataclass(frozen=True)
class SavedOffload:
    caps: XdpCapabilities
    engine: str
    next_handle: int
    maps: tuple[SavedMap, ...]
    program: SavedProgram | None


@dataclass(frozen=True)
class SavedQueue:
    index: int
    size: int
    base: int  # where the ring resumes: the first chain the source did not complete


@dataclass(frozen=True)
class SavedDevice:
    """A checked state (`load`), ready for `restore`."""

    offered: int
    negotiated: int
    status: int
    ctrl_owner: CtrlOwner
    mac: bytes
    net_status: int
    mtu: int
    max_queue_pairs: int
    curr_queue_pairs: int
    guest_offloads: int
    rx_filter: Mapping[str, Any]
    queues: tuple[SavedQueue, ...]
    offload: SavedOffload | None
    frames_dropped: int = 0  # what reached the source since it was suspended, dropped

    @property
    def map_entries(self) -> int:
        return sum(len(m.entries) for m in self.offload.maps) if self.offload else 0

    @property
    def caps_in_use(self) -> XdpCapabilities | None:
        """The capabilities the driver works with: None without the offload negotiated."""
        if self.offload is None or not self.negotiated >> _N.VIRTIO_NET_F_XDP_OFFLOAD & 1:
            return None
        return self.offload.caps


# ---------------------------------------------------------------------------- compatibility

@dataclass(frozen=True)
class Destination:
    """What a destination offers, as its front-end sees it (GET_FEATURES, config space)
    or as its own profile says."""

    offered: int
    max_queue_pairs: int
    caps: XdpCapabilities | None
    max_queue_size: int = MAX_QUEUE_SIZE

    @classmethod
    def of(cls, profile: DeviceProfile) -> Destination:
        return cls(profile.features, profile.max_queue_pairs, profile.xdp,
                   profile.max_queue_size)


def shortfalls(dest: Destination, *, negotiated: int, max_queue_pairs: int,
               caps: XdpCapabilities | None, ring_sizes: Iterable[int] = ()) -> list[str]:
    """Why `dest` cannot take a device with these negotiated features, queue layout and
    (when the offload was negotiated) capabilities; empty when it can."""
    out = []
    missing = negotiated & ~dest.offered
    if missing:
        out.append(f"negotiated features the destination does not offer: "
                   f"{', '.join(describe(missing))}")
    if dest.max_queue_pairs != max_queue_pairs:
        out.append(f"max_virtqueue_pairs {dest.max_queue_pairs} on the destination, "
                   f"{max_queue_pairs} on the source (the driver's queue layout would change)")
    big = [s for s in ring_sizes if s > dest.max_queue_size]
    if big:
        out.append(f"ring size {max(big)} above the destination's {dest.max_queue_size}")
    if caps is not None and negotiated >> _N.VIRTIO_NET_F_XDP_OFFLOAD & 1:
        if dest.caps is None:
            if not missing >> _N.VIRTIO_NET_F_XDP_OFFLOAD & 1:
                out.append("the destination has no xdp offload capabilities")
        else:
            short = dest.caps.shortfalls(caps)
            if short:
                out.append(f"the destination's xdp capabilities ({dest.caps.name or 'unnamed'}) "
                           f"fall short of the source's ({caps.name or 'unnamed'}): "
                           f"{'; '.join(short)}")
    return out


# ---------------------------------------------------------------------------- saving

def save(device: Device, *, frames_dropped: int = 0) -> dict[str, Any]:
    """The state of a device whose rings are all stopped, as plain data (`encode` makes
    the bytes).  MigrationError (EBUSY) while a ring runs or a program is being verified,
    (EINVAL) for a device not past FEATURES_OK or broken."""
    status = device.read_status()
    if not status & _S.FEATURES_OK or status & (_S.DEVICE_NEEDS_RESET | _S.FAILED):
        raise MigrationError(f"device status {device.status_names}: only a device past "
                             f"FEATURES_OK and not failed migrates", E.EINVAL)
    queues = []
    for index in range(device.num_queues):
        slot = device.slot(index)
        if slot is None:
            continue
        if slot.engine is not None:
            # docs/offload-spec.md [10.1.1]: "A device MUST NOT save its state while a
            # ring is running" (the control queue stopped first: nothing answered after)
            raise MigrationError(f"queue {index} ({slot.name}) is running: stop every ring "
                                 f"(VHOST_USER_GET_VRING_BASE) before saving", E.EBUSY)
        queues.append({"index": index, "size": slot.size, "base": slot.base or 0})
    offload = device.offload
    if offload is not None and offload.pending is not None:
        raise MigrationError("a program is being verified: stop the control queue first",
                             E.EBUSY)
    net, rxf = device.net, device.net.rx_filter
    doc: dict[str, Any] = {
        "version": STATE_VERSION, "kind": STATE_KIND,
        "features": {"offered": device.device_features, "negotiated": device.negotiated},
        "status": status, "ctrl_owner": device.ctrl_owner.value,
        "config": {"mac": bytes(device.config.mac), "status": device.config.status,
                   "mtu": device.profile.mtu,
                   "max_virtqueue_pairs": device.profile.max_queue_pairs},
        "net": {"curr_queue_pairs": net.curr_queue_pairs,
                "guest_offloads": net.guest_offloads,
                "rx_filter": {**{f: bool(getattr(rxf, f)) for f in _FILTER_FLAGS},
                              "unicast": [bytes(m) for m in rxf.unicast],
                              "multicast": [bytes(m) for m in rxf.multicast],
                              "vlans": sorted(rxf.vlans)}},
        "queues": queues, "offload": None,
        "source": {"frames_dropped": frames_dropped},
    }
    if offload is not None:
        p = offload.program
        doc["offload"] = {
            "caps": offload.caps.to_config(),  # xdp_helpers as its four le64 words
            "engine": offload.engine, "next_handle": offload.next_handle,
            "maps": [{"handle": m.handle, "type": int(m.spec.type),
                      "key_size": m.spec.key_size, "value_size": m.spec.value_size,
                      "max_entries": m.spec.max_entries, "flags": m.spec.flags,
                      "entries": [[k, _plain(v)] for k, v in m.map.items()]}
                     for m in offload.maps.values()],
            "program": None if p is None else {
                "insns": p.sent, "gpl": p.program.gpl_compatible, "engine": p.engine,
                "digest": p.digest},
        }
    return doc


def _plain(value: Any) -> bytes:
    if not isinstance(value, bytes):  # offload profiles hold no per-CPU maps
        raise MigrationError("a per-CPU map cannot be saved", E.EINVAL)
    return value


def encode(doc: Mapping[str, Any]) -> bytes:
    """The state's bytes (msgpack, bytes as bin)."""
    data: bytes = msgpack.packb(doc, use_bin_type=True)
    return data


# ---------------------------------------------------------------------------- loading

class _Fields:
    """One map of the state, read field by field; every refusal names the field."""

    def __init__(self, doc: object, path: str) -> None:
        if not isinstance(doc, dict):
            raise StateError(path or "state", f"must be a map, got {_kind(doc)}")
        self.doc, self.path, self.seen = doc, path, set[str]()

    def _at(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def raw(self, name: str) -> object:
        self.seen.add(name)
        if name not in self.doc:
            raise StateError(self._at(name), "missing")
        return self.doc[name]

    def integer(self, name: str, lo: int = 0, hi: int = _U64) -> int:
        value = self.raw(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise StateError(self._at(name), f"must be an integer, got {_kind(value)}")
        if not lo <= value <= hi:
            raise StateError(self._at(name), f"{value} is outside {lo}..{hi}")
        return value

    def boolean(self, name: str) -> bool:
        value = self.raw(name)
        if not isinstance(value, bool):
            raise StateError(self._at(name), f"must be true or false, got {_kind(value)}")
        return value

    def blob(self, name: str, size: int | None = None) -> bytes:
        value = self.raw(name)
        if not isinstance(value, bytes):
            raise StateError(self._at(name), f"must be bytes, got {_kind(value)}")
        if size is not None and len(value) != size:
            raise StateError(self._at(name), f"{len(value)} bytes, must be {size}")
        return value

    def text(self, name: str, choices: Iterable[str]) -> str:
        value = self.raw(name)
        allowed = tuple(choices)
        if not isinstance(value, str) or value not in allowed:
            raise StateError(self._at(name), f"must be one of {', '.join(allowed)}, got "
                                             f"{value!r}")
        return value

    def items(self, name: str, most: int) -> list[Any]:
        value = self.raw(name)
        if not isinstance(value, list):
            raise StateError(self._at(name), f"must be a list, got {_kind(value)}")
        if len(value) > most:
            raise StateError(self._at(name), f"{len(value)} items, at most {most}")
        return value

    def sub(self, name: str) -> _Fields:
        return _Fields(self.raw(name), self._at(name))

    def optional(self, name: str) -> _Fields | None:
        value = self.raw(name)
        return None if value is None else _Fields(value, self._at(name))

    def done(self) -> None:
        extra = sorted(str(k) for k in self.doc if k not in self.seen)
        if extra:
            raise StateError(self._at(extra[0]), "unknown field")


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def load(data: bytes, *, limit: int = BASE_STATE_LIMIT) -> SavedDevice:
    """Check state bytes as if an attacker wrote them; StateError names the first field
    at fault."""
    if len(data) > limit:
        raise StateError("state", f"{len(data)} bytes, more than the {limit} this "
                                  f"destination reads")
    try:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several types (ExtraData, FormatError, ...)
        raise StateError("state", f"not msgpack: {type(exc).__name__}: {exc}") from None
    top = _Fields(doc, "")
    version = top.integer("version", 0, _U64)
    if version != STATE_VERSION:
        raise StateError("version", f"{version}, this destination reads version "
                                    f"{STATE_VERSION}")
    top.text("kind", (STATE_KIND,))
    feats = top.sub("features")
    offered, negotiated = feats.integer("offered"), feats.integer("negotiated")
    feats.done()
    if negotiated & ~offered:
        raise StateError("features.negotiated", f"bits {describe(negotiated & ~offered)} "
                                                f"were not offered")
    status = top.integer("status", 0, 0xFF)
    owner = CtrlOwner(top.text("ctrl_owner", [o.value for o in CtrlOwner]))
    cfg = top.sub("config")
    mac = cfg.blob("mac", 6)
    if mac[0] & 1 or mac == bytes(6):
        raise StateError("config.mac", f"{mac.hex(':')} is not a unicast address")
    net_status = cfg.integer("status", 0, 0xFFFF)
    if net_status & ~_NET_STATUS:
        raise StateError("config.status", f"{net_status:#x} sets bits virtio 1.3 §5.1.4 "
                                          f"does not define")
    mtu = cfg.integer("mtu", 68, 0xFFFF)  # virtio 1.3 §5.1.4: mtu 68..65535
    pairs = cfg.integer("max_virtqueue_pairs", 1, 0x8000)  # §5.1.4: 1..0x8000
    cfg.done()
    net = top.sub("net")
    curr = net.integer("curr_queue_pairs", 1, pairs)
    offloads = net.integer("guest_offloads")
    if offloads & ~(negotiated & GUEST_OFFLOAD_BITS):
        raise StateError("net.guest_offloads", f"{describe(offloads & ~negotiated)} not "
                                               f"negotiated (virtio 1.3 §5.1.6.5.8.2)")
    rx_filter = _load_filter(net.sub("rx_filter"))
    net.done()
    queues = _load_queues(top.items("queues", 2 * pairs + 1))
    offload_doc = top.optional("offload")
    offload = _load_offload(offload_doc) if offload_doc is not None else None
    xdp_negotiated = bool(negotiated >> _N.VIRTIO_NET_F_XDP_OFFLOAD & 1)
    if offload is None and xdp_negotiated:
        raise StateError("offload", "missing while VIRTIO_NET_F_XDP_OFFLOAD is negotiated")
    if offload is not None and not xdp_negotiated and (offload.maps or offload.program):
        raise StateError("offload.maps", "offloaded objects without VIRTIO_NET_F_XDP_OFFLOAD "
                                         "negotiated")
    source = top.sub("source")
    dropped = source.integer("frames_dropped")
    source.done()
    top.done()
    return SavedDevice(offered, negotiated, status, owner, mac, net_status, mtu, pairs, curr,
                       offloads, rx_filter, queues, offload, dropped)


def _load_filter(f: _Fields) -> dict[str, Any]:
    out: dict[str, Any] = {name: f.boolean(name) for name in _FILTER_FLAGS}
    for name, multicast in (("unicast", False), ("multicast", True)):
        macs = []
        for i, m in enumerate(f.items(name, MAC_TABLE_ENTRIES)):
            if not isinstance(m, bytes) or len(m) != 6:
                raise StateError(f"net.rx_filter.{name}[{i}]", "must be 6 bytes")
            if bool(m[0] & 1) != multicast:
                # virtio 1.3 §5.1.6.5.2.2: unicast table, then multicast table
                raise StateError(f"net.rx_filter.{name}[{i}]", f"{m.hex(':')} belongs in "
                                                               f"the other table")
            macs.append(m)
        out[name] = macs
    vlans = f.items("vlans", MAX_VLAN)
    for i, vid in enumerate(vlans):
        if not isinstance(vid, int) or isinstance(vid, bool) or not 0 <= vid < MAX_VLAN:
            raise StateError(f"net.rx_filter.vlans[{i}]", f"must be a vlan id below "
                                                          f"{MAX_VLAN}")
    if len(set(vlans)) != len(vlans):
        raise StateError("net.rx_filter.vlans", "holds an id twice")
    out["vlans"] = set(vlans)
    f.done()
    return out


def _load_queues(items: list[Any]) -> tuple[SavedQueue, ...]:
    out, seen = [], set()
    for i, item in enumerate(items):
        q = _Fields(item, f"queues[{i}]")
        index, size, base = q.integer("index", 0, 0xFFFF), q.integer("size", 1, MAX_QUEUE_SIZE), \
            q.integer("base", 0, 0xFFFF)
        q.done()
        if index in seen:
            raise StateError(f"queues[{i}].index", f"queue {index} appears twice")
        seen.add(index)
        out.append(SavedQueue(index, size, base))
    return tuple(out)


def _load_offload(o: _Fields) -> SavedOffload:
    c = o.sub("caps")
    caps = XdpCapabilities(c.integer("xdp_max_insns", 1, 0xFFFFFFFF),
                           c.integer("xdp_max_maps", 1, 0xFFFFFFFF),
                           c.integer("xdp_max_map_mem_kib", 1, 0xFFFFFFFF),
                           c.integer("xdp_map_types", 1, 0xFFFFFFFF),
                           _helpers(c),
                           c.integer("xdp_abi_version", 1, 1), name="source")
    c.done()
    engine = o.text("engine", ENGINES)
    next_handle = o.integer("next_handle", 1, 0xFFFFFFFF)
    maps: list[SavedMap] = []
    mem = 0
    for i, item in enumerate(o.items("maps", caps.xdp_max_maps)):
        m = _load_map(_Fields(item, f"offload.maps[{i}]"), caps, next_handle)
        if any(m.handle == other.handle for other in maps):
            raise StateError(f"offload.maps[{i}].handle", f"handle {m.handle} appears twice")
        mem += -(-m.spec.max_entries * (m.spec.key_size + m.spec.value_size) // 1024)
        if mem > caps.xdp_max_map_mem_kib:
            raise StateError(f"offload.maps[{i}].max_entries",
                             f"the maps take {mem} KiB, more than xdp_max_map_mem_kib "
                             f"{caps.xdp_max_map_mem_kib}")
        maps.append(m)
    p = o.optional("program")
    program = None
    if p is not None:
        insns = p.blob("insns")
        if not insns or len(insns) % 8 or len(insns) // 8 > caps.xdp_max_insns:
            raise StateError("offload.program.insns", f"{len(insns)} bytes: must be 1 to "
                                                      f"xdp_max_insns {caps.xdp_max_insns} "
                                                      f"8-byte instructions")
        program = SavedProgram(insns, p.boolean("gpl"), p.text("engine", ENGINES))
        if p.blob("digest", 32) != program.digest:
            raise StateError("offload.program.digest", "is not the SHA-256 of insns")
        p.done()
    o.done()
    return SavedOffload(caps, engine, next_handle, tuple(maps), program)


def _helpers(c: _Fields) -> int:
    words = c.items("xdp_helpers", 4)
    if len(words) != 4 or any(not isinstance(w, int) or isinstance(w, bool)
                              or not 0 <= w <= _U64 for w in words):
        raise StateError(f"{c.path}.xdp_helpers", "must be four 64-bit words (le64[4])")
    return helper_mask(words)


def _load_map(m: _Fields, caps: XdpCapabilities, next_handle: int) -> SavedMap:
    handle = m.integer("handle", 1, next_handle - 1)
    mtype = m.integer("type", 0, 0xFFFFFFFF)
    if not caps.allows_map_type(mtype) or mtype not in MapType._value2member_map_:
        raise StateError(f"{m.path}.type", f"map type {mtype} is not in the device's "
                                            f"xdp_map_types {caps.xdp_map_types:#x}")
    spec = MapSpec(f"map{handle}", MapType(mtype), m.integer("key_size", 1, 0xFFFFFFFF),
                   m.integer("value_size", 1, 0xFFFFFFFF), m.integer("max_entries", 1, 0xFFFFFFFF),
                   m.integer("flags", 0, 0xFFFFFFFF))
    if spec.percpu:
        raise StateError(f"{m.path}.type", "a per-CPU map is not offloadable")
    entries = m.items("entries", spec.max_entries)
    keys: set[bytes] = set()
    out = []
    for j, entry in enumerate(entries):
        at = f"{m.path}.entries[{j}]"
        if not isinstance(entry, list) or len(entry) != 2:
            raise StateError(at, "must be a [key, value] pair")
        key, value = entry
        if not isinstance(key, bytes) or len(key) != spec.key_size:
            raise StateError(f"{at}.key", f"must be {spec.key_size} bytes (the map's "
                                          f"key_size)")
        if not isinstance(value, bytes) or len(value) != spec.value_size:
            raise StateError(f"{at}.value", f"must be {spec.value_size} bytes (the map's "
                                            f"value_size)")
        if key in keys:
            raise StateError(f"{at}.key", f"key {key.hex()} appears twice")
        keys.add(key)
        out.append((key, value))
    m.done()
    return SavedMap(handle, spec, tuple(out))


# ---------------------------------------------------------------------------- restoring

@dataclass
class Restoring:
    """A device built from a saved state, not yet in use: run `job` (None without a
    program), then `finish`."""

    device: Device
    saved: SavedDevice
    job: VerifyJob | None = None
    notes: list[str] = field(default_factory=list)


def restore(saved: SavedDevice, profile: DeviceProfile, *, xdp_engine: str = "interp",
            ifindex: int = 0) -> Restoring:
    """A new device for the destination's `profile`, in the saved state (see the module
    docstring).  MigrationError (EOPNOTSUPP) when the destination cannot take it,
    StateError when the state contradicts the device's rules."""
    sizes = [q.size for q in saved.queues]
    reasons = shortfalls(Destination.of(profile), negotiated=saved.negotiated,
                         max_queue_pairs=saved.max_queue_pairs, caps=saved.caps_in_use,
                         ring_sizes=sizes)
    if reasons:
        # docs/offload-spec.md [10.1.2]: refuse "when its own capabilities do not cover
        # them, when it does not offer every negotiated feature, or when its queue
        # layout differs"
        raise MigrationError("the destination cannot take this device: " + "; ".join(reasons),
                             E.EOPNOTSUPP)
    xdp = profile.xdp
    if saved.caps_in_use is not None:
        # docs/offload-spec.md [10.1.2]: the device "MUST keep the saved capability
        # fields" ([3.2.3]), which the profile it verifies under derives from
        xdp = saved.caps_in_use.as_profile("migrated")
    device = Device(replace(profile, mac=saved.mac, mtu=saved.mtu, xdp=xdp),
                    xdp_engine=xdp_engine, ifindex=ifindex)
    _replay_status(device, saved)
    device.config.mac = saved.mac
    device.config.status = (saved.net_status & VirtioNetStatus.VIRTIO_NET_S_ANNOUNCE) | \
        (int(VirtioNetStatus.VIRTIO_NET_S_LINK_UP) if device.config.link_up else 0)
    net = device.net
    if saved.curr_queue_pairs > device.queue_pairs:
        raise StateError("net.curr_queue_pairs", f"{saved.curr_queue_pairs} pairs in use, "
                                                 f"the negotiated features give "
                                                 f"{device.queue_pairs}")
    net.curr_queue_pairs = saved.curr_queue_pairs
    net.guest_offloads = saved.guest_offloads
    rxf = net.rx_filter
    rxf.mac = saved.mac
    for name in _FILTER_FLAGS:
        setattr(rxf, name, saved.rx_filter[name])
    rxf.unicast = list(saved.rx_filter["unicast"])
    rxf.multicast = list(saved.rx_filter["multicast"])
    rxf.vlans = set(saved.rx_filter["vlans"])
    packed = device.has(VirtioFeature.VIRTIO_F_RING_PACKED)
    for i, q in enumerate(saved.queues):
        try:
            device.queue_role(q.index)
            check_queue_size(q.size, packed=packed)
        except (RemoteProtocolError, RingError) as exc:
            raise StateError(f"queues[{i}]", str(exc)) from None
        if packed and (q.base & 0x7FFF) >= q.size:
            raise StateError(f"queues[{i}].base", f"offset {q.base & 0x7FFF} outside the "
                                                  f"{q.size}-entry packed ring (virtio 1.3 "
                                                  f"\u00a72.8.1)")
        device.resume_at[q.index] = (q.size, q.base)
    out = Restoring(device, saved)
    if saved.offload is not None and device.offload is not None:
        out.job = _restore_offload(device, saved.offload)
    return out


def _replay_status(device: Device, saved: SavedDevice) -> None:
    """The driver's status writes and feature write, one §3.1.1 step at a time."""
    bad = saved.status & ~int(_S.ACKNOWLEDGE | _S.DRIVER | _S.FEATURES_OK | _S.DRIVER_OK)
    if bad or not saved.status & _S.FEATURES_OK:
        raise StateError("status", f"{saved.status:#04x}: a migrating device is past "
                                   f"FEATURES_OK and neither failed nor needing a reset")
    value = 0
    for bit in _INIT:
        if not saved.status & bit:
            break
        if bit is _S.FEATURES_OK:
            device.write_features(saved.negotiated, ctrl_owner=saved.ctrl_owner)
        value |= int(bit)
        events = device.write_status(value)
        if device.read_status() != value:
            why = next((getattr(e, "reason", "") for e in events if getattr(e, "reason", "")),
                       "refused")
            field_ = "features.negotiated" if bit is _S.FEATURES_OK else "status"
            raise StateError(field_, f"the device refuses it as it would the driver: {why}")
    if value != saved.status:
        raise StateError("status", f"{saved.status:#04x} skips a step of virtio 1.3 "
                                   f"\u00a73.1.1")


def _restore_offload(device: Device, saved: SavedOffload) -> VerifyJob | None:
    offload = device.offload
    assert offload is not None
    maps = []
    for i, m in enumerate(saved.maps):
        try:
            core = CoreMap(m.spec)
        except MapError as exc:
            raise StateError(f"offload.maps[{i}]", str(exc)) from None
        for j, (key, value) in enumerate(m.entries):
            try:
                core.update(key, value, BPF_ANY)
            except MapError as exc:
                core.close()
                raise StateError(f"offload.maps[{i}].entries[{j}]", str(exc)) from None
        maps.append(OffloadedMap(m.handle, m.spec, core))
    offload.adopt(maps, saved.next_handle)
    if saved.program is None:
        return None
    try:
        return offload.prepare(saved.program.insns, saved.program.gpl)
    except OffloadRefused as exc:
        raise StateError("offload.program.insns", str(exc)) from None


def finish(restoring: Restoring) -> Device:
    """The restored device, its program (if any) verified and on the receive path;
    MigrationError (EACCES) when the destination's verifier refused it."""
    job, device = restoring.job, restoring.device
    if job is not None:
        if job.report is None:
            raise ValueError("finish() before the verification job ran")
        if not job.report.accepted:
            # docs/offload-spec.md [10.1.3]: "MUST verify the program again ... and MUST
            # refuse the state when it refuses the program"; the device is not used
            pc = job.report.errors[0][0] if job.report.errors else -1
            raise MigrationError(f"the destination's verifier refused the offloaded program "
                                 f"under profile {job.profile.name}: pc {pc}: "
                                 f"{job.report.reason}", E.EACCES)
        if job.refusal is not None:  # a SmartNIC destination's translator
            raise MigrationError(f"the destination's translator refused the offloaded "
                                 f"program: {job.refusal}", job.refusal.errno)
        assert device.offload is not None
        device.offload.install(job)
    return device


__all__ = ["BASE_STATE_LIMIT", "STATE_KIND", "STATE_VERSION", "Destination", "Restoring",
           "SavedDevice", "SavedMap", "SavedOffload", "SavedProgram", "SavedQueue",
           "encode", "finish", "load", "restore", "save", "shortfalls",
           "state_limit"]
