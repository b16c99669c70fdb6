"""What every virtqueue engine shares, whatever its layout (split §2.7, packed §2.8).

* Areas: each ring part is checked for alignment (the driver MUST align it, §2.7.1 /
  §2.8.11) and translated into guest memory once, when the queue is set up.
* Broken until reset: a hostile or buggy peer's bad chain raises RingError naming its
  clause and marks the queue `broken`; every later call raises until the device is reset
  (QEMU's policy: virtio_error() sets DEVICE_NEEDS_RESET, §2.1.2).  Chains popped before
  the error can still be pushed, so nothing already acknowledged is lost.  Each queue is
  independent: one broken queue never stops the others.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence

from .chain import MAX_CHAIN_BYTES, Chain
from .errors import LocalProtocolError, MemoryAccessError, RingError
from .memory import GuestMemory
from .structs import VIRTQ_DESC_F_WRITE


class QueueBase:
    """A queue's name and its broken-until-reset state."""

    name: str
    broken: RingError | None

    def _map_areas(self, mem: GuestMemory, areas: Sequence[tuple[str, int, int, int]], *,
                   align_clause: str, area_clause: str) -> list[memoryview]:
        """Check and translate (what, gpa, align, size) areas, in order."""
        for what, gpa, align, _ in areas:
            if gpa % align:
                raise RingError(f"{self.name}: {what} at {gpa:#x} is not {align}-aligned",
                                align_clause)
        try:
            return [mem.translate(gpa, size) for _, gpa, _, size in areas]
        except MemoryAccessError as err:
            raise MemoryAccessError(f"{self.name}: ring area: {err}", area_clause) from None

    def _break(self, err: RingError) -> RingError:
        self.broken = err
        return err

    def _check_not_broken(self) -> None:
        if self.broken is not None:
            raise RingError(f"{self.name} is broken until reset: {self.broken}",
                            self.broken.clause)


class DeviceQueueBase(QueueBase):
    """The device side's batch operations, over each layout's `pop` and `push_many`."""

    @abstractmethod
    def pop(self) -> Chain | None: ...

    @abstractmethod
    def push_many(self, items: Iterable[tuple[Chain | int, int]]) -> None: ...

    def pop_many(self, limit: int) -> list[Chain]:
        """Up to `limit` chains.  A bad chain after good ones returns the good ones and
        leaves the queue broken (the next call raises); a bad first chain raises."""
        chains: list[Chain] = []
        while len(chains) < limit:
            try:
                chain = self.pop()
            except RingError:
                if chains:
                    return chains
                raise
            if chain is None:
                break
            chains.append(chain)
        return chains

    def push(self, chain: Chain | int, written: int) -> None:
        """Mark one chain used with `written` bytes written into its writable part."""
        self.push_many([(chain, written)])


def chain_elements(name: str, readable: Sequence[tuple[int, int]],
                   writable: Sequence[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """The driver's (gpa, len, flags) elements of a new chain, readable first (§2.7.4.2,
    §2.8.17), checked as both layouts require of a driver."""
    write = int(VIRTQ_DESC_F_WRITE)
    elems = [(a, n, 0) for a, n in readable] + [(a, n, write) for a, n in writable]
    if not elems:
        raise LocalProtocolError(f"{name}: a chain needs at least one buffer")
    # virtio 1.3 §2.7.5.2: "Drivers MUST NOT add a descriptor chain longer than 2^32
    # bytes in total"; each len is an le32.
    if any(not 0 <= n < 1 << 32 for _, n, _ in elems) or \
            sum(n for _, n, _ in elems) > MAX_CHAIN_BYTES:
        raise LocalProtocolError(f"{name}: buffer lengths break \u00a72.7.5.2")
    return elems


__all__ = ["DeviceQueueBase", "QueueBase", "chain_elements"]
