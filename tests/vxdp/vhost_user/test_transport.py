"""Front-end and back-end over real Unix sockets, memfd regions and eventfds."""

import logging
import os
import socket
import struct
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from virtio_spec.errors import RemoteProtocolError
from virtio_spec.split import SplitDeviceQueue, SplitDriverQueue, UsedElem
from vxdp.errors import VhostUserLocalError, VhostUserRemoteError
from vxdp.vhost_user import events as ev
from vxdp.vhost_user.backend import BackendConfig
from vxdp.vhost_user.memory import FrontendMemory
from vxdp.vhost_user.messages import VhostUserProtocolFeature
from vxdp.vhost_user.transport import (
    BackendSession,
    EventFd,
    FrontendConnection,
    send_message,
    serve_backend,
    serve_backend_requests,
    serve_connection,
)

PF = VhostUserProtocolFeature
VERSION_1, PROTOCOL = 1 << 32, 1 << 30
ALL_PF = (1 << PF.MQ) | (1 << PF.REPLY_ACK) | (1 << PF.CONFIG) | (1 << PF.STATUS)
CONFIG_SPACE = bytes.fromhex("525400123456") + b"\x01\x00" + b"\x02\x00" + b"\xdc\x05"
CONFIG = BackendConfig(VERSION_1 | PROTOCOL, ALL_PF, queue_num=3, vrings=3,
                       config_size=len(CONFIG_SPACE))
DESC, AVAIL, USED = 0x1000, 0x2000, 0x3000


class EchoDevice:
    """A device that answers every chain of a ring with its bytes reversed."""

    def __init__(self):
        self.seen: list[ev.BackendEvent] = []
        self.num: dict[int, int] = {}
        self.base: dict[int, int] = {}
        self.areas: dict[int, tuple[int, int, int]] = {}
        self.queues: dict[int, SplitDeviceQueue] = {}
        self.status = 0
        self.sessions = 0
        self.handlers = {
            ev.BackendEvent: self.record,
            ev.Connected: self.connected,
            ev.VringNumSet: self.vring_num,
            ev.VringBaseSet: self.vring_base,
            ev.VringAddrSet: self.vring_addr,
            ev.VringKickSet: self.vring_kick,
            ev.Kicked: self.kicked,
            ev.VringBaseQueried: self.stop,
            ev.ConfigQueried: self.config,
            ev.StatusSet: self.set_status,
            ev.StatusQueried: self.get_status,
            ev.Disconnected: self.disconnected,
        }

    async def record(self, session: BackendSession, event):
        self.seen.append(event)

    async def connected(self, session, event):
        self.sessions += 1
        self.seen.append(event)

    async def vring_num(self, session, event):
        self.num[event.index] = event.num

    async def vring_base(self, session, event):
        self.base[event.index] = event.base

    async def vring_addr(self, session, event):
        self.areas[event.index] = (event.desc, event.avail, event.used)

    async def vring_kick(self, session, event):
        i = event.index
        self.queues[i] = SplitDeviceQueue(session.memory.guest, self.num[i], *self.areas[i],
                                          last_avail_idx=self.base.get(i, 0))

    async def kicked(self, session, event):
        self.seen.append(event)
        q = self.queues[event.index]
        while (chain := q.pop()) is not None:
            written = chain.write(chain.read()[::-1])
            q.push(chain, written)
            del chain
        if q.should_interrupt():
            session.notify(event.index)

    async def stop(self, session, event):
        q = self.queues.pop(event.index)
        return q.last_avail_idx

    async def config(self, session, event):
        return CONFIG_SPACE[event.offset:event.offset + event.size]

    async def set_status(self, session, event):
        if event.status & 0x80 and event.status != 0x80:
            raise RemoteProtocolError("FAILED with other bits", "2.1")
        self.status = event.status

    async def get_status(self, session, event):
        return self.status

    async def disconnected(self, session, event):
        self.seen.append(event)
        self.queues.clear()


@pytest.fixture
def sockpath():
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        yield Path(d) / "vu.sock"


