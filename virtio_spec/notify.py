"""Notification suppression: when a driver kicks and when a device interrupts.

Both ring engines decide through this module, so the rule lives in one place.

Split rings (virtio 1.3 §2.7.7, §2.7.10).  Without VIRTIO_F_EVENT_IDX a flag says "don't":
`VIRTQ_USED_F_NO_NOTIFY` in `used.flags` suppresses kicks, `VIRTQ_AVAIL_F_NO_INTERRUPT` in
`avail.flags` suppresses interrupts.  With EVENT_IDX the flags are ignored and each side
publishes an index instead (`avail_event` at the end of the used ring, `used_event` at the
end of the available ring): "notify when the idx you just moved passes the event index".
The normative text (§2.7.7.2, §2.7.10.1) says "when idx equals the event index"; since a
side publishes several buffers at once, the exact test is the one of `virtq_need_event()`
in the spec's Appendix A header (virtio_queue.h), implemented by `need_event`.

Packed rings (virtio 1.3 §2.8.10, §2.8.14).  Each side reads the other's
`pvirtq_event_suppress`: ENABLE (always notify), DISABLE (never), or DESC (only with
EVENT_IDX: notify when the descriptor at (offset, wrap counter) is made available/used).
`packed_need_event` maps DESC onto `need_event` the way Linux and QEMU do.
"""

from __future__ import annotations

from .structs import RING_EVENT_FLAGS_DESC, RING_EVENT_FLAGS_DISABLE

_WRAP_BIT = 1 << 15


def need_event(event_idx: int, new_idx: int, old_idx: int) -> bool:
    """True when moving an index from `old_idx` to `new_idx` crosses `event_idx`.

    That is, when `event_idx` is one of old_idx, old_idx + 1, ..., new_idx - 1 (mod 2**16):
    ``(new - event - 1) & 0xffff < (new - old) & 0xffff`` (virtio 1.3 Appendix A,
    `virtq_need_event`).  All three are free-running 16-bit ring indices.
    """
    return ((new_idx - event_idx - 1) & 0xFFFF) < ((new_idx - old_idx) & 0xFFFF)


def split_should_notify(
    *, event_idx: bool, flags: int, suppress_flag: int, event: int, new_idx: int,
    old_idx: int,
) -> bool:
    """The split-ring decision, for either direction.

    For a driver kick (§2.7.10.1): `flags` = used.flags, `suppress_flag` = NO_NOTIFY,
    `event` = avail_event, indices = avail idx.  For a device interrupt (§2.7.7.2):
    `flags` = avail.flags, `suppress_flag` = NO_INTERRUPT, `event` = used_event, indices =
    used idx.  Nothing published since the last decision (`new_idx == old_idx`) never
    notifies.
    """
    if new_idx == old_idx:
        return False
    if event_idx:
        # virtio 1.3 §2.7.7.2 / §2.7.10.1: with EVENT_IDX the flag is ignored, the event
        # index decides.
        return need_event(event, new_idx, old_idx)
    return not flags & suppress_flag


def packed_need_event(
    off_wrap: int, new_off: int, new_wrap: int, advanced: int, queue_size: int,
) -> bool:
    """True when the last `advanced` ring slots, ending before (`new_off`, `new_wrap`),
    include the slot named by `off_wrap` (desc_event_off | desc_event_wrap << 15).

    An event whose wrap counter differs from ours lies in the previous lap, so its offset
    is taken as `off - queue_size` (as Linux `virtqueue_kick_prepare_packed` and QEMU
    `vring_packed_need_event` do); then it is `need_event` on offsets.
    """
    off = off_wrap & (_WRAP_BIT - 1)
    if bool(off_wrap & _WRAP_BIT) != bool(new_wrap):
        off -= queue_size
    return need_event(off & 0xFFFF, new_off, (new_off - advanced) & 0xFFFF)


def packed_should_notify(
    *, event_idx: bool, desc_event_flags: int, off_wrap: int, new_off: int, new_wrap: int,
    advanced: int, queue_size: int,
) -> bool:
    """The packed-ring decision from the other side's `pvirtq_event_suppress`.

    DISABLE never notifies; DESC (only meaningful with EVENT_IDX, §2.8.10) notifies when
    the named descriptor was among the `advanced` slots; ENABLE notifies.  DESC without
    EVENT_IDX and the reserved value 3 are read as ENABLE: a spurious notification is
    harmless, a missed one hangs the queue.
    """
    if advanced == 0 or desc_event_flags == RING_EVENT_FLAGS_DISABLE:
        return False
    if desc_event_flags == RING_EVENT_FLAGS_DESC and event_idx:
        if advanced >= queue_size:
            return True  # a whole lap passed every offset
        return packed_need_event(off_wrap, new_off, new_wrap, advanced, queue_size)
    return True


__all__ = ["need_event", "packed_need_event", "packed_should_notify", "split_should_notify"]
