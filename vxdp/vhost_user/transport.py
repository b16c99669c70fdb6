"""The vhost-user edge (trio): sockets with SCM_RIGHTS, eventfds, the server and client.

This is the only module of the transport that awaits.  It moves bytes and fds between a
Unix stream socket and the sans-I/O cores (`Backend`, `Frontend`), maps memory tables,
watches kick eventfds and dispatches events to the device through a handler table, as
trio-websocket dispatches its events:

    handlers = {MemTableSet: on_mem, VringKickSet: on_kick, Kicked: on_kicked, ...}
    await serve_backend(path, config, handlers)

A handler is `async def handler(session, event) -> answer`.  Events whose class has
`answer == "device"` (GET_VRING_BASE, GET_CONFIG, GET_STATUS) need a handler that returns
the answer; every other event may go unhandled.  A handler that raises a `VirtioError`
(the device refused the value) gets the front-end a REPLY_ACK nack when it asked for one,
and the session goes on.  A handler is looked up by the event's class, then its bases,
so `{BackendEvent: trace}` sees everything.

Config changes (the back-end request channel, protocol feature BACKEND_REQ): the
session wraps the socket SET_BACKEND_REQ_FD gave, and `session.signal_config_change()`
has one task send CONFIG_CHANGE_MSG on it and wait up to `BACKEND_ACK_TIMEOUT` for the
front-end's ack when REPLY_ACK is negotiated (changes signalled while one is in flight
are folded into the next message: the front-end re-reads the whole config space).  A
channel that fails (the front-end closed it, a malformed ack, no ack in time) is logged
and dropped; the session goes on and config changes are no longer signalled.  The
front-end's side is `serve_backend_requests()`, which `FrontendConnection.negotiate()`
sets up (a socketpair, as QEMU's vhost_setup_backend_channel does) when BACKEND_REQ is
negotiated.

The server serves one front-end at a time.  A malformed or out-of-order message, a peer
that vanishes mid-message or a socket error ends that session: it is logged (logger
`vxdp.vhost_user`), the device gets `Disconnected(reason)`, every fd the session held is
closed, its memory unmapped, and the server waits for the next front-end.

A hostile front-end cannot make the host wait (one task of the host waits for it at
most, and never longer than a bound) nor take it down:
* kick, call and err fds are taken non-blocking for good and used without waiting
  (`fds`): a call fd that would block has its notification coalesced into the unread one
  (`BackendSession.coalesced`); a call or err fd that is no eventfd (nor pipe) is nacked
  and the ring goes on without it; one that blocks all the same ends the session.
* every sendmsg and recvmsg is MSG_DONTWAIT, whatever the socket's O_NONBLOCK (a
  front-end that kept its copy of the back-end request channel can clear it); a reply
  the front-end leaves unread for REPLY_TIMEOUT, or a back-end request it does not take
  and ack within BACKEND_ACK_TIMEOUT, ends the session or the channel.
* memory regions are sealed against shrinking where possible and guarded against SIGBUS
  (`memory`): a region that loses its pages ends the session, naming the region.
"""

from __future__ import annotations

import array
import errno as E
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import trio

from virtio_spec.errors import VirtioError
from vxdp.errors import (
    MigrationError,
    VhostUserError,
    VhostUserLocalError,
    VhostUserRemoteError,
    errno_name,
)

from . import events as ev
from . import fds as guest_fds
from .backend import Backend, BackendConfig
from .frontend import (
    BackendRequests,
    Frontend,
    Outgoing,
    Reply,
    check_ack,
    device_state_errno,
)
from .memory import BackendMemory, FrontendMemory
from .messages import (
    VHOST_MEMORY_BASELINE_NREGIONS,
    VHOST_TRANSFER_STATE_DIRECTION_LOAD,
    VHOST_TRANSFER_STATE_DIRECTION_SAVE,
    VHOST_USER_F_PROTOCOL_FEATURES,
    BackendMessage,
    VhostUserProtocolFeature,
    close_fds,
)

log = logging.getLogger("vxdp.vhost_user")

Handler = Callable[["BackendSession", Any], Awaitable[object]]
Handlers = Mapping[type[ev.BackendEvent], Handler]
#: What the front-end does with a back-end request: True when handled (ack 0).
BackendRequestHandler = Callable[[BackendMessage], Awaitable[bool]]