async def test_ring_round_trip_over_a_socketpair():
    device = EchoDevice()
    front_sock, back_sock = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reasons = []
    memory = FrontendMemory.create([(0x0, 0x10000), (0x100000, 0x4000)])
    kick, call = EventFd(), EventFd()

    async def backend():
        reasons.append(await serve_connection(back_sock, CONFIG, device.handlers))

    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(backend)
                async with FrontendConnection(front_sock) as conn:
                    features, proto = await conn.negotiate(VERSION_1 | PROTOCOL, ALL_PF)
                    assert (features, proto) == (VERSION_1 | PROTOCOL, ALL_PF)
                    assert conn.core.queue_num == 3
                    await conn.set_mem_table(memory)
                    driver = SplitDriverQueue(memory.guest, 8, DESC, AVAIL, USED)
                    await conn.start_vring(memory, 0, 8, (DESC, AVAIL, USED),
                                           kick=kick, call=call)
                    memory.guest.write(0x100010, b"hello, vhost")
                    head = driver.add([(0x100010, 12)], [(0x4000, 12)])
                    assert driver.publish()
                    kick.signal()
                    assert await call.wait() == 1
                    assert driver.reap() == [UsedElem(head, 12)]
                    assert memory.guest.read(0x4000, 12) == b"tsohv ,olleh"
                    config = await conn.value(conn.core.get_config(0, 6))
                    assert config.data == CONFIG_SPACE[:6]
                    await conn.send(conn.core.set_config(6, b"\x01\x00"))
                    assert ev.ConfigSet(6, b"\x01\x00", 0) in device.seen
                    await conn.send(conn.core.set_status(0x0F))
                    assert await conn.value(conn.core.get_status()) == 0x0F
                    assert await conn.stop_vring(0) == 1
                    del driver
        assert reasons == [""]
        assert ev.Kicked(0) in device.seen and isinstance(device.seen[-1], ev.Disconnected)
    finally:
        kick.close()
        call.close()
        memory.close()


async def test_device_refusal_is_a_nack_and_the_session_goes_on():
    device = EchoDevice()
    front_sock, back_sock = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_connection, back_sock, CONFIG, device.handlers)
            async with FrontendConnection(front_sock) as conn:
                await conn.negotiate(VERSION_1 | PROTOCOL, ALL_PF)
                with pytest.raises(VhostUserRemoteError, match="refused VHOST_USER_SET_STATUS"):
                    await conn.send(conn.core.set_status(0x8F))
                await conn.send(conn.core.set_status(0x03))
                assert await conn.value(conn.core.get_status()) == 0x03


async def test_malformed_message_logged_disconnected_then_next_frontend(sockpath, caplog):
    device = EchoDevice()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.fspath(sockpath))  # left behind by an earlier server
    stale.close()
    caplog.set_level(logging.ERROR, logger="vxdp.vhost_user")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            path = await nursery.start(serve_backend, sockpath, CONFIG, device.handlers)
            bad = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            with bad:
                await bad.connect(path)
                await bad.send(struct.pack("<III", 99, 1, 0))
                assert await bad.recv(64) == b""  # the back-end hung up
            assert "unknown request code 99" in caplog.text
            async with await FrontendConnection.connect(path) as conn:
                assert await conn.value(conn.core.get_features()) == VERSION_1 | PROTOCOL
            nursery.cancel_scope.cancel()
    assert device.sessions == 2
    assert not sockpath.exists()


async def test_out_of_order_gets_a_nack_then_a_disconnect(sockpath, caplog):
    device = EchoDevice()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            path = await nursery.start(serve_backend, sockpath, CONFIG, device.handlers)
            async with await FrontendConnection.connect(path) as conn:
                await conn.negotiate(VERSION_1 | PROTOCOL, ALL_PF)
                with pytest.raises(VhostUserRemoteError, match="refused VHOST_USER_SET_VRING_ADDR"):
                    await conn.send(conn.core.set_vring_addr(0, 0x1000, 0x2000, 0x3000))
                with pytest.raises(VhostUserRemoteError, match="closed the connection"):
                    await conn.send(conn.core.get_features())
            assert "VHOST_USER_SET_VRING_ADDR before VHOST_USER_SET_MEM_TABLE" in caplog.text
            async with await FrontendConnection.connect(path) as conn:
                await conn.negotiate(VERSION_1 | PROTOCOL, ALL_PF)
            nursery.cancel_scope.cancel()
    disconnects = [e for e in device.seen if isinstance(e, ev.Disconnected)]
    assert "SET_MEM_TABLE" in disconnects[0].reason and disconnects[1].reason == ""


