"""Hand-over of a driver's pair to the C datapath and back, and interrupt suppression.

A `guest.Driver` lends receiveq1/transmitq1 at DRIVER_OK (`lend_pairs`); `GuestPort.
from_driver` runs them in C from the driver's indices, and `hand_back` returns them at C's
indices with C's buffers still posted, which the driver then reaps as its own.  The device
is a C host port over the same rings.
"""

from __future__ import annotations

import pytest

from guest import DeviceError, Driver, FrameReceived, TxCompleted
from guest.datapath import GuestPort, Kicks
from host.datapath import HostPort, HostSwitch, QueueConfig
from virtio_spec.errors import LocalProtocolError
from virtio_spec.features import VirtioFeature as F
from virtio_spec.features import mask_of
from virtio_spec.split import SplitDriverQueue

from .test_datapath import frame, prog
from .test_driver import OFFER, ScriptedDevice, make_driver, run

NO_EVENT_IDX = OFFER & ~mask_of((F.VIRTIO_F_EVENT_IDX,))


def lent(offered: int = OFFER) -> tuple[Driver, ScriptedDevice, HostPort]:
    dev = ScriptedDevice(offered=offered)
    driver = make_driver(queue_size=32, lend_pairs=[0])
    driver.initialize()
    run(driver, dev)
    rx, tx = dev.queues[0], dev.queues[1]
    port = HostPort(HostSwitch(1), 10, driver.memory,
                    QueueConfig(rx.size, rx.desc, rx.driver, rx.device),
                    QueueConfig(tx.size, tx.desc, tx.driver, tx.device), driver.negotiated)
    return driver, dev, port


def ring(driver: Driver, index: int) -> SplitDriverQueue:
    r = driver.queues[index].ring
    assert isinstance(r, SplitDriverQueue)
    return r


def test_a_lent_pair_gets_no_buffers_from_the_driver() -> None:
    driver, dev, _ = lent()
    assert driver.lent == {0, 1}
    assert driver.queues[0].in_flight == 0 and 0 not in dev.kicks
    with pytest.raises(LocalProtocolError, match="transmitq1 is lent"):
        driver.transmit([frame(64)])


def test_hand_over_starts_at_the_driver_indices_and_moves_frames() -> None:
    driver, _, port = lent()
    g = GuestPort.from_driver(driver)
    assert g.addresses[0] == driver.queues[0].addresses
    assert g.start() == Kicks(rx=True)
    frames = [frame(64 + i, i) for i in range(10)]
    port.rx_burst(frames)
    assert g.rx_burst()[0] == frames
    assert g.tx_burst(frames[:3])[0] == 3
    assert port.tx_burst().wire == frames[:3]


def test_hand_over_refuses_a_pair_the_driver_posted_on() -> None:
    dev = ScriptedDevice()
    driver = make_driver(queue_size=32)
    driver.initialize()
    run(driver, dev)
    with pytest.raises(LocalProtocolError, match="not lent"):
        GuestPort.from_driver(driver)


def test_hand_back_at_c_indices_the_driver_reaps_c_buffers() -> None:
    driver, _, port = lent()
    g = GuestPort.from_driver(driver)
    g.start()
    for r in range(3):  # past one lap of the 32-entry rings
        port.rx_burst([frame(64, r * 20 + i) for i in range(20)])
        g.rx_burst()
        g.tx_burst([frame(80, i) for i in range(15)])
        port.tx_burst()
    g.tx_burst([frame(90, 1), frame(91, 2)])  # still in flight at the hand-back
    rx_state = g.queue_states()
    g.hand_back()
    assert not driver.lent
    rx, tx = ring(driver, 0), ring(driver, 1)
    assert (rx.avail_idx, rx.last_used_idx) == (rx_state[0]["avail_idx"],
                                                rx_state[0]["last_used_idx"])
    assert (tx.avail_idx, tx.last_used_idx) == (rx_state[1]["avail_idx"],
                                                rx_state[1]["last_used_idx"])
    assert rx.avail_idx == 32 + 60 and tx.avail_idx == 47
    assert driver.queues[0].in_flight == 32 and driver.queues[1].in_flight == 2
    # the device goes on; the driver reaps C's rx buffers and C's tx chains as its own
    sent = [frame(70, i) for i in range(40)]
    port.rx_burst(sent[:32])
    assert port.tx_burst().wire == [frame(90, 1), frame(91, 2)]
    driver.events()
    driver.interrupt(0)
    driver.interrupt(1)
    events = driver.events()
    assert [e.frame for e in events if isinstance(e, FrameReceived)] == sent[:32]
    assert len([e for e in events if isinstance(e, TxCompleted)]) == 2
    # refilled with the driver's own buffers, which the device fills next
    port.rx_burst(sent[32:])
    driver.interrupt(0)
    assert [e.frame for e in driver.events() if isinstance(e, FrameReceived)] == sent[32:]
    assert driver.transmit([frame(100)]) == 1
    assert port.tx_burst().wire == [frame(100)]


