"""The device status machine (virtio 1.3 §2.1, §3.1.1), seen from the device.

Everything that affects a status transition lives in this file.

Rules
-----
* Status bits (§2.1): ACKNOWLEDGE 1, DRIVER 2, DRIVER_OK 4, FEATURES_OK 8,
  DEVICE_NEEDS_RESET 64, FAILED 128.  Writing 0 resets the device (§2.4).
* The driver sets the bits one at a time, in the order of §3.1.1:
  ACKNOWLEDGE -> DRIVER -> (features written) -> FEATURES_OK -> DRIVER_OK.
* "The driver MUST NOT clear a device status bit" (§2.1.1); only a reset clears them.
* The driver may set FAILED from anywhere (§3.1.1 last paragraph); after FAILED it MUST
  reset before re-initializing (§2.1.1).
* "The driver MUST NOT accept new feature bits after" FEATURES_OK (§3.1.1 step 5): the
  features are frozen from FEATURES_OK until the next reset.
* The device refuses FEATURES_OK when the accepted features break §2.2.1 or our own
  rules (unoffered bits, missing dependencies, VERSION_1 declined): the bit is simply not
  taken, and the driver sees it unset when it re-reads the status (§2.2.2, §3.1.1 step 6).
* A device split in two (vhost-user: QEMU and DPDK virtio_user answer the control queue
  in the front-end) may be told, with the features, which offered bits the other half
  provides (`write_features(accepted, provided=...)`): they satisfy the dependency rules
  at FEATURES_OK but are not negotiated with this device.  Without `provided` the check
  is the spec's, unchanged.
* The device sets DEVICE_NEEDS_RESET on an unrecoverable error; when DRIVER_OK is set it
  MUST then send a configuration change notification (§2.1.2).
* The device MUST NOT consume buffers or send used-buffer notifications before DRIVER_OK
  (§2.1.2): `queues_live` says whether it may.

Theory of operation
-------------------
`TRANSITIONS` is the whole machine: `{state: {event: next_state}}`, drawn from rust-vmm's
`ack_device_status`.  `next_state()` looks an edge up and raises LocalProtocolError when
there is none, for callers that drive the machine themselves.

`DeviceStatusMachine` is the device-side wrapper a device model and a conformance check
share.  The peer's write comes in as a raw byte (`write_status(value)`); the machine turns
it into one event (`classify()`), applies the table, and returns a `StatusOutcome`: the
status the driver now reads back, whether the write was taken, and if not the reason and
the clause.  A hostile write never raises: the device keeps running with its old status.
`effect` tells the device model what to do (reset its queues, start them, notify).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntFlag
from typing import Final

from .errors import LocalProtocolError
from .features import VirtioFeature, check_accept, check_offer, describe


class DeviceStatus(IntFlag):
    """The device status field (virtio 1.3 §2.1); 0 is the reset value."""

    ACKNOWLEDGE = 1
    DRIVER = 2
    DRIVER_OK = 4
    FEATURES_OK = 8
    DEVICE_NEEDS_RESET = 64
    FAILED = 128


_S = DeviceStatus
#: queues_live(): DRIVER_OK set, DEVICE_NEEDS_RESET and FAILED clear (§2.1.2).
_LIVE_MASK = int(_S.DRIVER_OK | _S.DEVICE_NEEDS_RESET | _S.FAILED)
_LIVE = int(_S.DRIVER_OK)
#: Bits the driver may write; DEVICE_NEEDS_RESET belongs to the device.
_DRIVER_BITS: Final = _S.ACKNOWLEDGE | _S.DRIVER | _S.FEATURES_OK | _S.DRIVER_OK | _S.FAILED
_DEFINED_BITS: Final = _DRIVER_BITS | _S.DEVICE_NEEDS_RESET


class DeviceState(Enum):
    """Where initialization stands; named after the last bit the driver set."""

    RESET = "reset"
    ACKNOWLEDGE = "acknowledge"
    DRIVER = "driver"
    FEATURES_OK = "features_ok"
    DRIVER_OK = "driver_ok"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.name


class StatusEvent(Enum):
    """One driver write, reduced to what it asks for."""

    RESET = "reset"  # wrote 0
    SET_ACKNOWLEDGE = "set_acknowledge"
    SET_DRIVER = "set_driver"
    SET_FEATURES_OK = "set_features_ok"
    SET_DRIVER_OK = "set_driver_ok"
    SET_FAILED = "set_failed"

    def __str__(self) -> str:
        return self.name


_st, _ev = DeviceState, StatusEvent

#: The machine: every edge there is.  RESET and SET_FAILED are legal from every state.
TRANSITIONS: Final[dict[DeviceState, dict[StatusEvent, DeviceState]]] = {
    _st.RESET: {_ev.SET_ACKNOWLEDGE: _st.ACKNOWLEDGE},
    _st.ACKNOWLEDGE: {_ev.SET_DRIVER: _st.DRIVER},
    _st.DRIVER: {_ev.SET_FEATURES_OK: _st.FEATURES_OK},
    _st.FEATURES_OK: {_ev.SET_DRIVER_OK: _st.DRIVER_OK},
    _st.DRIVER_OK: {},
    _st.FAILED: {},
}
for _edges in TRANSITIONS.values():
    _edges[_ev.RESET] = _st.RESET
    _edges[_ev.SET_FAILED] = _st.FAILED

#: The status bit each event sets.
EVENT_BIT: Final[dict[StatusEvent, DeviceStatus]] = {
    _ev.SET_ACKNOWLEDGE: _S.ACKNOWLEDGE,
    _ev.SET_DRIVER: _S.DRIVER,
    _ev.SET_FEATURES_OK: _S.FEATURES_OK,
    _ev.SET_DRIVER_OK: _S.DRIVER_OK,
    _ev.SET_FAILED: _S.FAILED,
}


def status_names(value: int) -> str:
    """`ACKNOWLEDGE|DRIVER` for 3, `0` for 0: the status byte as its bit names."""
    if not value:
        return "0"
    return "|".join(s.name or "" for s in DeviceStatus if value & s)


def next_state(state: DeviceState, event: StatusEvent) -> DeviceState:
    """The table lookup; a missing edge is our misuse, not the peer's."""
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise LocalProtocolError(f"can't handle {event} in state {state}") from None


