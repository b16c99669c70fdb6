"""Objects nobody here wrote: the BPF programs Debian's libxdp1 ships (xdp-tools), each
verified by us and by the live kernel (Linux 6.18 accepts every one of them).

They use what clang output from elsewhere uses: `pinning` in BTF map definitions (the
xdp-filter family), a perf event array and bpf_perf_event_output (xdpdump), XSKMAP lookups
and redirects (the AF_XDP default programs), global functions (the dispatcher).  Skipped
with the reason when the package is not installed.
"""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from vxdp.bpf.elf import load_object
from vxdp.bpf.engine import create_engine
from vxdp.bpf.verifier import verify

DIR = Path(f"/usr/lib/{platform.machine()}-linux-gnu/bpf")
# (object, program) -> what Linux 6.18 says, for every XDP program of the package
STOCK = {(f"xdpfilt_{mode}_{proto}.o", f"xdpfilt_{mode}_{proto}"): True
         for mode in ("alw", "dny") for proto in ("all", "eth", "ip", "tcp", "udp")}
STOCK |= {("xdp-dispatcher.o", "xdp_dispatcher"): True, ("xdp-dispatcher.o", "xdp_pass"): True,
          ("xdpdump_xdp.o", "xdpdump"): True, ("xsk_def_xdp_prog.o", "xsk_def_prog"): True,
          ("xsk_def_xdp_prog_5.3.o", "xsk_def_prog"): True}


def _program(obj: str, name: str):  # type: ignore[no-untyped-def]
    path = DIR / obj
    if not path.exists():
        pytest.skip(f"{path} not installed (Debian package libxdp1, from xdp-tools)")
    return load_object(path).programs[name]


@pytest.mark.parametrize(("obj", "name"), sorted(STOCK), ids=lambda v: str(v))
def test_our_verdict_is_the_kernels(obj: str, name: str) -> None:
    report = verify(_program(obj, name))
    assert report.accepted == STOCK[(obj, name)], report.log[-2000:]


@pytest.mark.kernel
@pytest.mark.parametrize(("obj", "name"), sorted(STOCK), ids=lambda v: str(v))
def test_the_kernel_still_says_so(obj: str, name: str) -> None:
    from vxdp.bpf.kernel import kernel_unavailable, verify_in_kernel
    program = _program(obj, name)
    if reason := kernel_unavailable():
        pytest.skip(reason)
    ok, log = verify_in_kernel(program)
    assert ok == STOCK[(obj, name)], log[-2000:]


@pytest.mark.parametrize(("obj", "name"), [("xdpdump_xdp.o", "xdpdump"),
                                           ("xsk_def_xdp_prog.o", "xsk_def_prog"),
                                           ("xsk_def_xdp_prog_5.3.o", "xsk_def_prog"),
                                           ("xdpfilt_alw_all.o", "xdpfilt_alw_all")])
def test_what_we_accept_runs_on_the_core(obj: str, name: str) -> None:
    # `vxdp exec` must run what `vxdp verify` accepts: maps created, every packet run
    pkt = bytes.fromhex("020000000001020000000002" "0800") + bytes(50)
    with create_engine("interp", _program(obj, name)) as eng:
        results = eng.run_xdp([pkt, pkt[:14]])
    assert len(results) == 2
