"""The VXME-32 simulator: runs a translated image, word by word, as the NIC would.

    sim = Simulator(image, maps, seed=0)
    results = sim.run_batch([frame, ...], ingress_ifindex=2, rx_queue_index=0)

It executes the machine words (vxdp.bpf.nic.machine), not the BPF they came from: the
register pairs, the flags, the three memories and the firmware's helpers.  What it shares
with the packet core is the frame (BPF_PROG_TEST_RUN's: 256 bytes of headroom, room to
grow up to the tailroom), the maps (the same `Map` objects, through their public
operations), get_prandom_u32's generator (xorshift128+ seeded through splitmix64, as
csrc/helpers.c) and the helpers' rules (csrc/xdp.c), so a program's verdicts, bytes and
map contents can be compared with the interpreter's (tests/vxdp/nic).

The firmware's map memory (EMEM): a looked-up element gets an address in a window of its
own (EMEM_BASE + n * EMEM_WINDOW), kept while the simulator lives; loads and atomic adds
there read and write the element through the map.  Local memory (the stack) starts
zeroed for each batch and, as the core's stack does, keeps its bytes from one frame of
the batch to the next.

A bad access, a helper given what it cannot take or a spent branch budget stops the run
with ProgramFault, naming the frame, the word and the BPF pc it was translated from.
"""

from __future__ import annotations

import errno as E
from bisect import bisect_right
from collections.abc import Sequence

from vxdp.bpf.engine import XdpResult
from vxdp.bpf.maps import Map
from vxdp.bpf.program import XDP_HEADROOM
from vxdp.errors import MapError, ProgramFault

from .machine import (
    CTX_HANDLE,
    EMEM_BASE,
    EMEM_WINDOW,
    LM_STACK,
    M32,
    MAP_TAG,
    Cond,
    Op,
    PvField,
    Reloc,
    Space,
)
from .translate import Image

M64 = (1 << 64) - 1
PAGE = 4096
TAILROOM = 320  # SKB_DATA_ALIGN(sizeof(struct skb_shared_info)), csrc/vxdp_core.h
FRAME_STRUCT = 40  # sizeof(struct xdp_frame): adjust_head's floor
ETH_HLEN = 14
#: Taken backward branches a run may make (the core's VXDP_BRANCH_BUDGET).
BRANCH_BUDGET = 1 << 26


class _Fault(Exception):
    def __init__(self, message: str, errno: int = E.EFAULT) -> None:
        super().__init__(message)
        self.errno = errno


