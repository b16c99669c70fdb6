"""Feature bits and their rules (virtio 1.3 §2.2, §5.1.3, §6); each test names its clause."""

from __future__ import annotations

import pytest

from virtio_spec.errors import FeatureError
from virtio_spec.features import (
    FEATURE_RULES,
    FeatureRule,
    bits_of,
    check_accept,
    check_offer,
    dependents,
    describe,
    ensure_valid_accept,
    ensure_valid_offer,
    feature_name,
    mask_of,
    negotiate,
)
from virtio_spec.features import (
    VirtioFeature as F,
)
from virtio_spec.features import (
    VirtioNetFeature as N,
)


def m(*bits: int) -> int:
    return mask_of(bits)


V1 = F.VIRTIO_F_VERSION_1
CTRL = N.VIRTIO_NET_F_CTRL_VQ
XDP = N.VIRTIO_NET_F_XDP_OFFLOAD


def test_bit_numbers_match_the_spec_tables() -> None:
    assert [int(f) for f in (F.VIRTIO_F_NOTIFY_ON_EMPTY, F.VIRTIO_F_ANY_LAYOUT,
                             F.VIRTIO_F_INDIRECT_DESC, F.VIRTIO_F_EVENT_IDX, V1,
                             F.VIRTIO_F_ACCESS_PLATFORM, F.VIRTIO_F_RING_PACKED,
                             F.VIRTIO_F_IN_ORDER, F.VIRTIO_F_ORDER_PLATFORM, F.VIRTIO_F_SR_IOV,
                             F.VIRTIO_F_NOTIFICATION_DATA, F.VIRTIO_F_NOTIF_CONFIG_DATA,
                             F.VIRTIO_F_RING_RESET, F.VIRTIO_F_ADMIN_VQ)] == \
        [24, 27, 28, 29, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41]
    assert (N.VIRTIO_NET_F_CSUM, N.VIRTIO_NET_F_MAC, CTRL, N.VIRTIO_NET_F_MQ) == (0, 5, 17, 22)
    assert (N.VIRTIO_NET_F_HASH_REPORT, XDP, N.VIRTIO_NET_F_GUEST_HDRLEN) == (57, 58, 59)
    assert N.VIRTIO_NET_F_SPEED_DUPLEX == 63
    # bit 4 is unassigned everywhere; 58 only by us.
    assert 4 not in {int(n) for n in N}


@pytest.mark.parametrize("mask,bits", [(0, set()), (0b101, {0, 2}), (1 << 64 | 1, {0, 64})])
def test_mask_and_bit_set_convert_both_ways(mask: int, bits: set[int]) -> None:
    assert bits_of(mask) == bits
    assert mask_of(bits) == mask


def test_conversions_refuse_negative_values() -> None:
    with pytest.raises(ValueError, match="negative"):
        bits_of(-1)
    with pytest.raises(ValueError, match="negative"):
        mask_of([-3])


def test_describe_names_bits_and_marks_undescribed_ones() -> None:
    assert describe(m(0, V1, XDP, 47)) == [
        "VIRTIO_NET_F_CSUM", "VIRTIO_F_VERSION_1", "bit 47", "VIRTIO_NET_F_XDP_OFFLOAD"]
    assert feature_name(41) == "VIRTIO_F_ADMIN_VQ"
    assert feature_name(41, legacy=True) == "VIRTIO_NET_F_GUEST_RSC4"


def test_a_sane_offer_has_no_violations() -> None:
    offer = m(V1, CTRL, XDP, N.VIRTIO_NET_F_MAC, N.VIRTIO_NET_F_CSUM, N.VIRTIO_NET_F_HOST_TSO4,
              N.VIRTIO_NET_F_MQ, F.VIRTIO_F_EVENT_IDX)
    assert check_offer(offer) == []
    ensure_valid_offer(offer)


def test_6_2_device_must_offer_version_1() -> None:
    (v,) = check_offer(m(N.VIRTIO_NET_F_MAC))
    assert (v.clause, v.level, v.feature) == ("6.2", "MUST", V1)
    with pytest.raises(FeatureError) as err:
        ensure_valid_offer(m(N.VIRTIO_NET_F_MAC))
    assert err.value.clause == "6.2"


