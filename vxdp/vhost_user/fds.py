"""A front-end's kick, call and err fds, used so that they can never make the host wait.

The vhost-user spec makes them eventfds.  What makes one dangerous is that a write to a
full eventfd (or pipe) and a read of an empty one wait when the file is in blocking mode,
and that mode (O_NONBLOCK) is a flag of the open file description the front-end shares
with us: one blocked write would stop every guest of the host.  The rules:

* Taking an fd (`adopt`): an eventfd gets O_NONBLOCK on its description (QEMU and DPDK
  make theirs non-blocking anyway); a pipe or FIFO end is reopened through /proc as a
  description of our own, non-blocking, in place under the same fd number, so the
  front-end cannot take the mode back.  A call or err fd of any other kind (a regular
  file, a socket, a device) is refused: `adopt` says why, and the session nacks it.
* Using one (`signal`, `drain`): one write of 1 or one read of what is there, through the
  core (`native.fd_signal`/`fd_drain`).  EAGAIN is nothing to do: a full counter already
  holds an unread notification, so the new one is coalesced into it (counted by the
  caller), never waited on.  A front-end that clears O_NONBLOCK on an eventfd again gets
  its blocked call interrupted by the core's watchdog after about 20 ms, as ETIMEDOUT:
  the caller ends that session.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from vxdp.errors import VhostUserRemoteError

EVENTFD_LINK = "anon_inode:[eventfd]"


def describe(fd: int) -> str:
    """What kind of file `fd` is, as a message names it: "an eventfd", "a pipe",
    "a regular file", "a socket", "a character device"..."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        return f"unusable ({exc.strerror})"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    try:
        if os.readlink(f"/proc/self/fd/{fd}") == EVENTFD_LINK:
            return "an eventfd"
    except OSError:
        pass
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "an anonymous file"


def adopt(fd: int, *, writing: bool) -> str:
    """Make a front-end's fd non-blocking for good (see the module docstring); "" when
    done, else what is wrong with it.  `writing`: a call or err fd (we write it), which
    must be an eventfd or the write end of a pipe; a kick fd of another kind is left as
    it is (the watcher reports it when it cannot be polled)."""
    kind = describe(fd)
    try:
        if kind == "a pipe":
            access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
            if access == (os.O_RDONLY if writing else os.O_WRONLY):
                return f"the {'read' if writing else 'write'} end of a pipe"
            mode = os.O_WRONLY if writing else os.O_RDONLY
            own = os.open(f"/proc/self/fd/{fd}", mode | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                os.dup2(own, fd)
            finally:
                os.close(own)
            return ""
        if kind == "an eventfd" or not writing:
            os.set_blocking(fd, False)
            return ""
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return "a pipe nobody reads"
        return f"{kind}, which cannot be made non-blocking: {exc.strerror}"
    return f"{kind}, not an eventfd (nor a pipe)"


def signal(fd: int) -> bool:
    """Write 1 to a call or err fd; False when it was full (coalesced).  OSError when it
    refuses (ETIMEDOUT: it blocked until the watchdog interrupted it)."""
    try:
        from vxdp import native
    except ImportError:  # no core: O_NONBLOCK from `adopt` is all there is
        try:
            os.write(fd, (1).to_bytes(8, "little"))
        except BlockingIOError:
            return False
        return True
    return native.fd_signal(fd)


def drain(fd: int) -> bool:
    """Read what a kick fd holds; False when it held nothing (another reader was first).
    OSError as for `signal` (EPIPE: a pipe whose writer is gone)."""
    try:
        from vxdp import native
    except ImportError:
        try:
            return bool(os.read(fd, 512))
        except BlockingIOError:
            return False
    return native.fd_drain(fd)


def fatal(exc: OSError, what: str) -> VhostUserRemoteError:
    """The session-ending error for a front-end fd that failed (`what`: "vring 0 call fd")."""
    return VhostUserRemoteError(f"{what}: {exc.strerror or exc}")


__all__ = ["adopt", "describe", "drain", "fatal", "signal"]
