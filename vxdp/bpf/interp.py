"""The `interp` engine: programs run on the C interpreter of the packet core.

    run_raw(insns, mem) -> r0             # the ubpf / bpf_conformance harness setting
    InterpEngine(program).run_xdp(pkts)   # XDP in the frame of BPF_PROG_TEST_RUN
"""

from __future__ import annotations

from vxdp import native


def run_raw(insns: bytes, mem: bytes = b"") -> int:
    """Run `insns` as the bpf_conformance harness does and return r0 as a u64.

    r1 points at a writable copy of `mem` (0 when it is empty), r2 is len(mem), r10 the top
    of a 512-byte stack; the harness helpers 0-5 of ubpf are callable (helper 5 unwinds the
    program when it returns 0).  Raises InvalidProgram at load and ProgramFault at run time.
    """
    prog = native.prog_load(insns, native.MODE_RAW)
    ret, _ = native.run_raw(prog, mem)
    return ret