def test_hand_back_of_a_port_not_from_a_driver_is_refused() -> None:
    driver, _, _ = lent()
    g = GuestPort(driver.memory, driver.allocator, driver.negotiated, queue_size=32)
    with pytest.raises(LocalProtocolError, match="did not take its queues"):
        g.hand_back()


@pytest.mark.parametrize("offered", [OFFER, NO_EVENT_IDX], ids=["event_idx", "flags"])
def test_no_interrupts_asked_while_polling(offered: int) -> None:
    driver, _, port = lent(offered)
    g = GuestPort.from_driver(driver)
    g.start()
    g.attach(prog("mov %r0, 1\nexit"))
    g.interrupts(0, False)  # a non-empty ring is being polled
    before = port.stats["irq_sent"]
    for _ in range(5):
        port.rx_burst([frame(64, i) for i in range(8)])
        g.rx_burst()
    st = port.stats
    assert st["irq_sent"] == before and st["irq_suppressed"] >= 5
    # re-enabled with nothing pending: sleep; the next frame interrupts
    assert g.interrupts(0, True) is False
    port.rx_burst([frame(64)])
    assert port.stats["irq_sent"] == before + 1
    # frames that came between the last poll and enabling: poll again, do not sleep
    g.rx_burst()
    g.interrupts(0, False)
    port.rx_burst([frame(64)])
    assert g.interrupts(0, True) is True
    assert g.stats["xdp_drop"] == 41


def test_tx_kicks_only_when_the_device_asks() -> None:
    driver, _, port = lent()
    g = GuestPort.from_driver(driver)
    g.start()
    assert g.tx_burst([frame(64)])[1].tx  # the device waits for a kick
    native_kicks = 0
    # the device still has the first chain unconsumed: with EVENT_IDX avail_event stays
    # at 0, so further chains need no kick until it catches up
    for i in range(5):
        native_kicks += g.tx_burst([frame(64, i)])[1].tx
    assert native_kicks == 0
    assert len(port.tx_burst().wire) == 6
    assert g.tx_burst([frame(65)])[1].tx


def test_hand_back_of_a_ring_the_device_broke_leaves_the_driver_to_report_it() -> None:
    driver, dev, port = lent()
    g = GuestPort.from_driver(driver)
    g.start()
    port.rx_burst([frame(64)])
    g.rx_burst()
    # the device moves used idx past every chain it was given (§2.7.8)
    driver.memory.write_u16(dev.queues[0].device + 2, 1000)
    g.rx_burst()
    assert 0 in g.broken()
    g.hand_back()  # before the reset: the driver gets the queues back all the same
    assert not driver.lent
    driver.events()
    driver.interrupt(0)
    assert any(isinstance(e, DeviceError) and e.queue == 0 for e in driver.events())


def test_take_back_refuses_indices_that_disagree_with_the_chains_given() -> None:
    driver, _, _ = lent()
    with pytest.raises(LocalProtocolError, match="leave 5 chains in flight, 1 given"):
        driver.take_back(0, {0: (5, 0, {3: (0x1000, 64, True)}, [])})
    assert driver.lent == {0, 1}  # still lent: nothing was taken
