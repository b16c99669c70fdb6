"""Descriptor chains as the device sees them, shared by the split and packed engines.

A device pops a *chain*: the buffer the driver made available, already validated and
translated.  Its readable segments come first, then its writable ones (virtio 1.3
§2.7.4.2, §2.8.17); each segment carries its guest-physical address, its length and a
`memoryview` of guest memory, read-only for readable segments.  The device reads the request from `readable`,
writes the reply into `writable` (`Chain.write` scatters bytes across the segments) and
pushes the chain back with the number of bytes it wrote.

`ChainBuilder` is the part of the hostile-input checks that does not depend on the ring
layout: readable-after-writable, the 2**32 total-length limit, and address translation.
The engines walk their rings and feed it one descriptor at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import LocalProtocolError, MemoryAccessError, RingError
from .memory import GuestMemory

#: A chain's total length may not exceed 2**32 bytes (virtio 1.3 §2.7.5.2).
MAX_CHAIN_BYTES = 1 << 32


@dataclass(frozen=True, slots=True)
class Segment:
    """One descriptor's buffer: guest-physical `gpa`, `length` bytes, and its `view`."""

    gpa: int
    length: int
    view: memoryview


@dataclass(frozen=True, slots=True)
class Chain:
    """A buffer popped from a virtqueue.

    `head` is what the device hands back when it marks the buffer used: the head
    descriptor index on a split ring, the buffer id on a packed ring.  `descriptors` is the
    number of ring descriptors the chain occupied (an indirect table counts as one).
    """

    head: int
    readable: tuple[Segment, ...]
    writable: tuple[Segment, ...]
    descriptors: int

    @property
    def readable_len(self) -> int:
        """Total bytes the device may read."""
        return sum(s.length for s in self.readable)

    @property
    def writable_len(self) -> int:
        """Total bytes the device may write."""
        return sum(s.length for s in self.writable)

    def read(self) -> bytes:
        """The device-readable part, gathered into one bytes object."""
        return b"".join(bytes(s.view) for s in self.readable)

    def write(self, data: bytes | bytearray | memoryview, offset: int = 0) -> int:
        """Scatter `data` into the writable segments starting `offset` bytes in.

        Returns the number of bytes written.  Writing past the writable part is our own
        mistake (virtio 1.3 §2.7.5.1: the device writes only device-writable buffers), so it
        raises LocalProtocolError before touching memory.
        """
        src = memoryview(data).cast("B")
        if offset < 0 or offset + src.nbytes > self.writable_len:
            raise LocalProtocolError(
                f"chain {self.head}: writing {src.nbytes} bytes at offset {offset} overruns "
                f"its {self.writable_len} writable bytes")
        done = 0
        for seg in self.writable:
            if offset >= seg.length:
                offset -= seg.length
                continue
            n = min(seg.length - offset, src.nbytes - done)
            seg.view[offset:offset + n] = src[done:done + n]
            done += n
            offset = 0
            if done == src.nbytes:
                break
        return done


class ChainBuilder:
    """Collects validated segments for one chain.

    `order_clause` and `addr_clause` name the section a ring layout enforces for
    "writable after readable" and for buffer addresses (split §2.7.4.2 / §2.7.5, packed
    §2.8.17 / §2.8.4); the 2**32 limit is §2.7.5.2 for both (the packed section has no
    separate number for it).
    """

    __slots__ = ("_addr_clause", "_mem", "_order_clause", "_parts", "_seen_writable",
                 "_total", "label")

    def __init__(self, mem: GuestMemory, label: str, *, order_clause: str,
                 addr_clause: str) -> None:
        self._mem = mem
        self.label = label
        self._order_clause = order_clause
        self._addr_clause = addr_clause
        self._parts: list[tuple[str, int, int, bool]] = []
        self._seen_writable = False
        self._total = 0

    def add(self, where: str, addr: int, length: int, writable: bool) -> None:
        """Add one descriptor's buffer; `where` names it in errors ("descriptor 5")."""
        if writable:
            self._seen_writable = True
        elif self._seen_writable:
            raise RingError(f"{self.label}: {where} is device-readable after a "
                            f"device-writable descriptor", self._order_clause)
        self._total += length
        if self._total > MAX_CHAIN_BYTES:
            raise RingError(f"{self.label}: {where} takes the chain past 2**32 bytes",
                            "2.7.5.2")
        self._parts.append((where, addr, length, writable))

    def build(self, head: int, descriptors: int) -> Chain:
        """The finished chain `head`, which occupied `descriptors` ring descriptors.

        Addresses are translated only now, once the shape of the whole chain passed, so a
        structural error is reported as such even when addresses are bad too.
        """
        readable: list[Segment] = []
        writable: list[Segment] = []
        for where, addr, length, is_writable in self._parts:
            try:
                view = self._mem.translate(addr, length)
            except MemoryAccessError as err:
                raise MemoryAccessError(f"{self.label}: {where}: {err}",
                                        self._addr_clause) from None
            if is_writable:
                writable.append(Segment(addr, length, view))
            else:
                # virtio 1.3 §2.7.5.1 / §2.8.15: "A device MUST NOT write to a
                # device-readable buffer"; a read-only view makes that structural.
                readable.append(Segment(addr, length, view.toreadonly()))
        return Chain(head, tuple(readable), tuple(writable), descriptors)


__all__ = ["MAX_CHAIN_BYTES", "Chain", "ChainBuilder", "Segment"]
