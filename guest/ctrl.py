"""Control commands as the driver tracks them (virtio 1.3 §5.1.6.5).

A `CtrlCommand` is created when the driver places a control chain (class, command and
data readable; the 1-byte ack and any result room writable) and completed from the used
element the device returns: the ack byte, then the result bytes written after it.  A
device that writes no ack, more than the chain holds, or an ack other than
VIRTIO_NET_OK / VIRTIO_NET_ERR leaves the command failed with `error` set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from virtio_spec.ctrl import VIRTIO_NET_ERR, VIRTIO_NET_OK
from virtio_spec.errors import LocalProtocolError

from .queues import Reaped


class CommandRefused(LocalProtocolError, ValueError):
    """The driver declines to send a control command the spec forbids it to send."""


@dataclass
class CtrlCommand:
    """A control command in flight; `done` once its used chain came back."""

    cls: int
    command: int
    name: str
    head: int
    body: Any = None
    done: bool = False
    ack: int | None = None
    result: bytes = b""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.done and self.ack == VIRTIO_NET_OK

    def complete(self, used: Reaped) -> str:
        """Take the device's answer; returns a problem description ("" if none)."""
        self.done = True
        if used.len < 1 or used.overrun:
            # §5.1.6.5: the device writes the ack; len counts the bytes it wrote.
            self.error = (f"device reported {used.len} bytes written for a "
                          f"{used.capacity}-byte ack and result")
            return self.error
        self.ack = used.data[0]
        self.result = used.data[1:]
        if self.ack not in (VIRTIO_NET_OK, VIRTIO_NET_ERR):
            self.error = f"ack {self.ack} is neither VIRTIO_NET_OK nor VIRTIO_NET_ERR"
            return self.error
        return ""


__all__ = ["CommandRefused", "CtrlCommand"]