def test_2_2_2_device_must_not_offer_mq_without_ctrl_vq() -> None:
    (v,) = check_offer(m(V1, N.VIRTIO_NET_F_MQ))
    assert (v.clause, v.level, v.feature) == ("2.2.2", "MUST", N.VIRTIO_NET_F_MQ)
    assert "virtio_net_f_mq offered without virtio_net_f_ctrl_vq" in v.message.lower()
    assert "5.1.3.1" in v.message


def test_2_2_2_xdp_offload_offered_without_ctrl_vq() -> None:
    with pytest.raises(FeatureError, match="XDP_OFFLOAD offered without") as err:
        ensure_valid_offer(m(V1, XDP))
    assert err.value.clause == "2.2.2"


@pytest.mark.parametrize("feature,deps", [
    (N.VIRTIO_NET_F_GUEST_ECN, (N.VIRTIO_NET_F_GUEST_CSUM, N.VIRTIO_NET_F_GUEST_TSO6)),
    (N.VIRTIO_NET_F_HOST_ECN, (N.VIRTIO_NET_F_CSUM, N.VIRTIO_NET_F_HOST_TSO4)),
    (N.VIRTIO_NET_F_RSC_EXT, (N.VIRTIO_NET_F_CSUM, N.VIRTIO_NET_F_HOST_TSO6)),
    (N.VIRTIO_NET_F_HASH_TUNNEL, (CTRL, N.VIRTIO_NET_F_RSS)),
    (N.VIRTIO_NET_F_HASH_TUNNEL, (CTRL, N.VIRTIO_NET_F_HASH_REPORT)),
])
def test_5_1_3_1_either_or_requirements(feature: int, deps: tuple[int, ...]) -> None:
    assert check_accept(m(V1, feature, *deps), m(V1, feature, *deps)) == []
    # Drop the "any of" member: the requirement breaks.
    broken = m(V1, feature, *deps[:-1])
    assert [v.feature for v in check_accept(broken, broken) if v.level == "MUST"] == [feature]


def test_hash_tunnel_needs_ctrl_vq_as_well_as_rss() -> None:
    bad = m(V1, N.VIRTIO_NET_F_HASH_TUNNEL, N.VIRTIO_NET_F_RSS)
    broken = {v.feature for v in check_offer(bad)}
    assert broken == {N.VIRTIO_NET_F_HASH_TUNNEL, N.VIRTIO_NET_F_RSS}


@pytest.mark.parametrize("rule", FEATURE_RULES, ids=lambda r: feature_name(r.feature))
def test_every_rule_is_enforced_on_offer_and_accept(rule: FeatureRule) -> None:
    alone = m(V1, rule.feature)
    assert rule.feature in {v.feature for v in check_offer(alone)}
    assert rule.feature in {v.feature for v in check_accept(alone, alone)}
    satisfied = alone | mask_of(rule.requires_all) | mask_of(sorted(rule.requires_any)[:1])
    assert rule.holds(bits_of(satisfied))
    assert rule.feature not in {v.feature for v in check_offer(satisfied)}


def test_5_1_4_hash_report_without_ctrl_vq_is_a_should() -> None:
    (v,) = check_offer(m(V1, N.VIRTIO_NET_F_HASH_REPORT))
    assert (v.clause, v.level) == ("5.1.4.1", "SHOULD")
    ensure_valid_offer(m(V1, N.VIRTIO_NET_F_HASH_REPORT))  # SHOULDs do not raise
    (v,) = check_accept(m(V1, N.VIRTIO_NET_F_CTRL_RX_EXTRA), m(V1, N.VIRTIO_NET_F_CTRL_RX_EXTRA))
    assert (v.clause, v.level) == ("5.1.4.2", "SHOULD")


def test_2_2_1_driver_must_not_accept_unoffered_bits() -> None:
    (v,) = check_accept(m(V1), m(V1, N.VIRTIO_NET_F_MAC))
    assert (v.clause, v.feature) == ("2.2.1", N.VIRTIO_NET_F_MAC)
    assert "did not offer" in v.message


