"""Errors of the virtio_spec library.

virtio_spec stands alone (it imports nothing else of vxdp), so it has its own root,
`VirtioError`.  As in h11, protocol errors split by who broke the rule:

* `LocalProtocolError`: *we* misused the API (e.g. asked a state machine for a transition
  its table does not have).
* `RemoteProtocolError`: the *peer* broke the spec (a hostile or buggy driver or device).
  Every such error names the clause it enforces in `clause` (e.g. "2.7.5.3.1") and, where
  there is one, the queue and index.

Peer data enters through one place per engine, which converts low-level failures
(struct errors, out-of-range indices) into RemoteProtocolError so that an IndexError never
escapes to the caller.
"""

from __future__ import annotations


class VirtioError(Exception):
    """Root of every error virtio_spec raises on purpose."""


class LocalProtocolError(VirtioError):
    """We used the API in a way the spec or the state machine does not allow."""


class RemoteProtocolError(VirtioError):
    """The peer broke a rule of the spec; `clause` names the section (virtio 1.3)."""

    def __init__(self, message: str, clause: str = "") -> None:
        super().__init__(f"{message} (virtio 1.3 \u00a7{clause})" if clause else message)
        self.clause = clause


class FeatureError(RemoteProtocolError):
    """A feature set that breaks §2.2 / §5.1.3.1 (unoffered bit, missing dependency)."""


class RingError(RemoteProtocolError):
    """A virtqueue the peer filled in against §2.7 or §2.8; the queue keeps serving."""


class MemoryAccessError(RingError):
    """A guest-physical address range outside every memory region."""