#: Seconds the back-end waits for the front-end to take a back-end request and ack it.
BACKEND_ACK_TIMEOUT = 5.0
#: Seconds the back-end waits for the front-end to take a reply (it reads its socket).
REPLY_TIMEOUT = 5.0

_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)

_FD_SIZE = array.array("i").itemsize
_ANC_SPACE = socket.CMSG_SPACE(VHOST_MEMORY_BASELINE_NREGIONS * _FD_SIZE)


# -- sockets and fds -----------------------------------------------------------------------

async def send_message(sock: trio.socket.SocketType, data: bytes,
                       fds: Sequence[int] = ()) -> None:
    """Send one message; its fds ride on the first byte (SCM_RIGHTS).  Every sendmsg is
    MSG_DONTWAIT: a socket whose O_NONBLOCK a peer holding the same description took
    away (a back-end request channel the front-end kept its copy of) still never blocks
    the thread; trio waits for room instead."""
    view = memoryview(data)
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds \
        else []
    while view:
        sent = await sock.sendmsg([view], anc, socket.MSG_DONTWAIT)
        view, anc = view[sent:], []


async def receive_some(sock: trio.socket.SocketType, want: int) -> tuple[bytes, list[int]]:
    """One recvmsg of at most `want` bytes and the fds that came with them (CLOEXEC;
    MSG_DONTWAIT, as for `send_message`)."""
    data, ancdata, flags, _ = await sock.recvmsg(
        want, _ANC_SPACE, socket.MSG_CMSG_CLOEXEC | socket.MSG_DONTWAIT)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % _FD_SIZE
            fds.extend(array.array("i", payload[:usable]))
    if flags & socket.MSG_CTRUNC:
        close_fds(fds)
        raise VhostUserRemoteError(
            f"more than {VHOST_MEMORY_BASELINE_NREGIONS} fds in one message (ancillary data "
            f"truncated)")
    return data, fds


class _Idle(Protocol):
    @property
    def idle(self) -> bool: ...


class _Core(Protocol[_T_co]):
    """A sans-I/O core the edge reads for (`Backend`, `Frontend`, and the two sides of
    the back-end request channel)."""

    @property
    def reader(self) -> _Idle: ...
    def want(self) -> int: ...
    def receive_data(self, data: bytes, fds: Sequence[int] = ()) -> _T_co | None: ...


async def receive_message(sock: trio.socket.SocketType, core: _Core[_T], peer: str) -> _T | None:
    """Read `sock` into `core` until it completes a message, and return that; None when
    the peer closed the socket at a message boundary.  `peer` closing it mid-message
    ("front-end closed the socket") breaks the protocol."""
    while True:
        data, fds = await receive_some(sock, core.want())
        if not data:
            close_fds(fds)
            if core.reader.idle:
                return None
            raise VhostUserRemoteError(f"{peer} mid-message")
        message = core.receive_data(data, fds)
        if message is not None:
            return message


class EventFd:
    """An eventfd (kick or call) we own: `signal()` it, `await wait()` for it."""

    def __init__(self, fd: int | None = None) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) if fd is None else fd

    def signal(self) -> None:
        os.eventfd_write(self.fd, 1)

    async def wait(self) -> int:
        """Wait until signalled; returns (and clears) the count."""
        while True:
            await trio.lowlevel.wait_readable(self.fd)
            try:
                return os.eventfd_read(self.fd)
            except BlockingIOError:
                continue

    def close(self) -> None:
        if self.fd >= 0:
            trio.lowlevel.notify_closing(self.fd)
            os.close(self.fd)
            self.fd = -1


def _close_watched(fd: int) -> None:
    trio.lowlevel.notify_closing(fd)
    try:
        os.close(fd)
    except OSError:
        pass


# -- back-end ------------------------------------------------------------------------------