def _splitmix64(state: list[int]) -> int:
    state[0] = (state[0] + 0x9E3779B97F4A7C15) & M64
    z = state[0]
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class Simulator:
    """One image, its maps, and the state that outlives a frame (EMEM, the generator)."""

    def __init__(self, image: Image, maps: Sequence[Map], *, seed: int = 0) -> None:
        self.image = image
        self.maps = list(maps)
        self.code = [(int(w.op), w.d, w.a, w.b, w.i, w.x,
                      w.simm if w.op in (Op.LD, Op.ST, Op.ATADD) else w.imm)
                     for w in image.words]
        self._starts = [s.first for s in image.spans]
        self._entries: list[tuple[Map, bytes]] = []
        self._entry_of: dict[tuple[int, bytes], int] = {}
        self.rnd = [0, 0]
        self.seed(seed)
        self.lm = bytearray(LM_STACK)

    def seed(self, seed: int) -> None:
        """Restart get_prandom_u32's sequence from `seed` (the core's env_set_seed)."""
        state = [seed & M64]
        self.rnd = [_splitmix64(state), _splitmix64(state)]

    # -- frames -------------------------------------------------------------------------

    def run_batch(self, packets: Sequence[bytes], *, ingress_ifindex: int = 1,
                  rx_queue_index: int = 0) -> list[XdpResult]:
        self.lm = bytearray(LM_STACK)
        out = []
        for n, packet in enumerate(packets):
            if not ETH_HLEN <= len(packet) <= PAGE - XDP_HEADROOM - TAILROOM:
                raise ProgramFault(f"packet {n}: {len(packet)} bytes, an XDP run takes "
                                   f"{ETH_HLEN} to {PAGE - XDP_HEADROOM - TAILROOM}", E.EINVAL)
            self.frame = bytearray(PAGE)
            self.frame[XDP_HEADROOM:XDP_HEADROOM + len(packet)] = packet
            self.data = self.meta = XDP_HEADROOM
            self.end = XDP_HEADROOM + len(packet)
            self.pv = (ingress_ifindex & M32, rx_queue_index & M32)
            try:
                verdict = self._run()
            except _Fault as exc:
                raise ProgramFault(f"packet {n}: {exc}", exc.errno) from None
            out.append(XdpResult(verdict, bytes(self.frame[self.meta:self.end])))
        return out

    def where(self, word: int) -> str:
        """`word 0x0012 (bpf pc 7)`: a word and the instruction it was translated from."""
        span = self.image.spans[max(bisect_right(self._starts, word) - 1, 0)]
        return f"word {word:#06x} ({'prologue' if span.pc < 0 else f'bpf pc {span.pc}'})"

    # -- the machine --------------------------------------------------------------------

    def _run(self) -> int:
        g = [0] * 32
        code = self.code
        z = n = c = v = 0
        pc = 0
        budget = BRANCH_BUDGET
        while True:
            op, d, a, b, i, x, imm = code[pc]
            here = pc
            pc += 1
            if op < 0x20:
                va = g[a]
                vb = imm if i else g[b]
                if op == 0x01:  # mov
                    r, c, v = vb, 0, 0
                elif op == 0x02 or op == 0x03:  # add, addc
                    t = va + vb + (c if op == 0x03 else 0)
                    r = t & M32
                    c = t >> 32
                    v = ((va ^ r) & (vb ^ r)) >> 31
                elif op == 0x04 or op == 0x05:  # sub, subc (c: no borrow)
                    t = va - vb - (1 - c if op == 0x05 else 0)
                    r = t & M32
                    c = 1 if t >= 0 else 0
                    v = ((va ^ vb) & (va ^ r)) >> 31
                else:
                    c = v = 0
                    if op == 0x06:
                        r = va & vb
                    elif op == 0x07:
                        r = va | vb
                    elif op == 0x08:
                        r = va ^ vb
                    elif op == 0x09:
                        r = (va << (vb & 31)) & M32
                    elif op == 0x0A:
                        r = va >> (vb & 31)
                    elif op == 0x0B:
                        r = ((va - (va >> 31 << 32)) >> (vb & 31)) & M32
                    elif op == 0x0C:
                        r = (va * vb) & M32
                    elif op == 0x0D:
                        r = (va * vb) >> 32
                    else:  # bswap
                        r = int.from_bytes(va.to_bytes(4, "little")[:x], "big")
                g[d] = r
                z = r == 0
                n = r >> 31
            elif op == 0x20:  # br
                if x == Cond.AL or (x == Cond.EQ and z) or (x == Cond.NE and not z) \
                        or (x == Cond.HS and c) or (x == Cond.LO and not c) \
                        or (x == Cond.GE and n == v) or (x == Cond.LT and n != v):
                    if imm < pc:
                        budget -= 1
                        if not budget:
                            raise _Fault(f"the branch budget of {BRANCH_BUDGET} taken "
                                         f"backward branches is spent at {self.where(here)}",
                                         E.ELOOP)
                    pc = imm
            elif op == 0x30:  # ld
                width = x & 0xF
                raw = self._read(x >> 4, (g[a] + imm) & M32, width, here)
                value = int.from_bytes(raw, "little")
                g[d] = value & M32
                if width == 8:
                    g[d + 1] = value >> 32
            elif op == 0x31:  # st
                width = x & 0xF
                value = g[b] | (g[b + 1] << 32 if width == 8 else 0)
                self._write(x >> 4, (g[a] + imm) & M32, width,
                            (value & ((1 << 8 * width) - 1)).to_bytes(width, "little"), here)
            elif op == 0x32:  # atadd
                width = x & 0xF
                addr = (g[a] + imm) & M32
                add = g[b] | (g[b + 1] << 32 if width == 8 else 0)
                old = int.from_bytes(self._read(Space.EMEM, addr, width, here), "little")
                new = (old + add) & ((1 << 8 * width) - 1)
                self._write(Space.EMEM, addr, width, new.to_bytes(width, "little"), here)
            elif op == 0x38:  # rdpv
                g[d] = (self.data, self.end, self.meta, self.pv[0], self.pv[1], 0)[
                    PvField(x)]
            elif op == 0x39:  # ldmap
                g[d] = self._ldmap(x, imm, here)
            elif op == 0x40:  # call
                r0 = self._call(x, g, here) & M64
                g[0], g[1] = r0 & M32, r0 >> 32
            else:  # exit
                return g[0]

    # -- memories -----------------------------------------------------------------------

    def _entry(self, slot: int, key: bytes) -> int:
        at = self._entry_of.get((slot, key))
        if at is None:
            at = self._entry_of[(slot, key)] = len(self._entries)
            self._entries.append((self.maps[slot], key))
        return EMEM_BASE + at * EMEM_WINDOW

    def _element(self, addr: int, width: int, here: int) -> tuple[Map, bytes, int, bytes]:
        n, off = divmod(addr - EMEM_BASE, EMEM_WINDOW)
        if addr < EMEM_BASE or n >= len(self._entries):
            raise _Fault(f"invalid emem access at {self.where(here)}: {width} bytes at "
                         f"{addr:#x}, no element there")
        m, key = self._entries[n]
        value = m.lookup(key)
        size = m.spec.value_size
        if not isinstance(value, bytes):  # gone since it was looked up (or per-CPU)
            value = bytes(size)
        if off + width > size:
            raise _Fault(f"invalid emem access at {self.where(here)}: {width} bytes at offset "
                         f"{off} of a {size}-byte value")
        return m, key, off, value

    def _read(self, space: int, addr: int, width: int, here: int) -> bytes:
        if space == Space.LM:
            if addr + width > LM_STACK:
                raise _Fault(f"invalid lm access at {self.where(here)}: {width} bytes at "
                             f"{addr:#x} past the {LM_STACK}-byte stack")
            return bytes(self.lm[addr:addr + width])
        if space == Space.PKT:
            self._packet(addr, width, here)
            return bytes(self.frame[addr:addr + width])
        _, _, off, value = self._element(addr, width, here)
        return value[off:off + width]

    def _write(self, space: int, addr: int, width: int, data: bytes, here: int) -> None:
        if space == Space.LM:
            if addr + width > LM_STACK:
                raise _Fault(f"invalid lm access at {self.where(here)}: {width} bytes at "
                             f"{addr:#x} past the {LM_STACK}-byte stack")
            self.lm[addr:addr + width] = data
        elif space == Space.PKT:
            self._packet(addr, width, here)
            self.frame[addr:addr + width] = data
        else:
            m, key, off, value = self._element(addr, width, here)
            try:
                m.update(key, value[:off] + data + value[off + width:])
            except MapError as exc:  # a frozen map, an element deleted meanwhile
                raise _Fault(f"emem write at {self.where(here)}: {exc}", exc.errno) from None

    def _packet(self, addr: int, width: int, here: int) -> None:
        if not self.meta <= addr <= addr + width <= self.end:
            raise _Fault(f"invalid pkt access at {self.where(here)}: {width} bytes at "
                         f"{addr:#x} outside the packet [{self.meta:#x}, {self.end:#x})")

    def _lm_bytes(self, addr: int, size: int, what: str, here: int) -> bytes:
        if addr + size > LM_STACK:
            raise _Fault(f"{what} at {self.where(here)}: {size} bytes at {addr:#x} past the "
                         f"{LM_STACK}-byte stack")
        return bytes(self.lm[addr:addr + size])

    def _ldmap(self, reloc: int, slot: int, here: int) -> int:
        if slot >= len(self.maps):
            raise _Fault(f"ldmap at {self.where(here)}: map slot {slot} is not loaded",
                         E.EINVAL)
        if reloc == Reloc.MAP_ID:
            return MAP_TAG | slot
        return self._entry(slot, bytes(4))

    # -- the firmware's helpers ---------------------------------------------------------

    def _map(self, value: int, helper: str, here: int) -> tuple[int, Map]:
        slot = value & 0xFFFF
        if value & ~0xFFFF != MAP_TAG or slot >= len(self.maps):
            raise _Fault(f"{helper} at {self.where(here)}: r1 is not a map of this program",
                         E.EINVAL)
        return slot, self.maps[slot]

    def _call(self, helper: int, g: list[int], here: int) -> int:
        if helper in (1, 2, 3):
            name = ("map_lookup_elem", "map_update_elem", "map_delete_elem")[helper - 1]
            slot, m = self._map(g[2], name, here)
            key = self._lm_bytes(g[4], m.spec.key_size, name, here)
            try:
                if helper == 1:
                    return self._entry(slot, key) if m.lookup(key) is not None else 0
                if helper == 2:
                    value = self._lm_bytes(g[6], m.spec.value_size, name, here)
                    m.update(key, value, g[8] | g[9] << 32)
                else:
                    m.delete(key)
            except MapError as exc:
                return -exc.errno
            return 0
        if helper == 7:
            s1, s0 = self.rnd
            self.rnd[0] = s0
            s1 = (s1 ^ (s1 << 23)) & M64
            self.rnd[1] = s1 ^ s0 ^ (s1 >> 18) ^ (s0 >> 5)
            return ((self.rnd[1] + s0) & M64) >> 32
        if g[2] != CTX_HANDLE or g[3]:
            name = "xdp_adjust_head" if helper == 44 else "xdp_adjust_tail"
            raise _Fault(f"{name} at {self.where(here)}: r1 is not the context", E.EINVAL)
        off = g[4] - (1 << 32) if g[4] >> 31 else g[4]
        if helper == 44:  # xdp_adjust_head: the metadata moves along
            metalen = self.data - self.meta
            data = self.data + off
            if data < FRAME_STRUCT + metalen or data > self.end - ETH_HLEN:
                return -E.EINVAL
            if metalen:
                self.frame[self.meta + off:data] = self.frame[self.meta:self.data]
            self.meta += off
            self.data = data
            return 0
        if helper == 65:  # xdp_adjust_tail: grown bytes are zeroed
            end = self.end + off
            if end > PAGE - TAILROOM or end < self.data + ETH_HLEN:
                return -E.EINVAL
            if off > 0:
                self.frame[self.end:end] = bytes(off)
            self.end = end
            return 0
        raise _Fault(f"call at {self.where(here)}: the firmware has no helper {helper}",
                     E.EINVAL)


__all__ = ["BRANCH_BUDGET", "Simulator"]
