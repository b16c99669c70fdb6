"""Every vhost-user test must leave the process's fd table as it found it."""

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


@pytest.fixture(autouse=True)
def no_fd_leak():
    before = _fds()
    yield
    gc.collect()
    after = _fds()
    leaked = {fd: target for fd, target in after.items() if before.get(fd) != target}
    assert leaked == {}, f"fds leaked: {leaked}"
