"""Every vhost-user test must leave the process's fd table as it found it; `feed_chunks`
feeds a sans-I/O reader as the edge does."""

import gc
import os

import pytest


def _fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the directory fd listdir used, gone by now
            pass
    return out


def feed_chunks(feed, want, data: bytes, fds=()):
    """Feed `data` as the edge does: never more than `want()` at a time, fds with the
    first chunk; returns what the last chunk completed."""
    out, pos, fds = None, 0, list(fds)
    while pos < len(data):
        n = want()
        assert n > 0
        out = feed(data[pos:pos + n], fds)
        fds, pos = [], pos + n
    return out


@pytest.fixture(autouse=True)
def no_fd_leak():
    before = _fds()
    yield
    gc.collect()
    after = _fds()
    leaked = {fd: target for fd, target in after.items() if before.get(fd) != target}
    assert leaked == {}, f"fds leaked: {leaked}"