async def test_peer_dies_mid_session_with_a_ring_running(sockpath, caplog):
    device = EchoDevice()
    memory = FrontendMemory.create([(0x0, 0x10000)])
    kick, call = EventFd(), EventFd()
    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                path = await nursery.start(serve_backend, sockpath, CONFIG, device.handlers)
                conn = await FrontendConnection.connect(path)
                await conn.negotiate(VERSION_1 | PROTOCOL, ALL_PF)
                await conn.set_mem_table(memory)
                driver = SplitDriverQueue(memory.guest, 8, DESC, AVAIL, USED)
                await conn.start_vring(memory, 0, 8, (DESC, AVAIL, USED), kick=kick, call=call)
                del driver
                # half a header, then gone
                await conn.sock.send(struct.pack("<I", 1))
                await conn.aclose()
                async with await FrontendConnection.connect(path) as again:
                    assert await again.value(again.core.get_features()) == VERSION_1 | PROTOCOL
                nursery.cancel_scope.cancel()
        assert "front-end closed the socket mid-message" in caplog.text
        assert device.sessions == 2 and not device.queues
    finally:
        kick.close()
        call.close()
        memory.close()


async def test_unusable_memory_fd_is_refused(sockpath, caplog):
    device = EchoDevice()
    front_sock, back_sock = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    not_memory = os.eventfd(0)
    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_connection, back_sock, CONFIG, device.handlers)
                async with FrontendConnection(front_sock) as conn:
                    await conn.negotiate(VERSION_1 | PROTOCOL, ALL_PF)
                    memory = FrontendMemory.create([(0x0, 0x10000)])
                    table = memory.table()
                    memory.close()
                    out = conn.core.set_mem_table(table, [not_memory])
                    with pytest.raises(VhostUserRemoteError, match="closed the connection"):
                        await conn.send(out)
        assert "region 0 needs 0x10000 bytes of its fd, the file has 0x0" in caplog.text
    finally:
        os.close(not_memory)


async def test_too_many_fds_are_refused(caplog):
    device = EchoDevice()
    front_sock, back_sock = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    fds = [os.eventfd(0) for _ in range(9)]
    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_connection, back_sock, CONFIG, device.handlers)
                with front_sock:
                    await send_message(front_sock, struct.pack("<III", 3, 1, 0), fds)
                    assert await front_sock.recv(64) == b""
        assert "more than 8 fds in one message" in caplog.text
    finally:
        for fd in fds:
            os.close(fd)


async def test_query_without_a_handler_ends_the_session(caplog):
    front_sock, back_sock = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reasons = []

    async def backend():
        reasons.append(await serve_connection(back_sock, CONFIG, {}))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(backend)
            async with FrontendConnection(front_sock) as conn:
                await conn.negotiate(VERSION_1 | PROTOCOL, ALL_PF)
                with pytest.raises(VhostUserRemoteError, match="closed the connection"):
                    await conn.send(conn.core.get_status())
    assert reasons == ["VhostUserLocalError: no handler answers StatusQueried"]


async def test_kick_fd_replaced_and_ring_restarted_after_stop():
    device = EchoDevice()
    front_sock, back_sock = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    memory = FrontendMemory.create([(0x0, 0x10000)])
    kicks = [EventFd(), EventFd(), EventFd()]
    call = EventFd()
    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_connection, back_sock, CONFIG, device.handlers)
                async with FrontendConnection(front_sock) as conn:
                    await conn.negotiate(VERSION_1 | PROTOCOL, ALL_PF)
                    await conn.set_mem_table(memory)
                    driver = SplitDriverQueue(memory.guest, 8, DESC, AVAIL, USED)
                    await conn.start_vring(memory, 0, 8, (DESC, AVAIL, USED),
                                           kick=kicks[0], call=call)
                    # a second SET_VRING_KICK replaces the first fd (and its watcher)
                    await conn.send(conn.core.set_vring_kick(0, kicks[1].fd))

                    async def round_trip(driver, kick, payload, at):
                        memory.guest.write(0x8000, payload)
                        head = driver.add([(0x8000, len(payload))], [(at, len(payload))])
                        driver.publish()
                        kick.signal()
                        await call.wait()
                        assert driver.reap() == [UsedElem(head, len(payload))]
                        assert memory.guest.read(at, len(payload)) == payload[::-1]

                    kicks[0].signal()  # the retired fd: nobody listens any more
                    await round_trip(driver, kicks[1], b"abc", 0x9000)
                    assert await conn.stop_vring(0) == 1
                    # restart where it stopped, with a fresh kick fd
                    await conn.start_vring(memory, 0, 8, (DESC, AVAIL, USED),
                                           kick=kicks[2], call=call, base=1)
                    await round_trip(driver, kicks[2], b"defg", 0xA000)
                    del driver
        assert [e for e in device.seen if isinstance(e, ev.Kicked)] == [ev.Kicked(0)] * 2
    finally:
        for fd in (*kicks, call):
            fd.close()
        memory.close()


