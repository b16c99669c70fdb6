"""The cffi extension imports and answers (built at install, out-of-line API mode)."""

from vxdp import native


def test_core_answers_with_its_version():
    assert native.core_version().startswith("vxdp-core ")


def test_core_abi_matches():
    native.check_abi()


def test_xcpu_probe_times_a_round_trip_between_two_cpus():
    import os

    import pytest

    from vxdp.errors import CoreError
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    assert native.xcpu_rtt_ns(cpus[0], cpus[1], rounds=2000) > 0
    with pytest.raises(CoreError, match="two different CPUs"):
        native.xcpu_rtt_ns(cpus[0], cpus[0])
    with pytest.raises(CoreError, match="at least 2 rounds"):
        native.xcpu_rtt_ns(cpus[0], cpus[1], rounds=1)
    with pytest.raises(CoreError, match="cannot pin"):
        native.xcpu_rtt_ns(cpus[0], 1023)
