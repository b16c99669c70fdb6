"""The cffi extension imports and answers (built at install, out-of-line API mode)."""

from vxdp import native


def test_core_answers_with_its_version():
    assert native.core_version().startswith("vxdp-core ")


def test_core_abi_matches():
    native.check_abi()
