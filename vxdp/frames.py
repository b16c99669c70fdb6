"""Frames packed back to back: a burst as one buffer and a length array.

A wire source that hands the host a list of `bytes` makes every burst cost Python work per
frame (joining them, measuring each) before the C core sees it.  `PackedFrames` is the
burst already in the layout the core takes (`native.Burst.load` copies the buffer and the
lengths in two moves), while still being a `Sequence[bytes]` for the code that looks at
frames one by one (the MAC switch with several guests, the Python datapath, pcap capture):

    batch = PackedFrames.pack(frames)        # one join, one length array
    batch[0], len(batch), batch.nbytes       # a frame, the count, the total size
    batch[32:64]                             # a view: no copy of the frames

Immutable: a view shares its parent's buffer.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate
from typing import overload


class PackedFrames(Sequence[bytes]):
    """`count` frames in `buffer` from byte 0, `lengths[i]` bytes each."""

    __slots__ = ("_ends", "buffer", "lengths", "nbytes")

    def __init__(self, buffer: bytes | memoryview, lengths: array[int],
                 nbytes: int | None = None) -> None:
        if lengths.typecode != "I":
            raise TypeError("lengths are an array('I')")
        total = sum(lengths) if nbytes is None else nbytes
        if total > len(buffer):
            raise ValueError(f"{len(lengths)} frames of {total} bytes in a buffer of "
                             f"{len(buffer)}")
        self.buffer = memoryview(buffer)[:total]
        self.lengths = lengths
        self.nbytes = total
        self._ends: list[int] | None = None

    @property
    def ends(self) -> list[int]:
        """Where each frame ends in `buffer` (worked out once, when first needed)."""
        if self._ends is None:
            self._ends = list(accumulate(self.lengths))
        return self._ends

    @classmethod
    def pack(cls, frames: Iterable[bytes]) -> PackedFrames:
        if isinstance(frames, PackedFrames):
            return frames
        frames = list(frames)
        blob = b"".join(frames)
        return cls(blob, array("I", map(len, frames)), len(blob))

    def __len__(self) -> int:
        return len(self.lengths)

    def _start(self, i: int) -> int:
        return self.ends[i - 1] if i else 0

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> PackedFrames: ...

    def __getitem__(self, index: int | slice) -> bytes | PackedFrames:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return PackedFrames.pack(self[i] for i in range(start, stop, step))
            stop = max(start, stop)
            a = self._start(start) if start < len(self) else self.nbytes
            b = self._start(stop) if stop < len(self) else self.nbytes
            return PackedFrames(self.buffer[a:b], self.lengths[start:stop], b - a)
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("frame index out of range")
        return bytes(self.buffer[self._start(index):self.ends[index]])

    def __iter__(self) -> Iterator[bytes]:
        blob = bytes(self.buffer)
        start = 0
        for end in self.ends:
            yield blob[start:end]
            start = end

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedFrames):
            return self.lengths == other.lengths and self.buffer == other.buffer
        if isinstance(other, Sequence) and not isinstance(other, (bytes, str)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PackedFrames({len(self)} frames, {self.nbytes} bytes)"


def total_bytes(frames: Sequence[bytes]) -> int:
    """The bytes of a burst, packed or not."""
    return frames.nbytes if isinstance(frames, PackedFrames) else sum(map(len, frames))


__all__ = ["PackedFrames", "total_bytes"]