def test_2_2_1_driver_must_not_accept_undescribed_bits() -> None:
    (v,) = check_accept(m(V1, 47), m(V1, 47))
    assert (v.clause, v.level) == ("2.2.1", "MUST")
    assert "undescribed feature bit 47" in v.message


def test_2_2_1_legacy_bits_with_version_1_are_flagged() -> None:
    (v,) = check_accept(m(V1, F.VIRTIO_F_ANY_LAYOUT), m(V1, F.VIRTIO_F_ANY_LAYOUT))
    assert (v.clause, v.level, v.feature) == ("2.2.1", "SHOULD", F.VIRTIO_F_ANY_LAYOUT)


def test_2_2_1_xdp_offload_accepted_without_ctrl_vq() -> None:
    offered = m(V1, CTRL, XDP)
    with pytest.raises(FeatureError, match="XDP_OFFLOAD accepted without") as err:
        ensure_valid_accept(offered, m(V1, XDP))
    assert err.value.clause == "2.2.1"
    ensure_valid_accept(offered, offered)


def test_6_1_driver_must_accept_version_1_if_offered() -> None:
    (v,) = check_accept(m(V1, N.VIRTIO_NET_F_MAC), m(N.VIRTIO_NET_F_MAC))
    assert (v.clause, v.feature) == ("6.1", V1)


def test_xdp_offload_requires_version_1_too() -> None:
    # A transitional device offering the bit with CTRL_VQ but no VERSION_1.
    clauses = {(v.clause, v.feature) for v in check_offer(m(CTRL, XDP))}
    assert clauses == {("6.2", V1), ("2.2.2", XDP)}


def test_negotiate_drops_what_lost_its_dependencies() -> None:
    offered = m(V1, CTRL, XDP, N.VIRTIO_NET_F_MQ, N.VIRTIO_NET_F_CSUM, N.VIRTIO_NET_F_HOST_TSO4,
                N.VIRTIO_NET_F_HOST_ECN, N.VIRTIO_NET_F_MAC)
    # The driver wants everything but CSUM and CTRL_VQ: everything that hangs off them goes.
    wanted = offered & ~m(N.VIRTIO_NET_F_CSUM, CTRL, V1)
    got = negotiate(offered, wanted)
    assert got == m(V1, N.VIRTIO_NET_F_MAC)
    assert check_accept(offered, got) == []


def test_negotiate_never_takes_unoffered_undescribed_or_legacy_bits() -> None:
    offered = m(V1, CTRL, 47, F.VIRTIO_F_ANY_LAYOUT)
    got = negotiate(offered, m(CTRL, 47, F.VIRTIO_F_ANY_LAYOUT, N.VIRTIO_NET_F_MAC))
    assert got == m(V1, CTRL)


def test_negotiate_keeps_a_full_valid_set() -> None:
    offered = m(V1, CTRL, XDP, N.VIRTIO_NET_F_GUEST_CSUM, N.VIRTIO_NET_F_GUEST_TSO4,
                N.VIRTIO_NET_F_GUEST_ECN)
    assert negotiate(offered, offered) == offered


def test_dependents_of_ctrl_vq_are_the_5_1_3_1_must_rules() -> None:
    got = dependents(N.VIRTIO_NET_F_CTRL_VQ)
    for bit in (N.VIRTIO_NET_F_CTRL_RX, N.VIRTIO_NET_F_CTRL_VLAN, N.VIRTIO_NET_F_MQ,
                N.VIRTIO_NET_F_GUEST_ANNOUNCE, N.VIRTIO_NET_F_CTRL_MAC_ADDR,
                N.VIRTIO_NET_F_XDP_OFFLOAD):
        assert got >> bit & 1, bit.name
    # SHOULD-level rules (HASH_REPORT) and unrelated bits are not dependents
    assert not got >> N.VIRTIO_NET_F_HASH_REPORT & 1
    assert not got >> N.VIRTIO_NET_F_CTRL_VQ & 1 and not got >> N.VIRTIO_NET_F_MAC & 1
    assert dependents(N.VIRTIO_NET_F_GUEST_CSUM) >> N.VIRTIO_NET_F_GUEST_TSO4 & 1
