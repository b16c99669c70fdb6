"""Limits on a program's shape that bound the verifier's own work, as the kernel's do.

Generated programs too large to write out in corpus.yaml; the kernel, where bpf() is
permitted, must give the same verdict.
"""

from __future__ import annotations

import pytest

from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.program import Program
from vxdp.bpf.verifier import verify
from vxdp.bpf.verifier.cfg import MAX_SUBPROGS


def functions(count: int) -> Program:
    """The main program calling `count - 1` functions, each its own subprogram."""
    lines = [f"call local f{i}" for i in range(1, count)] + ["mov %r0, 2", "exit"]
    for i in range(1, count):
        lines += [f"f{i}:", "mov %r0, 0", "exit"]
    return Program(f"functions{count}", "xdp", encode(assemble("\n".join(lines) + "\n")))


@pytest.mark.parametrize(("count", "accepted"), [(MAX_SUBPROGS, True),
                                                 (MAX_SUBPROGS + 1, False)])
def test_at_most_256_subprograms(count: int, accepted: bool) -> None:
    report = verify(functions(count))
    assert report.accepted is accepted, report.errors
    if not accepted:
        assert report.errors == [(0, "too many subprograms")]


@pytest.mark.kernel
@pytest.mark.parametrize("count", [MAX_SUBPROGS, MAX_SUBPROGS + 1])
def test_the_kernel_has_the_same_limit(count: int) -> None:
    from vxdp.bpf.kernel import kernel_unavailable, verify_in_kernel
    if (reason := kernel_unavailable()) is not None:
        pytest.skip(reason)
    ok, log = verify_in_kernel(functions(count))
    assert ok is (count <= MAX_SUBPROGS), log[-2000:]
    if not ok:
        assert "too many subprograms" in log
