"""PackedFrames: a burst in the core's layout that still reads as a sequence of frames."""

from __future__ import annotations

from array import array

import pytest

from vxdp import native
from vxdp.frames import PackedFrames, total_bytes

FRAMES = [bytes([i]) * (60 + 3 * i) for i in range(12)]


def test_reads_as_the_frames_it_packs() -> None:
    p = PackedFrames.pack(FRAMES)
    assert len(p) == 12 and p.nbytes == sum(map(len, FRAMES)) == total_bytes(FRAMES)
    assert list(p) == FRAMES and p == FRAMES and p[0] == FRAMES[0] and p[-1] == FRAMES[-1]
    with pytest.raises(IndexError):
        p[12]


@pytest.mark.parametrize("sl", [slice(2, 5), slice(0, 0), slice(10, 40), slice(None, None, 3),
                                slice(7, 3), slice(-4, None)])
def test_slices_are_views_that_read_the_same(sl: slice) -> None:
    p = PackedFrames.pack(FRAMES)
    view = p[sl]
    assert view == FRAMES[sl] and total_bytes(view) == total_bytes(FRAMES[sl])
    assert view[1:] == FRAMES[sl][1:]  # a view of a view


def test_a_burst_loads_it_without_joining_again() -> None:
    burst = native.Burst(16)
    burst.load(PackedFrames.pack(FRAMES)[3:9])
    assert burst.packed() == FRAMES[3:9]
    burst.load(FRAMES[:2])  # plain lists still load
    assert list(burst.packed()) == FRAMES[:2]


def test_lengths_beyond_the_buffer_are_refused() -> None:
    with pytest.raises(ValueError, match="2 frames of 130 bytes in a buffer of 100"):
        PackedFrames(bytes(100), array("I", [60, 70]))
    with pytest.raises(TypeError):
        PackedFrames(bytes(100), array("H", [60]))