async def test_kick_fd_that_is_not_pollable_is_logged_and_the_session_goes_on(caplog):
    device = EchoDevice()
    front_sock, back_sock = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    memory = FrontendMemory.create([(0x0, 0x10000)])
    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_connection, back_sock, CONFIG, device.handlers)
                async with FrontendConnection(front_sock) as conn:
                    await conn.negotiate(VERSION_1 | PROTOCOL, ALL_PF)
                    await conn.set_mem_table(memory)
                    driver = SplitDriverQueue(memory.guest, 8, DESC, AVAIL, USED)
                    # a regular file as the kick "eventfd": epoll refuses it
                    await conn.start_vring(memory, 0, 8, (DESC, AVAIL, USED),
                                           kick=EventFd(memory.fds()[0]), call=None)
                    del driver
                    await trio.testing.wait_all_tasks_blocked()
                    assert await conn.value(conn.core.get_features()) == VERSION_1 | PROTOCOL
        assert "Operation not permitted); no longer watched" in caplog.text
    finally:
        memory.close()


async def test_socket_path_appears_only_once_the_backend_listens(sockpath, monkeypatch):
    # A front-end that finds the path must be able to connect: the backend binds under
    # another name, listens, then renames.  At the rename, the path must not exist yet
    # and the socket being renamed must already accept connections.
    import vxdp.vhost_user.transport as transport
    checked: list[str] = []
    real_replace = os.replace

    def replace(src, dst):
        assert not os.path.exists(dst)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with probe:
            probe.connect(src)  # refused if listen() had not happened yet
        checked.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(transport.os, "replace", replace)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            path = await nursery.start(serve_backend, sockpath, CONFIG, EchoDevice().handlers)
            assert checked == [os.fspath(sockpath)]
            async with await FrontendConnection.connect(path) as conn:
                assert await conn.value(conn.core.get_features()) == VERSION_1 | PROTOCOL
            nursery.cancel_scope.cancel()
    assert not sockpath.exists()
    assert not list(sockpath.parent.glob("*.binding"))


async def test_a_file_that_is_not_a_socket_is_never_replaced(sockpath):
    sockpath.write_text("precious")
    with trio.fail_after(5), pytest.raises(VhostUserLocalError, match="not a socket"):
        await serve_backend(sockpath, CONFIG, EchoDevice().handlers)
    assert sockpath.read_text() == "precious"


# -- the back-end request channel ----------------------------------------------------------

CHANNEL_PF = ALL_PF | (1 << PF.BACKEND_REQ)
CHANNEL_CONFIG = BackendConfig(VERSION_1 | PROTOCOL, CHANNEL_PF, queue_num=3, vrings=3,
                               config_size=len(CONFIG_SPACE))


class ChannelRig:
    """A back-end session and a front-end connection over a socketpair; `session` is the
    back-end's, as a device handler sees it."""

    def __init__(self, nursery, config=CHANNEL_CONFIG):
        self.device = EchoDevice()
        self.session = None
        self.reasons = []
        self.front_sock, self.back_sock = trio.socket.socketpair(socket.AF_UNIX,
                                                                 socket.SOCK_STREAM)

        async def connected(session, event):
            self.session = session
        self.device.handlers[ev.Connected] = connected

        async def backend():
            self.reasons.append(await serve_connection(self.back_sock, config,
                                                       self.device.handlers))
        nursery.start_soon(backend)
        self.nursery_start = nursery.start_soon
        self.conn = FrontendConnection(self.front_sock)


@asynccontextmanager
async def negotiated(proto=CHANNEL_PF):
    """A `ChannelRig` whose front-end negotiated `proto` (QEMU's opening); the session has
    ended when the block exits."""
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            rig = ChannelRig(nursery)
            async with rig.conn as conn:
                _, rig.proto = await conn.negotiate(VERSION_1 | PROTOCOL, proto)
                yield rig