class BackendSession:
    """One front-end's session on the back-end side, as handlers see it."""

    def __init__(self, sock: trio.socket.SocketType, backend: Backend,
                 handlers: Handlers) -> None:
        self.sock = sock
        self.backend = backend
        self.handlers = handlers
        self.memory: BackendMemory | None = None
        self._stale: list[BackendMemory] = []
        self._watchers: dict[int, tuple[int, trio.CancelScope]] = {}
        self._nursery: trio.Nursery | None = None
        self._channel: tuple[trio.socket.SocketType, trio.CancelScope] | None = None
        self._config_changed = trio.Event()
        self._memory_watch: trio.CancelScope | None = None
        self._fault: str | None = None
        self.config_changes_sent = 0
        #: notifications folded into one the front-end had not read yet (a full counter)
        self.coalesced = 0

    # -- what a device does with the session -----------------------------------------

    def notify(self, index: int) -> bool:
        """Signal the used-buffer notification (call eventfd) of vring `index`; False
        when the front-end gave no call fd (it polls).  Never waits: a full counter
        already holds a notification, so this one is coalesced into it (`coalesced`);
        a call fd that fails or blocks ends the session (`end`)."""
        return self._signal(index, self.backend.vrings[index].call, "call")

    def signal_error(self, index: int) -> bool:
        """Signal vring `index`'s error eventfd; False without one (as `notify`)."""
        return self._signal(index, self.backend.vrings[index].err, "err")

    def _signal(self, index: int, fd: int | None, what: str) -> bool:
        if fd is None or self._fault is not None:
            return False
        try:
            if not guest_fds.signal(fd):
                self.coalesced += 1
        except OSError as exc:
            self.end(str(guest_fds.fatal(exc, f"vring {index} {what} fd {fd}")))
            return False
        return True

    def end(self, reason: str) -> None:
        """End this session from anywhere (a task of the session, a handler, another
        guest's burst): logged, the front-end is disconnected, `reason` is its reason."""
        if self._fault is None:
            self._fault = reason
            log.error("vhost-user front-end: %s; disconnecting", reason)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def signal_config_change(self) -> bool:
        """Tell the front-end its config space changed (CONFIG_CHANGE_MSG on the back-end
        request channel); False when there is no channel or CONFIG/BACKEND_REQ was not
        negotiated (the front-end learns of it when it next reads the config)."""
        if self._channel is None or not self.backend.can_signal_config:
            return False
        self._config_changed.set()
        return True

    # -- running ---------------------------------------------------------------------

    def _handler(self, event: ev.BackendEvent) -> Handler | None:
        for cls in type(event).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                return handler
        return None

    async def dispatch(self, event: ev.BackendEvent) -> object:
        handler = self._handler(event)
        if handler is None:
            if event.answer == "device":
                raise VhostUserLocalError(f"no handler answers {type(event).__name__}")
            return None
        return await handler(self, event)

    async def run(self) -> str:
        """Serve until the front-end leaves or breaks the protocol; returns the reason
        ("" for a clean close).  Never raises for the peer's faults."""
        reason = ""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    await self.dispatch(ev.Connected())
                    reason = await self._serve()
                except VhostUserRemoteError as exc:
                    reason = str(exc)
                    log.error("vhost-user front-end broke the protocol: %s; disconnecting", exc)
                    if exc.reply:
                        with trio.move_on_after(1):
                            try:
                                await send_message(self.sock, exc.reply)
                            except OSError:
                                pass
                except (OSError, VirtioError, VhostUserLocalError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                    log.error("vhost-user session failed: %s; disconnecting", reason)
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            reason = self._fault or reason
            await self._teardown(reason)
        return reason

    async def _serve(self) -> str:
        while True:
            event = await receive_message(self.sock, self.backend,
                                          "front-end closed the socket")
            if event is None:
                return ""
            await self._process(event)

    async def _process(self, event: ev.BackendEvent) -> None:
        ok = True
        answer: object = None
        old_memory = None
        try:
            if isinstance(event, ev.MemTableSet):
                old_memory, self.memory = self.memory, BackendMemory.map(event.table, event.fds)
                await self._watch_memory(self.memory)
            if isinstance(event, ev.BackendChannelSet):
                ok = await self._open_channel(event.fd)
            refused = self._adopt_fd(event)
            try:
                if refused:
                    ok = False
                else:
                    answer = await self.dispatch(event)
            except VirtioError as exc:
                if event.answer == "device":
                    raise
                ok = False
                log.warning("device refused %s: %s", event.describe(), exc)
            reply = self.backend.respond(event, answer, ok=ok)
        except BaseException:
            self._retire()
            raise
        if isinstance(event, ev.VringKickSet) and event.fd is not None:
            await self._watch(event.index, event.fd)
        self._retire()
        if old_memory is not None:
            self._drop_memory(old_memory)
        if reply:
            await self._reply(reply, event)

    async def _reply(self, reply: bytes, event: ev.BackendEvent) -> None:
        """Send a reply; a front-end that leaves it unread for REPLY_TIMEOUT seconds
        (its socket buffer full) breaks the protocol."""
        with trio.move_on_after(REPLY_TIMEOUT):
            await send_message(self.sock, reply)
            return
        raise VhostUserRemoteError(
            f"front-end did not read the reply to {event.describe()} within "
            f"{REPLY_TIMEOUT:g} s")

    def _adopt_fd(self, event: ev.BackendEvent) -> bool:
        """Take a kick, call or err fd non-blocking for good (`fds.adopt`); True when a
        call or err fd is refused (not an eventfd or a pipe): the ring goes on without
        it and the front-end gets a nack."""
        if not isinstance(event, (ev.VringKickSet, ev.VringCallSet, ev.VringErrSet)) \
                or event.fd is None:
            return False
        what = {ev.VringKickSet: "kick", ev.VringCallSet: "call", ev.VringErrSet: "err"}[
            type(event)]
        problem = guest_fds.adopt(event.fd, writing=what != "kick")
        if not problem:
            return False
        if isinstance(event, ev.VringKickSet):
            log.warning("vring %d: kick fd %d is %s", event.index, event.fd, problem)
            return False
        log.warning("vring %d: %s fd %d refused: it is %s (vhost-user: an eventfd); the "
                    "ring gets no %s notifications", event.index, what, event.fd, problem,
                    "used-buffer" if what == "call" else "error")
        self.backend.refuse_fd(event)
        return True

    async def _watch_memory(self, memory: BackendMemory) -> None:
        """Watch `memory` for a region that loses its pages (SIGBUS guard): that ends
        the session, naming the region."""
        if self._memory_watch is not None:
            self._memory_watch.cancel()
        assert self._nursery is not None
        self._memory_watch = await self._nursery.start(self._memory_watcher, memory)

    async def _memory_watcher(self, memory: BackendMemory,
                              task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            try:
                await trio.lowlevel.wait_readable(memory.lost_fd)
            except trio.ClosedResourceError:
                return  # unmapped meanwhile
            lost = memory.lost() or ["guest memory lost its backing (SIGBUS)"]
            self.end("; ".join(lost))

    async def _open_channel(self, fd: int) -> bool:
        """Serve the back-end request channel on (a duplicate of) `fd`; False, and no
        channel, when the fd is not a stream socket."""
        self._close_channel()
        dup = os.dup(fd)
        try:
            sock = socket.socket(fileno=dup)
        except OSError as exc:
            os.close(dup)
            log.warning("VHOST_USER_SET_BACKEND_REQ_FD: fd %d is not a socket (%s); no "
                        "back-end request channel", fd, exc.strerror)
            self.backend.drop_channel()
            return False
        if sock.type != socket.SOCK_STREAM:
            sock.close()
            log.warning("VHOST_USER_SET_BACKEND_REQ_FD: fd %d is not a stream socket; no "
                        "back-end request channel", fd)
            self.backend.drop_channel()
            return False
        assert self._nursery is not None
        tsock = trio.socket.from_stdlib_socket(sock)
        scope = await self._nursery.start(self._channel_sender, tsock)
        self._channel = (tsock, scope)
        return True

    def _close_channel(self) -> None:
        if self._channel is not None:
            sock, scope = self._channel
            self._channel = None
            scope.cancel()
            sock.close()

    async def _channel_sender(self, sock: trio.socket.SocketType,
                              task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            self._config_changed = trio.Event()
            try:
                while True:
                    await self._config_changed.wait()
                    self._config_changed = trio.Event()
                    await self._send_config_change(sock)
            except (OSError, VhostUserError, trio.TooSlowError) as exc:
                why = "no ack in time" if isinstance(exc, trio.TooSlowError) else str(exc)
                log.error("back-end request channel failed: %s; config changes are no longer "
                          "signalled to this front-end", why)
                if self._channel is not None and self._channel[0] is sock:
                    self._channel = None
                sock.close()
                self.backend.drop_channel()
                self._retire()

    async def _send_config_change(self, sock: trio.socket.SocketType) -> None:
        channel = self.backend.channel
        assert channel is not None
        # the front-end gets BACKEND_ACK_TIMEOUT to take the request and ack it: one that
        # keeps the channel full fails it, never the session or the host
        with trio.fail_after(BACKEND_ACK_TIMEOUT):
            try:
                await send_message(sock, self.backend.config_change())
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise VhostUserRemoteError(
                    f"front-end closed the back-end request channel ({exc.strerror})"
                ) from None
            self.config_changes_sent += 1
            if not channel.awaiting:
                return
            ack = await receive_message(sock, channel,
                                        "front-end closed the back-end request channel")
        if ack is None:
            raise VhostUserRemoteError(
                "front-end closed the back-end request channel before acking "
                "VHOST_USER_BACKEND_CONFIG_CHANGE_MSG")
        if not ack.ok:
            log.warning("front-end could not handle %s (REPLY_ACK %d)",
                        ack.request.spec_name, ack.value)

    def _drop_memory(self, memory: BackendMemory) -> None:
        if memory.lost_fd >= 0:
            trio.lowlevel.notify_closing(memory.lost_fd)
        try:
            memory.close()
        except VhostUserLocalError:
            self._stale.append(memory)

    def _retire(self) -> None:
        for fd in self.backend.take_retired():
            for index, (watched, scope) in list(self._watchers.items()):
                if watched == fd:
                    scope.cancel()
                    del self._watchers[index]
            _close_watched(fd)

    async def _watch(self, index: int, fd: int) -> None:
        assert self._nursery is not None
        previous = self._watchers.pop(index, None)
        if previous is not None:
            previous[1].cancel()
        scope = await self._nursery.start(self._kick_watcher, index, fd)
        self._watchers[index] = (fd, scope)

    async def _kick_watcher(self, index: int, fd: int,
                            task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            while True:
                try:
                    await trio.lowlevel.wait_readable(fd)
                    if not guest_fds.drain(fd):
                        continue  # someone else read it first: no kick
                except trio.ClosedResourceError:
                    return
                except (OSError, ValueError) as exc:
                    if isinstance(exc, OSError) and exc.errno == E.ETIMEDOUT:
                        self.end(str(guest_fds.fatal(exc, f"vring {index} kick fd {fd}")))
                        return
                    log.error("vring %d: kick fd %d unusable (%s); no longer watched",
                              index, fd, exc)
                    return
                try:
                    await self.dispatch(ev.Kicked(index))
                except (VirtioError, VhostUserError) as exc:
                    log.error("vring %d: kick handler failed: %s", index, exc)

    async def _teardown(self, reason: str) -> None:
        self._watchers.clear()
        self._close_channel()
        with trio.CancelScope(shield=True):
            try:
                await self.dispatch(ev.Disconnected(reason))
            except Exception:
                log.exception("Disconnected handler failed")
        for fd in self.backend.close():
            _close_watched(fd)
        memories = [*self._stale, *([self.memory] if self.memory is not None else [])]
        self.memory, self._stale = None, []
        for memory in memories:
            try:
                memory.close()
            except VhostUserLocalError as exc:
                log.error("session memory cannot be unmapped: %s", exc)


async def serve_connection(sock: trio.socket.SocketType, config: BackendConfig,
                           handlers: Handlers) -> str:
    """Serve one front-end on a connected socket, then close it; returns the reason the
    session ended ("" for a clean close)."""
    with sock:
        return await BackendSession(sock, Backend(config), handlers).run()


#: What sun_path holds, its terminating NUL left out (unix(7)).
SUN_PATH_MAX = 107


def _staging(path: str) -> str:
    """Where `serve_backend` binds before it renames the socket to `path`."""
    return f"{path}.{os.getpid()}.binding"


def _check_path(path: str, what: str, *, staging: bool) -> bool:
    """What a listening and a dialing side both need of a Unix socket path: not empty,
    short enough for sun_path (with `staging`, as bound under its temporary name), in a
    directory that exists, and no file that is not a socket in the way.  Whether a
    socket is there."""
    if not path:
        raise VhostUserLocalError(f"{what}: the path is empty")
    bound = _staging(path) if staging else path
    size = len(os.fsencode(bound))
    if size > SUN_PATH_MAX:
        extra = size - len(os.fsencode(path))
        how = f", as it is bound as {bound!r} first and sun_path holds {SUN_PATH_MAX}" \
            if staging else ""
        raise VhostUserLocalError(
            f"{what} {path}: too long for a Unix socket ({size - extra} bytes; at most "
            f"{SUN_PATH_MAX - extra}{how})")
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise VhostUserLocalError(f"{what} {path}: directory {directory} does not exist")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a socket"
        raise VhostUserLocalError(f"{what} {path} exists and is {kind}")
    return True


def check_dial_path(path: str | os.PathLike[str], what: str = "socket") -> None:
    """Refuse a path a client can never dial: empty, too long for sun_path, in a
    directory that does not exist, or a file that is not a socket.  No socket there yet
    is fine: its server may come later (the guest keeps dialling).  VhostUserLocalError
    naming `what` and the path."""
    _check_path(os.fspath(path), what, staging=False)


def check_socket_path(path: str | os.PathLike[str], what: str = "socket") -> None:
    """Refuse a path a server cannot listen on, before anything is bound: empty, longer
    than a Unix socket path can be (the temporary name it is bound under first
    included), in a directory that does not exist, taken by a file that is no socket, or
    a socket another process accepts on: a second server must not take the first one's
    clients over.  A stale socket (nobody accepts on it) is replaced.  VhostUserLocalError
    naming `what` (`--socket`, `--control`) and the path."""
    path = os.fspath(path)
    if not _check_path(path, what, staging=True):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)  # a listener with a full backlog answers EAGAIN, not a wait
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return  # stale: left by a server that is gone, replaced when we listen
    except BlockingIOError:
        pass  # someone listens, its backlog is full
    except OSError as exc:
        raise VhostUserLocalError(f"{what} {path}: {exc.strerror or exc}") from None
    finally:
        probe.close()
    raise VhostUserLocalError(f"{what} {path}: another process serves that socket")


async def serve_backend(path: str | os.PathLike[str], config: BackendConfig,
                        handlers: Handlers, *,
                        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on a Unix socket at `path` and serve front-ends one at a time, forever.

    `check_socket_path` first: a socket another server accepts on is refused, a stale
    one is replaced, any other file is left alone and the server refuses to start;
    `task_status.started(path)` once listening; the file is removed on exit.  The socket
    is bound under a temporary name and renamed to `path` only after listen(), so a
    front-end that finds the file can always connect (with bind straight at `path`, a
    client racing between bind and listen is refused)."""
    path = os.fspath(path)
    check_socket_path(path)
    staging = _staging(path)
    names = [staging]  # what to remove on the way out
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            await listener.bind(staging)
        except OSError as exc:
            raise VhostUserLocalError(f"socket {path}: cannot bind {staging}: "
                                      f"{exc.strerror or exc}") from None
        listener.listen(4)
        os.replace(staging, path)  # also replaces a socket left behind by an earlier server
        names.append(path)
        task_status.started(path)
        while True:
            sock, _ = await listener.accept()
            log.info("vhost-user front-end connected on %s", path)
            reason = await serve_connection(sock, config, handlers)
            log.info("vhost-user front-end left %s%s", path, f": {reason}" if reason else "")
    finally:
        listener.close()
        for name in names:
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass


# -- front-end -----------------------------------------------------------------------------

class FrontendConnection:
    """A front-end over a connected socket: awaitable requests, QEMU's start sequence."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.core = Frontend()
        #: Our end of the back-end request channel, once negotiate() set one up; serve
        #: it with `serve_backend_requests(conn.backend_channel, conn.core.backend_requests(),
        #: handler)`.
        self.backend_channel: trio.socket.SocketType | None = None

    @classmethod
    async def connect(cls, path: str | os.PathLike[str]) -> FrontendConnection:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await sock.connect(os.fspath(path))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    async def __aenter__(self) -> FrontendConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self.core.close()
        self.sock.close()
        if self.backend_channel is not None:
            self.backend_channel.close()
        await trio.lowlevel.checkpoint()

    async def send(self, out: Outgoing) -> Reply | None:
        """Send one request and, when one is due, return its reply (acks are checked)."""
        try:
            return await self._exchange(out)
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise VhostUserRemoteError(
                f"back-end closed the connection ({exc.strerror}) at "
                f"{out.request.spec_name}") from exc

    async def _exchange(self, out: Outgoing) -> Reply | None:
        await send_message(self.sock, out.data, out.fds)
        if not out.expects_reply:
            return None
        reply = await receive_message(self.sock, self.core, "back-end closed the connection")
        if reply is None:
            raise VhostUserRemoteError(
                f"back-end closed the connection before replying to {out.request.spec_name}")
        check_ack(reply)
        return reply

    async def value(self, out: Outgoing) -> Any:
        reply = await self.send(out)
        assert reply is not None
        return reply.value

    async def negotiate(self, features: int, protocol_features: int = 0) -> tuple[int, int]:
        """QEMU's opening: GET_FEATURES, GET/SET_PROTOCOL_FEATURES, GET_QUEUE_NUM (MQ),
        SET_BACKEND_REQ_FD (BACKEND_REQ: `backend_channel`), SET_OWNER, SET_FEATURES.
        Takes what both sides have of `features` and
        `protocol_features`; returns the two negotiated sets.  As QEMU does, the accepted
        features carry VHOST_USER_F_PROTOCOL_FEATURES whenever the back-end offers it
        (so rings start disabled and SET_VRING_ENABLE turns them on)."""
        offered = await self.value(self.core.get_features())
        proto = 0
        protocol_bit = 1 << VHOST_USER_F_PROTOCOL_FEATURES
        if offered & protocol_bit:
            features |= protocol_bit
            proto = await self.value(self.core.get_protocol_features()) & protocol_features
            await self.send(self.core.set_protocol_features(proto))
            if proto >> VhostUserProtocolFeature.MQ & 1:
                await self.value(self.core.get_queue_num())
            if proto >> VhostUserProtocolFeature.BACKEND_REQ & 1:
                self.backend_channel = await open_backend_channel(self.send, self.core)
        await self.send(self.core.set_owner())
        accepted = offered & features
        await self.send(self.core.set_features(accepted))
        return accepted, proto

    async def set_mem_table(self, memory: FrontendMemory) -> None:
        await self.send(self.core.set_mem_table(memory.table(), memory.fds()))

    async def start_vring(self, memory: FrontendMemory, index: int, num: int,
                          areas: tuple[int, int, int], *, kick: EventFd | None,
                          call: EventFd | None, base: int = 0) -> None:
        """Program and start vring `index` over `areas` (guest-physical desc, avail, used)."""
        desc, avail, used = (memory.uva(gpa) for gpa in areas)
        for out in self.core.vring_setup(index, num, desc, avail, used, base=base,
                                         kick=kick.fd if kick else None,
                                         call=call.fd if call else None):
            await self.send(out)

    async def stop_vring(self, index: int) -> int:
        """GET_VRING_BASE: the back-end stops the ring; returns its next available index."""
        state = await self.value(self.core.get_vring_base(index))
        return int(state.num)


async def open_backend_channel(send: Callable[[Outgoing], Awaitable[Reply | None]],
                               core: Frontend) -> trio.socket.SocketType:
    """A socketpair for the back-end request channel: one end goes to the back-end with
    SET_BACKEND_REQ_FD (through `send`, acked when REPLY_ACK is negotiated), the other is
    returned for `serve_backend_requests`."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        out = core.set_backend_req_fd(theirs.fileno())
        await send(out)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return trio.socket.from_stdlib_socket(ours)


async def _open_transfer(send: Callable[[Outgoing], Awaitable[Reply | None]],
                         core: Frontend, direction: int) -> int:
    """A pipe for a state transfer: the back-end's end goes with SET_DEVICE_STATE_FD
    (the write end to SAVE, the read end to LOAD), ours is returned.  Ours alone stays
    open here: a second copy of the back-end's end would hold the end of file off."""
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    theirs, ours = (wfd, rfd) if direction == VHOST_TRANSFER_STATE_DIRECTION_SAVE \
        else (rfd, wfd)
    try:
        reply = await send(core.set_device_state_fd(direction, theirs))
    except BaseException:
        os.close(ours)
        raise
    finally:
        os.close(theirs)
    assert reply is not None
    err = device_state_errno(reply)
    if err:
        os.close(ours)
        what = "save its" if direction == VHOST_TRANSFER_STATE_DIRECTION_SAVE else "load a"
        raise MigrationError(f"the back-end refused to {what} state: {errno_name(err)}", err)
    return ours


async def save_device_state(send: Callable[[Outgoing], Awaitable[Reply | None]],
                            core: Frontend, *, limit: int) -> bytes:
    """The back-end's state, as vhost-user.rst "Migrating back-end state" moves it: a
    pipe's write end goes with SET_DEVICE_STATE_FD (direction SAVE, phase STOPPED: every
    ring stopped first), the back-end writes its state and closes it, we read to the end
    of file (at most `limit` bytes), then CHECK_DEVICE_STATE.  MigrationError with the
    back-end's errno when it says no."""
    rfd = await _open_transfer(send, core, VHOST_TRANSFER_STATE_DIRECTION_SAVE)
    data = bytearray()
    async with trio.lowlevel.FdStream(rfd) as stream:
        while chunk := await stream.receive_some(1 << 16):
            data += chunk
            if len(data) > limit:
                raise MigrationError(f"the back-end's state is over {limit} bytes", E.EFBIG)
    await _check_state(send, core, "save")
    return bytes(data)


async def load_device_state(send: Callable[[Outgoing], Awaitable[Reply | None]],
                            core: Frontend, data: bytes) -> None:
    """Give a back-end saved state: a pipe's read end goes with SET_DEVICE_STATE_FD
    (direction LOAD, phase STOPPED), we write the state and close our end, then
    CHECK_DEVICE_STATE says whether the back-end could restore it.  MigrationError with
    the back-end's errno when it says no."""
    wfd = await _open_transfer(send, core, VHOST_TRANSFER_STATE_DIRECTION_LOAD)
    async with trio.lowlevel.FdStream(wfd) as stream:
        try:
            await stream.send_all(data)
        except trio.BrokenResourceError:
            pass  # the back-end stopped reading: its CHECK_DEVICE_STATE says why
    await _check_state(send, core, "load")


async def _check_state(send: Callable[[Outgoing], Awaitable[Reply | None]], core: Frontend,
                       what: str) -> None:
    reply = await send(core.check_device_state())
    assert reply is not None
    err = device_state_errno(reply)
    if err:
        raise MigrationError(f"the back-end could not {what} its state "
                             f"(VHOST_USER_CHECK_DEVICE_STATE: {errno_name(err)})", err)


async def serve_backend_requests(sock: trio.socket.SocketType, requests: BackendRequests,
                                 handler: BackendRequestHandler) -> str:
    """Serve the back-end request channel until the back-end closes it or breaks the
    protocol; returns why it ended ("" for a clean close) and closes `sock`.  A request
    the handler cannot handle (False, or a `VhostUserError`) gets a nack when the back-end
    asked for an ack.  Never raises for the back-end's faults: the main connection is
    not this channel's to end."""
    reason = ""
    with sock:
        try:
            while True:
                message = await receive_message(sock, requests,
                                                "back-end closed its request channel")
                if message is None:
                    break
                try:
                    ok = await handler(message)
                except VhostUserError as exc:
                    log.warning("%s not handled: %s", message.request.spec_name, exc)
                    ok = False
                reply = requests.respond(message, ok)
                if reply:
                    await send_message(sock, reply)
        except (OSError, VhostUserError) as exc:
            reason = str(exc)
            log.error("back-end request channel failed: %s; closing it", reason)
        finally:
            requests.close()
    return reason


__all__ = [
    "BACKEND_ACK_TIMEOUT", "REPLY_TIMEOUT", "SUN_PATH_MAX", "BackendRequestHandler",
    "BackendSession", "EventFd", "FrontendConnection", "Handler", "Handlers",
    "check_dial_path", "check_socket_path", "load_device_state", "open_backend_channel", "receive_some",
    "save_device_state", "send_message", "serve_backend", "serve_backend_requests",
    "serve_connection",
]