@dataclass(frozen=True)
class InitStep:
    """One step of the driver initialization sequence (virtio 1.3 §3.1.1)."""

    number: int
    action: str
    sets: DeviceStatus | None  # the bit the driver writes in this step, if any
    status_after: DeviceStatus  # what the driver reads back once the step is done


_AD = _S.ACKNOWLEDGE | _S.DRIVER
#: virtio 1.3 §3.1.1, as data (the text is ours; the order and bits are the spec's).
DRIVER_INIT_SEQUENCE: Final[tuple[InitStep, ...]] = (
    InitStep(1, "reset the device", None, _S(0)),
    InitStep(2, "set ACKNOWLEDGE: the guest has noticed the device", _S.ACKNOWLEDGE,
             _S.ACKNOWLEDGE),
    InitStep(3, "set DRIVER: the guest knows how to drive the device", _S.DRIVER, _AD),
    InitStep(4, "read the device features and write the subset the driver understands; "
                "device config may be read but MUST NOT be written", None, _AD),
    InitStep(5, "set FEATURES_OK; no new feature bits may be accepted after this",
             _S.FEATURES_OK, _AD | _S.FEATURES_OK),
    InitStep(6, "re-read the status: unless FEATURES_OK is still set the device does "
                "not support the chosen features and is unusable", None,
             _AD | _S.FEATURES_OK),
    InitStep(7, "device-specific setup: discover and configure virtqueues, read config",
             None, _AD | _S.FEATURES_OK),
    InitStep(8, "set DRIVER_OK: the device is live", _S.DRIVER_OK,
             _AD | _S.FEATURES_OK | _S.DRIVER_OK),
)


