"""Device status machine (virtio 1.3 §2.1, §3.1.1), including the writes it refuses."""

from __future__ import annotations

import pytest

from virtio_spec.errors import LocalProtocolError
from virtio_spec.features import VirtioFeature as F
from virtio_spec.features import VirtioNetFeature as N
from virtio_spec.features import mask_of
from virtio_spec.status import (
    DRIVER_INIT_SEQUENCE,
    TRANSITIONS,
    DeviceState,
    DeviceStatusMachine,
    StatusEffect,
    StatusEvent,
    next_state,
)
from virtio_spec.status import (
    DeviceStatus as S,
)

OFFER = mask_of([F.VIRTIO_F_VERSION_1, F.VIRTIO_F_EVENT_IDX, N.VIRTIO_NET_F_CTRL_VQ,
                 N.VIRTIO_NET_F_XDP_OFFLOAD, N.VIRTIO_NET_F_MAC])
AD = S.ACKNOWLEDGE | S.DRIVER


def at_driver() -> DeviceStatusMachine:
    dev = DeviceStatusMachine(OFFER)
    dev.write_status(S.ACKNOWLEDGE)
    dev.write_status(AD)
    return dev


def live() -> DeviceStatusMachine:
    dev = at_driver()
    dev.write_features(OFFER)
    assert dev.write_status(AD | S.FEATURES_OK).accepted
    assert dev.write_status(AD | S.FEATURES_OK | S.DRIVER_OK).accepted
    return dev


def test_status_bits_have_spec_values() -> None:
    assert [int(b) for b in (S.ACKNOWLEDGE, S.DRIVER, S.DRIVER_OK, S.FEATURES_OK,
                             S.DEVICE_NEEDS_RESET, S.FAILED)] == [1, 2, 4, 8, 64, 128]


def test_3_1_1_the_driver_init_sequence_brings_the_device_live() -> None:
    dev = DeviceStatusMachine(OFFER)
    status = S(0)
    effects = []
    for step in DRIVER_INIT_SEQUENCE:
        if step.number == 1:
            out = dev.write_status(0)
        elif step.number == 4:
            out = dev.write_features(OFFER & ~mask_of([N.VIRTIO_NET_F_MAC]))
        elif step.sets is not None:
            status |= step.sets
            out = dev.write_status(status)
        else:
            continue
        assert out.accepted, out.reason
        assert dev.status == step.status_after
        effects.append(out.effect)
    assert effects == [StatusEffect.RESET, StatusEffect.NONE, StatusEffect.NONE,
                       StatusEffect.NONE, StatusEffect.FEATURES_LOCKED, StatusEffect.ACTIVATE]
    assert dev.state is DeviceState.DRIVER_OK and dev.queues_live
    assert dev.negotiated == OFFER & ~mask_of([N.VIRTIO_NET_F_MAC])
    assert dev.has_feature(N.VIRTIO_NET_F_XDP_OFFLOAD) and dev.modern


def test_2_1_2_no_queue_use_before_driver_ok() -> None:
    dev = at_driver()
    dev.write_features(OFFER)
    dev.write_status(AD | S.FEATURES_OK)
    assert not dev.queues_live
    assert dev.negotiated == OFFER


def test_2_2_2_features_ok_refused_for_xdp_offload_without_ctrl_vq() -> None:
    offer = OFFER
    dev = at_driver()
    dev.write_features(offer & ~mask_of([N.VIRTIO_NET_F_CTRL_VQ]))
    out = dev.write_status(AD | S.FEATURES_OK)
    assert not out.accepted
    assert out.clause == "2.2.1"
    assert "xdp_offload accepted without virtio_net_f_ctrl_vq" in out.reason.lower()
    # §3.1.1 step 6: the driver re-reads the status and finds FEATURES_OK unset.
    assert dev.status == AD and out.status == AD
    assert dev.negotiated is None and not dev.has_feature(N.VIRTIO_NET_F_XDP_OFFLOAD)


def test_2_2_1_features_ok_refused_for_an_unoffered_bit() -> None:
    dev = at_driver()
    out = dev.write_status(AD | S.FEATURES_OK,
                           accepted=OFFER | mask_of([N.VIRTIO_NET_F_MQ]))
    assert (out.accepted, out.clause) == (False, "2.2.1")
    assert "virtio_net_f_mq the device did not offer" in out.reason.lower()