async def wait_for(predicate):
    while not predicate():
        await trio.sleep(0.001)


async def test_config_change_reaches_the_front_end_and_is_acked():
    got = []

    async def handler(message):
        got.append(message.request.spec_name)
        return True

    async with negotiated() as rig:
        conn = rig.conn
        assert rig.proto == CHANNEL_PF and conn.backend_channel is not None
        rig.nursery_start(serve_backend_requests, conn.backend_channel,
                          conn.core.backend_requests(), handler)
        conn.backend_channel = None  # served (and closed) by the task
        assert rig.session.signal_config_change()
        await wait_for(lambda: got)
        channel = rig.session.backend.channel
        await wait_for(lambda: not channel.awaiting)  # the ack
        assert rig.session.signal_config_change()
        await wait_for(lambda: len(got) == 2)
        assert got == ["VHOST_USER_BACKEND_CONFIG_CHANGE_MSG"] * 2
        assert rig.session.config_changes_sent == 2
        assert await conn.value(conn.core.get_features())  # main socket unharmed
    assert rig.reasons == [""]


async def test_malformed_ack_drops_the_channel_and_the_session_goes_on(caplog):
    async with negotiated() as rig:
        chan = rig.conn.backend_channel
        assert rig.session.signal_config_change()
        assert await chan.recv(64) == struct.pack("<III", 2, 0x9, 0)
        await chan.send(struct.pack("<III", 2, 0x5, 4) + bytes(4))  # a short ack
        await wait_for(lambda: rig.session.backend.channel is None)
        assert not rig.session.signal_config_change()
        assert await rig.conn.value(rig.conn.core.get_status()) == 0
    assert "back-end request channel failed" in caplog.text
    assert "payload size 4, a u64 payload is 8" in caplog.text
    assert rig.reasons == [""]


async def test_front_end_that_closed_its_channel_is_logged_not_fatal(caplog):
    async with negotiated() as rig:
        rig.conn.backend_channel.close()
        rig.conn.backend_channel = None
        assert rig.session.signal_config_change()
        await wait_for(lambda: rig.session.backend.channel is None)
        assert await rig.conn.value(rig.conn.core.get_status()) == 0
    assert "front-end closed the back-end request channel" in caplog.text
    assert rig.reasons == [""]


async def test_no_channel_without_backend_req():
    async with negotiated(ALL_PF) as rig:
        assert rig.conn.backend_channel is None
        assert not rig.session.signal_config_change()


async def test_a_backend_req_fd_that_is_not_a_socket_is_refused(caplog):
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            rig = ChannelRig(nursery)
            async with rig.conn as conn:
                # negotiate() would hand over a socketpair: send the opening by hand
                await conn.value(conn.core.get_features())
                await conn.value(conn.core.get_protocol_features())
                await conn.send(conn.core.set_protocol_features(CHANNEL_PF))
                efd = EventFd()
                try:
                    with pytest.raises(VhostUserRemoteError,
                                       match="refused VHOST_USER_SET_BACKEND_REQ_FD"):
                        await conn.send(conn.core.set_backend_req_fd(efd.fd))
                finally:
                    efd.close()
                assert not rig.session.signal_config_change()
                assert await conn.value(conn.core.get_status()) == 0
    assert "is not a socket" in caplog.text


async def test_a_front_end_that_never_reads_its_replies_is_disconnected(monkeypatch, caplog):
    """It keeps sending GET_FEATURES and reads nothing: once the replies fill its socket
    the back-end waits REPLY_TIMEOUT for room, then ends the session saying why."""
    from vxdp.vhost_user import transport
    from vxdp.vhost_user.frontend import Frontend
    monkeypatch.setattr(transport, "REPLY_TIMEOUT", 0.2)
    front, back = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    request = Frontend().get_features().data
    reasons = []

    async def backend():
        reasons.append(await serve_connection(back, CONFIG, EchoDevice().handlers))

    with front, trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(backend)
            try:
                while not reasons:
                    await front.send(request * 256)
            except OSError:
                pass  # the back-end closed: the session is over
            await wait_for(lambda: reasons)
    assert reasons[0] == (f"front-end did not read the reply to {ev.FeaturesQueried().describe()}"
                          f" within 0.2 s")
    assert "did not read the reply" in caplog.text
