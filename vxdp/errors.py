"""The exception tree: one root, one family per layer.

Protocol errors split into *local* (we misused the API) and *remote* (the peer broke the
spec); the one entry point for peer data converts the latter.  Messages are lowercase and
name the rule, and the index or pc where there is one.
"""

from __future__ import annotations

import errno as _errno


def errno_name(code: int) -> str:
    """An errno's symbolic name (`ENOENT`), or its number when it has none.  95 is
    EOPNOTSUPP, as the kernel's messages and bpftool spell it (glibc's errorcode says
    ENOTSUP for the same number)."""
    if code == _errno.EOPNOTSUPP:
        return "EOPNOTSUPP"
    return _errno.errorcode.get(code, str(code))


class VxdpError(Exception):
    """Root of every error vxdp raises on purpose."""


class CoreError(VxdpError, RuntimeError):
    """The C packet core refused an operation or is not the build this code expects."""


class BpfError(VxdpError):
    """Family of errors of the BPF machine (ISA, ELF, maps, engines, kernel oracle)."""


class InvalidProgram(BpfError, ValueError):
    """A program that cannot be decoded, loaded or run: names the pc or section."""


class ElfError(BpfError, ValueError):
    """An object file the loader cannot use: names the section, symbol or relocation."""


class MapError(BpfError):
    """A map operation failed; `errno` carries the kernel's errno for the same failure."""

    def __init__(self, message: str, errno: int) -> None:
        super().__init__(message)
        self.errno = errno


class KernelUnavailable(BpfError, OSError):
    """The real bpf() syscall is not permitted here (the message says why)."""


class UsageError(VxdpError, ValueError):
    """Command-line or scenario input that cannot be used (exit status 2)."""


class ProgramFault(BpfError, RuntimeError):
    """A run the C core stopped: a bad memory access, helper misuse or an endless loop.

    The message names the pc (and the packet of a batch); `errno` is the core's code."""

    def __init__(self, message: str, errno: int) -> None:
        super().__init__(message)
        self.errno = errno


class ControlError(VxdpError):
    """Family of errors of the host's control socket (`vxdp.control`)."""


class ControlLocalError(ControlError, ValueError):
    """We tried to send something the control protocol cannot carry (a frame over the
    limit, a value msgpack cannot encode)."""


class ControlRemoteError(ControlError):
    """The peer broke the control protocol: bytes that are no frame, a frame over the
    limit, a message of the wrong shape.  `errno` names the failure as the reply does."""

    def __init__(self, message: str, errno: int) -> None:
        super().__init__(message)
        self.errno = errno


class VhostUserError(VxdpError):
    """Family of errors of the vhost-user transport (`vxdp.vhost_user`)."""


class VhostUserLocalError(VhostUserError):
    """We used the vhost-user API in a way its state machine does not allow."""


class VhostUserRemoteError(VhostUserError):
    """The peer broke the vhost-user protocol; the message names the request and the rule.

    `reply` holds bytes owed to the peer before the connection closes (a REPLY_ACK nack),
    or b"" when nothing is owed."""

    def __init__(self, message: str, reply: bytes = b"") -> None:
        super().__init__(message)
        self.reply = reply


class GuestPortError(VxdpError):
    """An operator's action on one guest of a host that cannot be done now (`GuestPort`
    `set_link`/`announce`): `errno` says why, ENOTCONN for a guest without a live
    device, EOPNOTSUPP for a feature its driver did not negotiate."""

    def __init__(self, message: str, errno: int) -> None:
        super().__init__(message)
        self.errno = errno