def test_6_1_features_ok_refused_without_version_1() -> None:
    dev = at_driver()
    out = dev.write_status(AD | S.FEATURES_OK, accepted=mask_of([N.VIRTIO_NET_F_MAC]))
    assert (out.accepted, out.clause) == (False, "6.1")


def test_a_refused_features_ok_can_be_retried_with_a_valid_set() -> None:
    dev = at_driver()
    assert not dev.write_status(AD | S.FEATURES_OK, accepted=0).accepted
    assert dev.write_status(AD | S.FEATURES_OK, accepted=OFFER).accepted
    assert dev.status == AD | S.FEATURES_OK


def test_3_1_1_no_new_features_after_features_ok() -> None:
    dev = live()
    out = dev.write_features(mask_of([F.VIRTIO_F_VERSION_1]))
    assert (out.accepted, out.clause) == (False, "3.1.1")
    assert dev.driver_features == OFFER


def test_2_1_1_driver_must_not_clear_a_bit() -> None:
    dev = live()
    out = dev.write_status(S.ACKNOWLEDGE | S.FEATURES_OK | S.DRIVER_OK)
    assert (out.accepted, out.clause) == (False, "2.1.1")
    assert "cleared" in out.reason and "DRIVER" in out.reason
    assert dev.status == AD | S.FEATURES_OK | S.DRIVER_OK


@pytest.mark.parametrize("value,expect", [
    (S.ACKNOWLEDGE | S.DRIVER, "3.1.1"),     # two steps in one write
    (S.ACKNOWLEDGE | 0x10, "2.1"),           # undefined bit
    (0x100, "2.1"),                          # not a byte
])
def test_malformed_writes_from_reset_are_refused(value: int, expect: str) -> None:
    dev = DeviceStatusMachine(OFFER)
    out = dev.write_status(value)
    assert (out.accepted, out.clause, dev.status) == (False, expect, S(0))


def test_3_1_1_steps_cannot_be_skipped() -> None:
    dev = DeviceStatusMachine(OFFER)
    dev.write_status(S.ACKNOWLEDGE)
    out = dev.write_status(S.ACKNOWLEDGE | S.FEATURES_OK)
    assert not out.accepted
    assert out.reason == "can't handle SET_FEATURES_OK in state ACKNOWLEDGE"
    dev = at_driver()
    dev.write_features(OFFER)
    out = dev.write_status(AD | S.DRIVER_OK)
    assert out.reason == "can't handle SET_DRIVER_OK in state DRIVER"


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 4])
def test_failed_from_anywhere_then_only_reset(steps: int) -> None:
    dev = DeviceStatusMachine(OFFER)
    status = S(0)
    for bit in [S.ACKNOWLEDGE, S.DRIVER, S.FEATURES_OK, S.DRIVER_OK][:steps]:
        status |= bit
        assert dev.write_status(status, accepted=OFFER if bit is S.FEATURES_OK else None).accepted
    out = dev.write_status(status | S.FAILED)
    assert (out.accepted, out.effect) == (True, StatusEffect.FAILED)
    assert dev.state is DeviceState.FAILED and not dev.queues_live
    # §2.1.1: after FAILED the driver must reset before re-initializing.
    if steps < 4:
        next_bit = [S.ACKNOWLEDGE, S.DRIVER, S.FEATURES_OK, S.DRIVER_OK][steps]
        refused = dev.write_status(status | S.FAILED | next_bit)
        assert (refused.accepted, refused.clause) == (False, "2.1.1")
        assert dev.status == status | S.FAILED
    out = dev.write_status(0)
    assert (out.accepted, out.effect, dev.status) == (True, StatusEffect.RESET, S(0))
    assert dev.write_status(S.ACKNOWLEDGE).accepted


def test_2_1_1_re_init_after_failed_without_reset_is_refused() -> None:
    dev = DeviceStatusMachine(OFFER)
    dev.write_status(S.ACKNOWLEDGE)
    dev.write_status(S.ACKNOWLEDGE | S.FAILED)
    out = dev.write_status(S.ACKNOWLEDGE | S.FAILED | S.DRIVER)
    assert (out.accepted, out.clause) == (False, "2.1.1")
    assert out.reason == "can't handle SET_DRIVER in state FAILED"


def test_reset_forgets_the_features() -> None:
    dev = live()
    out = dev.write_status(0)
    assert out.effect is StatusEffect.RESET
    assert (dev.status, dev.driver_features, dev.negotiated) == (S(0), 0, None)
    assert not dev.has_feature(N.VIRTIO_NET_F_CTRL_VQ)