class StatusEffect(Enum):
    """What the device model must do after a write the machine took."""

    NONE = "none"
    RESET = "reset"  # drop queues, features, offload objects (§2.4)
    FEATURES_LOCKED = "features_locked"  # features frozen until reset (§3.1.1 step 5)
    ACTIVATE = "activate"  # DRIVER_OK: queues may be used (§2.1.2)
    FAILED = "failed"  # the driver gave up; stop using the queues
    NOTIFY_CONFIG = "notify_config"  # send a configuration change notification (§2.1.2)


@dataclass(frozen=True)
class StatusOutcome:
    """The result of one write: the status the driver now reads, and why if refused."""

    status: DeviceStatus
    accepted: bool
    effect: StatusEffect = StatusEffect.NONE
    reason: str = ""
    clause: str = ""


@dataclass(frozen=True)
class BadWrite:
    """A status write that breaks a rule by itself, whatever the state."""

    reason: str
    clause: str


def classify(current: DeviceStatus, value: int) -> StatusEvent | BadWrite | None:
    """Reduce a driver write to one event, None for a write that changes nothing, or
    a `BadWrite` when the value itself breaks a rule."""
    if not 0 <= value <= 0xFF:
        return BadWrite(f"status value {value:#x} does not fit the 8-bit status field", "2.1")
    if value == 0:
        return _ev.RESET
    if value & ~_DEFINED_BITS:
        return BadWrite(f"status value {value:#04x} sets undefined bits "
                        f"{value & ~_DEFINED_BITS:#04x}", "2.1")
    cleared = current & _DRIVER_BITS & ~value
    if cleared:
        # virtio 1.3 §2.1.1: "The driver MUST NOT clear a device status bit."
        return BadWrite(f"driver cleared status bit(s) {_S(cleared).name} without a reset",
                        "2.1.1")
    new = _S(value) & _DRIVER_BITS & ~current
    if not new:
        return None
    if new & _S.FAILED:
        return _ev.SET_FAILED
    events = [e for e, bit in EVENT_BIT.items() if new & bit]
    if len(events) > 1:
        return BadWrite(f"driver set {_S(new).name} in one write; each step sets one bit",
                        "3.1.1")
    return events[0]


