"""Driving a driver under test against the recording device, for the driver checks.

`start(make, offer, **device)` builds a `RecordingDevice` offering `offer`, starts a
fresh driver on it and returns a `DriverRun`; `exercise(run)` makes the driver transmit,
receive and change its filter; `busy` does both and insists the driver went live.
`DriverRun.require()` makes a clause not applicable when the driver did not negotiate
what the running clause needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..features import VirtioFeature, VirtioNetFeature, describe, mask_of
from ..status import DeviceStatus
from .adapter import REFUSED, DriverFactory, DriverUnderTest, NotApplicable, Unsupported
from .observe import ObservedChain
from .recorder import RecordingDevice
from .registry import current_clause
from .session import ethernet_frame

_F, _N, _S = VirtioFeature, VirtioNetFeature, DeviceStatus
#: A plain modern virtio-net offer, as QEMU makes without vhost extras.
PLAIN_OFFER = mask_of([
    _F.VIRTIO_F_VERSION_1, _N.VIRTIO_NET_F_MAC, _N.VIRTIO_NET_F_STATUS, _N.VIRTIO_NET_F_MTU,
    _N.VIRTIO_NET_F_CTRL_VQ, _N.VIRTIO_NET_F_CTRL_RX, _N.VIRTIO_NET_F_CTRL_MAC_ADDR,
])
#: The plain offer with the ring features a driver may take.
RING_OFFER = PLAIN_OFFER | mask_of([_F.VIRTIO_F_INDIRECT_DESC, _F.VIRTIO_F_EVENT_IDX])
DRIVER_BITS = _S.ACKNOWLEDGE | _S.DRIVER | _S.FEATURES_OK | _S.DRIVER_OK | _S.FAILED


@dataclass
class DriverRun:
    """A driver started against a recording device."""

    rec: RecordingDevice
    driver: DriverUnderTest

    @property
    def live(self) -> bool:
        return self.rec.machine.queues_live

    def require(self, *bits: int) -> None:
        """Not applicable unless the driver negotiated `bits` and the running clause's
        `requires`."""
        clause = current_clause()
        negotiated = self.rec.negotiated
        missing = [b for b in bits if not negotiated >> b & 1]
        if missing:
            raise NotApplicable(f"driver did not negotiate {', '.join(describe(mask_of(missing)))}")
        if clause is not None and not clause.applies(negotiated):
            raise clause.not_applicable(negotiated)

    def must_be_live(self) -> None:
        if not self.live:
            raise AssertionError(f"driver did not reach DRIVER_OK against a valid offer "
                                 f"(status {self.rec.status:#x})")


def start(make: DriverFactory, offer: int = PLAIN_OFFER, **device: object) -> DriverRun:
    rec = RecordingDevice(offer, **device)  # type: ignore[arg-type]
    driver = make()
    driver.start(rec)
    rec.scan()
    return DriverRun(rec, driver)


def exercise(run: DriverRun, frames: int = 4) -> None:
    """Transmit and receive `frames` frames, ask for promiscuous mode, poll."""
    if not run.live:
        return
    sent = [ethernet_frame(100 + i, 60 + 37 * i) for i in range(frames)]
    run.driver.transmit(sent)
    run.rec.scan()
    run.rec.deliver([ethernet_frame(200 + i) for i in range(frames)])
    run.driver.poll()
    run.rec.scan()
    try:
        run.driver.set_promisc(True)
    except Unsupported:
        pass  # no such API
    except REFUSED:
        pass  # the driver declined a command it may not send (e.g. no CTRL_RX)
    run.rec.scan()
    run.driver.transmit(sent)
    run.rec.scan()
    run.driver.poll()
    run.rec.scan()


def busy(make: DriverFactory, offer: int = RING_OFFER, **device: object) -> DriverRun:
    run = start(make, offer, **device)
    run.must_be_live()
    exercise(run)
    return run


def made_chains(run: DriverRun) -> list[ObservedChain]:
    chains = run.rec.all_chains()
    assert chains, "the driver made no buffer available"
    return chains


__all__ = ["DRIVER_BITS", "PLAIN_OFFER", "RING_OFFER", "DriverRun", "busy", "exercise",
           "made_chains", "start"]
