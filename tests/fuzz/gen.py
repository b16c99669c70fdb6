"""A generator of XDP programs that look like real ones, with mistakes sprinkled in.

Each program is a sequence of fragments (packet loads behind a data_end check, map lookups
with or without the NULL check, stack spills and fills, variable indexes with or without
a mask, helper calls with sizes, scalar arithmetic, forward branches) whose offsets, sizes
and constants are drawn so that some of them are out of bounds.  About half of the
programs are safe, so the verifier's verdicts on both sides get exercised.
"""

from __future__ import annotations

import random

from vxdp.bpf.program import MapSpec, MapType

MAPS = (MapSpec("hash", MapType.HASH, 4, 16, 64), MapSpec("array", MapType.ARRAY, 4, 32, 8))
SIZES = {1: "b", 2: "h", 4: "w", 8: "dw"}


class Gen:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.lines: list[str] = []
        self.labels = 0

    def label(self) -> str:
        self.labels += 1
        return f"l{self.labels}"

    def off(self, limit: int) -> int:
        """Mostly inside [0, limit), sometimes just past it, rarely negative."""
        r = self.rng.random()
        if r < 0.8:
            return self.rng.randrange(max(limit, 1))
        if r < 0.95:
            return limit + self.rng.randrange(4)
        return -self.rng.randrange(1, 9)

    def size(self) -> int:
        return self.rng.choice((1, 2, 4, 8))

    def emit(self, *lines: str) -> None:
        self.lines.extend(lines)

    # -- fragments --------------------------------------------------------------------

    def packet(self) -> None:
        n = self.rng.randrange(1, 64)
        size = self.size()
        off = self.off(n - size + 1)
        skip = self.label()
        check = self.rng.choice(("jgt %r4, %r3", "jge %r4, %r3", "jgt %r4, %r2"))
        self.emit("ldxw %r2, [%r1+0]", "ldxw %r3, [%r1+4]", "mov %r4, %r2", f"add %r4, {n}",
                  f"{check}, {skip}")
        if self.rng.random() < 0.5:
            self.emit(f"ldx{SIZES[size]} %r6, [%r2{off:+d}]")
        else:
            self.emit(f"st{SIZES[size]} [%r2{off:+d}], {self.rng.randrange(256)}")
        self.emit(f"{skip}:")

    def var_index(self) -> None:
        n = self.rng.randrange(2, 64)
        mask = self.rng.choice((7, 15, 31, 63, 255))
        skip = self.label()
        self.emit("ldxw %r2, [%r1+0]", "ldxw %r3, [%r1+4]", "mov %r4, %r2", "add %r4, 1",
                  f"jgt %r4, %r3, {skip}", "ldxb %r5, [%r2+0]")
        if self.rng.random() < 0.85:
            self.emit(f"and %r5, {mask}")
        self.emit("add %r2, %r5", "mov %r4, %r2", f"add %r4, {n}", f"jgt %r4, %r3, {skip}",
                  f"ldxb %r6, [%r2{self.off(n):+d}]", f"{skip}:")

    def lookup(self) -> None:
        m = self.rng.randrange(len(MAPS))
        vs = MAPS[m].value_size
        size = self.size()
        skip = self.label()
        self.emit(f"stw [%r10-4], {self.rng.randrange(10)}", "mov %r2, %r10", "add %r2, -4",
                  f"lddw %r1, map_fd({m})", "call 1")
        if self.rng.random() < 0.85:
            self.emit(f"jeq %r0, 0, {skip}")
        off = self.off(vs - size + 1)
        if self.rng.random() < 0.3:
            self.emit("mov %r5, %r6", f"and %r5, {self.rng.choice((7, 15, 31))}",
                      "add %r0, %r5")
        if self.rng.random() < 0.5:
            self.emit(f"ldx{SIZES[size]} %r7, [%r0{off:+d}]")
        else:
            self.emit(f"stx{SIZES[size]} [%r0{off:+d}], %r6")
        self.emit(f"{skip}:")

    def stack(self) -> None:
        size = self.size()
        slot = self.rng.randrange(1, 64) * 8
        off = -slot + (self.rng.randrange(8 // size) * size if self.rng.random() < 0.9 else
                       self.rng.randrange(8))
        if self.rng.random() < 0.5:
            self.emit(f"stx{SIZES[size]} [%r10{off:+d}], %r6")
        else:
            self.emit(f"ldx{SIZES[size]} %r6, [%r10{off:+d}]")

    def alu(self) -> None:
        op = self.rng.choice(("add", "sub", "mul", "and", "or", "xor", "lsh", "rsh", "arsh",
                              "div", "mod"))
        bits = self.rng.choice(("", "32"))
        imm = self.rng.randrange(1, 63) if op in ("lsh", "rsh", "arsh") else \
            self.rng.randrange(-100, 1000) or 1
        self.emit(f"{op}{bits} %r6, {imm}")

    def helper(self) -> None:
        kind = self.rng.random()
        if kind < 0.4:
            self.emit(f"call {self.rng.choice((5, 7, 8))}", "mov %r6, %r0")
            return
        # csum_diff over the stack with a drawn size
        size = self.rng.choice((4, 8, 16, 20, 24, 600)) if kind < 0.8 else 0
        self.emit("stdw [%r10-32], 0", "stdw [%r10-24], 0", "stdw [%r10-16], 0",
                  "stdw [%r10-8], 0", "mov %r1, %r10", "add %r1, -32", f"mov %r2, {size}",
                  "mov %r3, 0", "mov %r4, 0", "mov %r5, 0", "call 28", "mov %r6, %r0")

    def branch(self) -> None:
        skip = self.label()
        op = self.rng.choice(("jeq", "jne", "jgt", "jlt", "jsgt", "jset"))
        self.emit(f"{op} %r6, {self.rng.randrange(-5, 300)}, {skip}")
        self.fragment()
        self.emit(f"{skip}:")

    def bounded_index(self) -> None:
        """An index bounded by comparisons (not a mask), maybe spilled, maybe narrowed,
        then used on a map value: off-by-one bounds and signed/32-bit mixups included."""
        rng = self.rng
        vs = MAPS[1].value_size
        skip = self.label()
        source = rng.choice(("ldxw %r5, [%r1+16]", "call 7\nmov %r5, %r0",
                             "ldxw %r5, [%r1+12]"))
        self.emit("mov %r8, %r1", *source.split("\n"))
        for _ in range(rng.randrange(3)):
            op = rng.choice(("and", "rsh", "lsh", "add", "sub", "or", "arsh"))
            bits = rng.choice(("", "32"))
            imm = rng.randrange(1, 12) if op in ("rsh", "lsh", "arsh") else rng.randrange(1, 70)
            self.emit(f"{op}{bits} %r5, {imm}")
        bound = rng.randrange(vs - 4, vs + 3)
        cmp = rng.choice(("jgt", "jge", "jsgt", "jsge", "jgt32", "jge32", "jsgt32"))
        self.emit(f"{cmp} %r5, {bound}, {skip}")
        if rng.random() < 0.5:
            self.emit(f"jslt %r5, {rng.choice((0, -1, 1))}, {skip}")
        if rng.random() < 0.4:
            self.emit("stxdw [%r10-16], %r5", "ldxdw %r5, [%r10-16]")
        self.emit("stw [%r10-4], 0", "mov %r2, %r10", "add %r2, -4", "lddw %r1, map_fd(1)",
                  "call 1", f"jeq %r0, 0, {skip}", "add %r0, %r5",
                  f"ldx{SIZES[rng.choice((1, 2, 4))]} %r6, [%r0+{rng.randrange(4)}]",
                  f"{skip}:", "mov %r1, %r8")

    def spill_pointer(self) -> None:
        """A packet or map pointer through the stack, maybe clobbered on the way."""
        rng = self.rng
        skip = self.label()
        self.emit("ldxw %r2, [%r1+0]", "ldxw %r3, [%r1+4]", "mov %r4, %r2", "add %r4, 8",
                  f"jgt %r4, %r3, {skip}", "stxdw [%r10-24], %r2")
        if rng.random() < 0.3:
            self.emit(f"st{rng.choice(('b', 'h', 'w'))} [%r10-24], 0")
        if rng.random() < 0.3:
            self.emit("mov %r2, %r9", "call 7")
        self.emit("ldxdw %r2, [%r10-24]", f"ldx{SIZES[rng.choice((1, 2, 4, 8))]} %r6, "
                  f"[%r2+{rng.randrange(6)}]", f"{skip}:")

    def fragment(self) -> None:
        self.rng.choice((self.packet, self.packet, self.var_index, self.lookup, self.lookup,
                         self.stack, self.alu, self.alu, self.helper, self.branch,
                         self.bounded_index, self.bounded_index, self.spill_pointer))()

    def program(self) -> str:
        self.emit("mov %r9, %r1", "mov %r6, 0")
        for _ in range(self.rng.randrange(1, 6)):
            self.emit("mov %r1, %r9")
            self.fragment()
        self.emit(f"mov %r0, {self.rng.randrange(5)}", "exit")
        return "\n".join(self.lines) + "\n"


def generate(seed: int) -> str:
    return Gen(random.Random(seed)).program()