class DeviceStatusMachine:
    """The device's side of status and feature negotiation for one device.

    `offered` is the device's feature bitmask.  Feed the driver's writes through
    `write_features` and `write_status`; the device's own error through `needs_reset`.
    """

    def __init__(self, offered: int, *, validate_offer: bool = True) -> None:
        if validate_offer:
            broken = [v for v in check_offer(offered) if v.level == "MUST"]
            if broken:
                raise LocalProtocolError(f"device offer is invalid: {broken[0]}")
        self.offered = offered
        self._state = DeviceState.RESET
        self._status = _S(0)
        self._driver_features = 0
        self._provided = 0

    @property
    def state(self) -> DeviceState:
        return self._state

    @property
    def status(self) -> DeviceStatus:
        """What the driver reads from the status field."""
        return self._status

    @property
    def driver_features(self) -> int:
        """The features the driver wrote; final once FEATURES_OK is set."""
        return self._driver_features

    @property
    def provided(self) -> int:
        """Offered bits the other half of a split device provides (see the rules)."""
        return self._provided

    @property
    def negotiated(self) -> int | None:
        """The negotiated feature set, or None before the device took FEATURES_OK."""
        return self._driver_features if self._status & _S.FEATURES_OK else None

    @property
    def queues_live(self) -> bool:
        """virtio 1.3 §2.1.2: buffers may be consumed only after DRIVER_OK, and not
        once the device needs a reset or the driver failed it."""
        # plain ints: the datapath asks this every burst, IntFlag arithmetic is slow
        return int(self._status) & _LIVE_MASK == _LIVE

    def _refuse(self, reason: str, clause: str) -> StatusOutcome:
        return StatusOutcome(self._status, False, StatusEffect.NONE, reason, clause)

    def write_features(self, accepted: int, *, provided: int = 0) -> StatusOutcome:
        """The driver writes its accepted feature bits (virtio 1.3 §3.1.1 step 4).

        `provided`: offered bits that the other half of a split device implements for the
        driver (a vhost-user front-end that keeps the control queue provides
        VIRTIO_NET_F_CTRL_VQ).  They count as accepted when FEATURES_OK checks the
        dependencies, and are never part of `negotiated`."""
        if self._state is not DeviceState.DRIVER:
            # §3.1.1 step 4 happens after DRIVER; step 5: no new bits after FEATURES_OK.
            return self._refuse(f"driver wrote features in state {self._state}; "
                                "features are written after DRIVER and before FEATURES_OK",
                                "3.1.1")
        if provided & ~self.offered:
            raise LocalProtocolError(f"provided bits {describe(provided & ~self.offered)} "
                                     "were never offered")
        if provided & accepted:
            raise LocalProtocolError(f"bits {describe(provided & accepted)} are both accepted "
                                     "by the driver and provided by the other half")
        self._driver_features = accepted
        self._provided = provided
        return StatusOutcome(self._status, True)

    def write_status(self, value: int, *, accepted: int | None = None) -> StatusOutcome:
        """The driver writes `value` to the status field.

        `accepted`, when given, is written as the driver's features first (transports
        that deliver features and status together).
        """
        if accepted is not None and accepted != self._driver_features:
            written = self.write_features(accepted)
            if not written.accepted:
                return written
        event = classify(self._status, value)
        if event is None:
            return StatusOutcome(self._status, True)
        if isinstance(event, BadWrite):
            return self._refuse(event.reason, event.clause)
        edges = TRANSITIONS[self._state]
        if event not in edges:
            # §2.1.1: after FAILED the driver MUST reset before re-initializing.
            clause = "2.1.1" if self._state is DeviceState.FAILED else "3.1.1"
            return self._refuse(f"can't handle {event} in state {self._state}", clause)
        if event is _ev.SET_FEATURES_OK:
            violations = [v for v in check_accept(self.offered,
                                                  self._driver_features | self._provided)
                          if v.level == "MUST"]
            if violations:
                # §2.2.2: the device "MUST refuse FEATURES_OK"; the bit is not taken.
                first = violations[0]
                return self._refuse(f"features_ok refused: {first.message} "
                                    f"(accepted {describe(self._driver_features)})",
                                    first.clause)
        self._state = next_state(self._state, event)
        if event is _ev.RESET:
            self._status = _S(0)
            self._driver_features = 0
            self._provided = 0
            return StatusOutcome(self._status, True, StatusEffect.RESET)
        self._status |= EVENT_BIT[event]
        effect = {
            _ev.SET_FEATURES_OK: StatusEffect.FEATURES_LOCKED,
            _ev.SET_DRIVER_OK: StatusEffect.ACTIVATE,
            _ev.SET_FAILED: StatusEffect.FAILED,
        }.get(event, StatusEffect.NONE)
        return StatusOutcome(self._status, True, effect)

    def needs_reset(self) -> StatusOutcome:
        """The device hit an unrecoverable error and sets DEVICE_NEEDS_RESET (§2.1.2).

        If DRIVER_OK was set the effect is NOTIFY_CONFIG: "the device MUST send a device
        configuration change notification to the driver."
        """
        already = bool(self._status & _S.DEVICE_NEEDS_RESET)
        self._status |= _S.DEVICE_NEEDS_RESET
        notify = bool(self._status & _S.DRIVER_OK) and not already
        return StatusOutcome(self._status, True,
                             StatusEffect.NOTIFY_CONFIG if notify else StatusEffect.NONE)

    def has_feature(self, bit: int) -> bool:
        """True when `bit` is negotiated (FEATURES_OK taken and the driver accepted it)."""
        negotiated = self.negotiated
        return negotiated is not None and bool(negotiated >> bit & 1)

    @property
    def modern(self) -> bool:
        """VERSION_1 negotiated: little-endian rings and config (virtio 1.3 §6)."""
        return self.has_feature(VirtioFeature.VIRTIO_F_VERSION_1)


__all__ = [
    "DRIVER_INIT_SEQUENCE",
    "EVENT_BIT",
    "TRANSITIONS",
    "BadWrite",
    "DeviceState",
    "DeviceStatus",
    "DeviceStatusMachine",
    "InitStep",
    "StatusEffect",
    "StatusEvent",
    "StatusOutcome",
    "classify",
    "next_state",
    "status_names",
]
