"""compare_with_kernel: our verdict and time beside the kernel's own figures."""

from __future__ import annotations

import pytest

from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.program import Program
from vxdp.bpf.verifier.compare import _parse_kernel_log, compare_with_kernel


def test_kernel_stats_are_parsed() -> None:
    log = ("verification time 25 usec\nstack depth 0\nprocessed 2 insns (limit 1000000) "
           "max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n")
    assert _parse_kernel_log(log) == (25e-6, 2)
    assert _parse_kernel_log("R0 !read_ok\n") == (None, None)


@pytest.mark.kernel
def test_compare_on_a_live_kernel() -> None:
    good = Program("good", "xdp", encode(assemble("mov %r0, 2\nexit\n")))
    bad = Program("bad", "xdp", encode(assemble("exit\n")))
    c = compare_with_kernel(good)
    if c.kernel_unavailable:
        pytest.skip(c.kernel_unavailable)
    assert c.agrees and c.kernel_accepted and c.kernel_insns == 2
    assert c.kernel_seconds is not None and c.ours.seconds > 0
    c = compare_with_kernel(bad)
    assert c.agrees and c.kernel_accepted is False and "R0 !read_ok" in c.kernel_log
    assert c.to_json()["agrees"] is True
