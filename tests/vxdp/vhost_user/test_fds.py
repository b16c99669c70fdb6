"""A front-end's kick, call and err fds: taken non-blocking for good, signalled and
drained without ever waiting (vxdp.vhost_user.fds)."""

import errno
import os
import socket
import tempfile

import pytest

from tests.vxdp.runtime.hostile import fill
from vxdp.vhost_user import fds

FULL = 0xFFFF_FFFF_FFFF_FFFE  # an eventfd counter a write of 1 would have to wait on


def test_a_blocking_eventfd_is_taken_non_blocking_and_a_full_one_coalesces():
    efd = os.eventfd(0)  # blocking, as a hostile front-end makes it
    try:
        assert fds.adopt(efd, writing=True) == ""
        assert not os.get_blocking(efd)
        assert fds.signal(efd) is True
        assert os.eventfd_read(efd) == 1
        os.eventfd_write(efd, FULL)
        assert fds.signal(efd) is False  # coalesced into the unread notification
        assert os.eventfd_read(efd) == FULL
        assert fds.drain(efd) is False  # empty: nothing to do, nothing waited for
        os.eventfd_write(efd, 3)
        assert fds.drain(efd) is True
    finally:
        os.close(efd)


def test_a_pipe_gets_a_description_of_our_own_the_front_end_cannot_block():
    r, w = os.pipe()
    theirs = os.dup(w)  # the front-end's copy shares the description we were sent
    try:
        assert fds.adopt(w, writing=True) == ""
        assert not os.get_blocking(w)
        assert os.get_blocking(theirs)  # theirs is untouched; ours is another description
        fill(theirs)  # and O_NONBLOCK taken back: that changes nothing for us
        assert fds.signal(w) is False
        assert fds.adopt(r, writing=False) == ""
        assert fds.drain(r) is True
    finally:
        for fd in (r, w, theirs):
            os.close(fd)


def test_a_front_end_that_clears_o_nonblock_again_is_interrupted_not_waited_for():
    efd = os.eventfd(0)
    try:
        assert fds.adopt(efd, writing=True) == ""
        os.eventfd_write(efd, FULL)
        os.set_blocking(efd, True)  # the front-end's move, on the description we share
        with pytest.raises(OSError) as info:
            fds.signal(efd)  # blocks until the core's watchdog interrupts it
        assert info.value.errno == errno.ETIMEDOUT
        assert "cleared O_NONBLOCK" in info.value.strerror
        os.eventfd_read(efd)
        with pytest.raises(OSError) as info:
            fds.drain(efd)  # and a read of an empty one
        assert info.value.errno == errno.ETIMEDOUT
        assert str(fds.fatal(info.value, "vring 1 kick fd 9")) == (
            "vring 1 kick fd 9: a read blocked for 20 ms (the front-end cleared O_NONBLOCK on "
            "it) and was interrupted")
    finally:
        os.close(efd)


def test_call_fds_that_are_no_eventfd_are_refused_naming_what_they_are():
    with tempfile.TemporaryFile() as f:
        assert fds.adopt(f.fileno(), writing=True) == \
            "a regular file, not an eventfd (nor a pipe)"
    a, b = socket.socketpair()
    with a, b:
        assert fds.adopt(a.fileno(), writing=True) == "a socket, not an eventfd (nor a pipe)"
    zero = os.open("/dev/zero", os.O_RDWR)
    r, w = os.pipe()
    try:
        assert fds.adopt(zero, writing=True) == \
            "a character device, not an eventfd (nor a pipe)"
        assert fds.adopt(r, writing=True) == "the read end of a pipe"
        os.close(r)
        r = -1
        assert fds.adopt(w, writing=True) == ""
        with pytest.raises(OSError) as info:
            fds.signal(w)  # nobody reads it any more: the session ends on that
        assert info.value.errno == errno.EPIPE
    finally:
        for fd in (zero, r, w):
            if fd >= 0:
                os.close(fd)
