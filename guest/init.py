"""The driver's initialization sequence (virtio 1.3 §3.1.1) as a table.

Everything that affects an initialization transition lives in this file.

Rules
-----
1. Reset the device (write 0) and wait until the status reads back 0 (§2.4.2: "after
   writing 0 to device_status, the driver MUST wait for a read of device_status to return
   0 before reinitializing the device").  At most `RESET_POLLS` reads.
2. Set ACKNOWLEDGE, then DRIVER, one bit per write, never clearing one (§2.1.1).
3. Read the offered features, write the accepted subset (§2.2.1: nothing unoffered,
   nothing whose dependency is missing: `virtio_spec.features.negotiate`).
4. Set FEATURES_OK; no feature bits are accepted after this (§3.1.1 step 5).
5. Re-read the status: if FEATURES_OK is not set the device refused the features and
   is unusable (§3.1.1 step 6); the driver sets FAILED (§3.1.1: "If any of these steps go
   irrecoverably wrong, the driver SHOULD set the FAILED status bit").
6. Read the config, then discover and program every virtqueue (§3.1.1 step 7); config is
   read but never written (§5.1.4.2).
7. Set DRIVER_OK (§3.1.1 step 8).  No notification before it (§3.1.1: "MUST NOT notify the
   device before setting DRIVER_OK").
Any step that goes wrong (a device answer the driver cannot use) leads to FAILED.

Theory of operation
-------------------
`TRANSITIONS` is `{state: {event: next_state}}`; `next_state()` looks an edge up and
raises LocalProtocolError for a missing one.  `guest.Driver` keeps the current state,
sends the request each state calls for, and feeds the outcome of the reply back as an
`InitEvent`.  FAILED and LIVE are terminal; a new `Driver.initialize()` starts over at
RESET.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from virtio_spec.errors import LocalProtocolError

#: Status reads after a reset before the driver gives up (§2.4.2 wait loop).
RESET_POLLS: Final = 8


class InitState(Enum):
    """Where initialization stands; each state is one request in flight."""

    RESET = "reset"  # write 0
    WAIT_RESET = "wait_reset"  # read status until 0
    ACKNOWLEDGE = "acknowledge"  # write ACKNOWLEDGE
    DRIVER = "driver"  # write ACKNOWLEDGE|DRIVER
    READ_FEATURES = "read_features"
    WRITE_FEATURES = "write_features"
    FEATURES_OK = "features_ok"  # write ...|FEATURES_OK
    CHECK_FEATURES_OK = "check_features_ok"  # re-read status
    READ_CONFIG = "read_config"
    SETUP_QUEUES = "setup_queues"  # read max, program, enable; once per queue
    DRIVER_OK = "driver_ok"  # write ...|DRIVER_OK
    LIVE = "live"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.name


class InitEvent(Enum):
    """The outcome of one reply."""

    DONE = "done"
    STATUS_ZERO = "status_zero"
    STATUS_NOT_ZERO = "status_not_zero"
    FEATURES_KEPT = "features_kept"
    FEATURES_REFUSED = "features_refused"
    MORE_QUEUES = "more_queues"
    QUEUES_DONE = "queues_done"
    ERROR = "error"

    def __str__(self) -> str:
        return self.name


_S, _E = InitState, InitEvent

#: The whole machine.  ERROR leads to FAILED from every non-terminal state.
TRANSITIONS: Final[dict[InitState, dict[InitEvent, InitState]]] = {
    _S.RESET: {_E.DONE: _S.WAIT_RESET},
    _S.WAIT_RESET: {_E.STATUS_ZERO: _S.ACKNOWLEDGE, _E.STATUS_NOT_ZERO: _S.WAIT_RESET},
    _S.ACKNOWLEDGE: {_E.DONE: _S.DRIVER},
    _S.DRIVER: {_E.DONE: _S.READ_FEATURES},
    _S.READ_FEATURES: {_E.DONE: _S.WRITE_FEATURES},
    _S.WRITE_FEATURES: {_E.DONE: _S.FEATURES_OK},
    _S.FEATURES_OK: {_E.DONE: _S.CHECK_FEATURES_OK},
    _S.CHECK_FEATURES_OK: {_E.FEATURES_KEPT: _S.READ_CONFIG,
                           _E.FEATURES_REFUSED: _S.FAILED},
    _S.READ_CONFIG: {_E.DONE: _S.SETUP_QUEUES},
    _S.SETUP_QUEUES: {_E.MORE_QUEUES: _S.SETUP_QUEUES, _E.QUEUES_DONE: _S.DRIVER_OK},
    _S.DRIVER_OK: {_E.DONE: _S.LIVE},
    _S.LIVE: {},
    _S.FAILED: {},
}
for _state, _edges in TRANSITIONS.items():
    if _state not in (_S.LIVE, _S.FAILED):
        _edges[_E.ERROR] = _S.FAILED


def next_state(state: InitState, event: InitEvent) -> InitState:
    """The table lookup; a missing edge is our own bug."""
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise LocalProtocolError(f"can't handle {event} in state {state}") from None


__all__ = ["RESET_POLLS", "TRANSITIONS", "InitEvent", "InitState", "next_state"]