def test_rewriting_the_same_status_changes_nothing() -> None:
    dev = live()
    out = dev.write_status(dev.status)
    assert (out.accepted, out.effect) == (True, StatusEffect.NONE)


def test_2_1_2_needs_reset_notifies_only_once_and_only_when_live() -> None:
    dev = at_driver()
    assert dev.needs_reset().effect is StatusEffect.NONE
    dev = live()
    first, second = dev.needs_reset(), dev.needs_reset()
    assert first.effect is StatusEffect.NOTIFY_CONFIG
    assert second.effect is StatusEffect.NONE
    assert dev.status & S.DEVICE_NEEDS_RESET and not dev.queues_live
    # The driver writing its own bits back without DEVICE_NEEDS_RESET is not a "clear".
    assert dev.write_status(AD | S.FEATURES_OK | S.DRIVER_OK).accepted
    assert dev.write_status(0).accepted and dev.status == S(0)


def test_the_table_has_reset_and_failed_everywhere_and_raises_on_missing_edges() -> None:
    for state, edges in TRANSITIONS.items():
        assert edges[StatusEvent.RESET] is DeviceState.RESET, state
        assert edges[StatusEvent.SET_FAILED] is DeviceState.FAILED, state
    assert next_state(DeviceState.DRIVER, StatusEvent.SET_FEATURES_OK) is DeviceState.FEATURES_OK
    with pytest.raises(LocalProtocolError, match="can't handle SET_DRIVER_OK in state RESET"):
        next_state(DeviceState.RESET, StatusEvent.SET_DRIVER_OK)


def test_the_device_refuses_to_start_with_an_invalid_offer() -> None:
    bad = mask_of([F.VIRTIO_F_VERSION_1, N.VIRTIO_NET_F_XDP_OFFLOAD])
    with pytest.raises(LocalProtocolError, match="device offer is invalid"):
        DeviceStatusMachine(bad)
    assert DeviceStatusMachine(bad, validate_offer=False).offered == bad


# -- a split device: bits the other half provides ------------------------------------------

NET_OFFER = mask_of([F.VIRTIO_F_VERSION_1, N.VIRTIO_NET_F_CTRL_VQ, N.VIRTIO_NET_F_MQ,
                     N.VIRTIO_NET_F_CTRL_RX, N.VIRTIO_NET_F_MAC])
NO_CTRL_VQ = mask_of([F.VIRTIO_F_VERSION_1, N.VIRTIO_NET_F_MQ, N.VIRTIO_NET_F_CTRL_RX])


def net_at_driver() -> DeviceStatusMachine:
    dev = DeviceStatusMachine(NET_OFFER)
    dev.write_status(S.ACKNOWLEDGE)
    dev.write_status(AD)
    return dev


def test_5_1_3_1_mq_without_ctrl_vq_is_refused_unless_the_other_half_provides_it() -> None:
    dev = net_at_driver()
    dev.write_features(NO_CTRL_VQ)
    refused = dev.write_status(AD | S.FEATURES_OK)
    assert not refused.accepted and refused.clause == "2.2.1"
    assert "VIRTIO_NET_F_CTRL_RX accepted without VIRTIO_NET_F_CTRL_VQ" in refused.reason
    dev = net_at_driver()
    assert dev.write_features(NO_CTRL_VQ, provided=1 << N.VIRTIO_NET_F_CTRL_VQ).accepted
    assert dev.write_status(AD | S.FEATURES_OK).accepted
    assert dev.negotiated == NO_CTRL_VQ  # the provided bit is not negotiated here
    assert not dev.has_feature(N.VIRTIO_NET_F_CTRL_VQ)
    assert dev.provided == 1 << N.VIRTIO_NET_F_CTRL_VQ
    dev.write_status(0)
    assert dev.provided == 0


def test_provided_bits_are_checked() -> None:
    dev = net_at_driver()
    with pytest.raises(LocalProtocolError, match="never offered"):
        dev.write_features(NO_CTRL_VQ, provided=1 << F.VIRTIO_F_RING_PACKED)
    with pytest.raises(LocalProtocolError, match="both accepted"):
        dev.write_features(NET_OFFER, provided=1 << N.VIRTIO_NET_F_CTRL_VQ)
    # a later write without `provided` is judged as the spec has it
    dev.write_features(NO_CTRL_VQ, provided=1 << N.VIRTIO_NET_F_CTRL_VQ)
    dev.write_features(NO_CTRL_VQ)
    assert not dev.write_status(AD | S.FEATURES_OK).accepted
