"""`vxdp host --socket PATH`: a path no server can listen on is a usage error (exit 2, one
line naming the path and what is wrong), and a socket another host serves is never
taken over; `vxdp guest --socket PATH`: the same for a path no host could ever serve."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from vxdp.cli import main
from vxdp.errors import UsageError
from vxdp.runtime import GuestRuntime, HostRuntime, open_port
from vxdp.vhost_user.transport import SUN_PATH_MAX

from .conftest import core_unavailable, until
from .procs import processes


def run_host(capsys: pytest.CaptureFixture[str], *sockets: str) -> str:
    argv = ["host"]
    for s in sockets:
        argv += ["--socket", s]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_socket_paths_no_server_can_listen_on(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("precious")
    missing = tmp_path / "nowhere" / "g.sock"
    assert run_host(capsys, str(missing)) == \
        f"vxdp: error: --socket {missing}: directory {missing.parent} does not exist\n"
    assert run_host(capsys, str(tmp_path / "file")) == \
        f"vxdp: error: --socket {tmp_path / 'file'} exists and is not a socket\n"
    assert (tmp_path / "file").read_text() == "precious"
    assert run_host(capsys, str(tmp_path)) == \
        f"vxdp: error: --socket {tmp_path} exists and is a directory\n"
    assert run_host(capsys, "") == "vxdp: error: --socket: the path is empty\n"
    long = str(tmp_path / ("x" * SUN_PATH_MAX))
    assert "too long for a Unix socket" in run_host(capsys, long)
    twice = str(tmp_path / "g.sock")
    assert run_host(capsys, twice, twice) == f"vxdp: error: --socket {twice} is given 2 times\n"


def test_socket_paths_no_guest_can_dial(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A guest dials: no socket there yet is fine (it waits for its host), but a path no
    host could ever serve is refused in one line, exit 2."""
    (tmp_path / "file").write_text("precious")
    missing = tmp_path / "nowhere" / "g.sock"
    long = str(tmp_path / ("x" * SUN_PATH_MAX))
    cases = {str(missing): f"--socket {missing}: directory {missing.parent} does not exist",
             str(tmp_path / "file"): f"--socket {tmp_path / 'file'} exists and is not a socket",
             str(tmp_path): f"--socket {tmp_path} exists and is a directory",
             "": "--socket: the path is empty",
             long: f"--socket {long}: too long for a Unix socket ({len(long)} bytes; at "
                   f"most {SUN_PATH_MAX})"}
    for path, why in cases.items():
        with pytest.raises(UsageError) as refused:  # before the guest dials (forever)
            GuestRuntime(path)
        assert str(refused.value) == why
        assert main(["guest", "--socket", path]) == 2
        err = capsys.readouterr().err
        assert err == f"vxdp: error: {why}\n", err
    assert (tmp_path / "file").read_text() == "precious"


@pytest.mark.skipif(core_unavailable() is not None, reason=str(core_unavailable()))
async def test_a_second_host_on_a_served_socket_is_refused_and_the_first_keeps_it(
        tmp_path: Path) -> None:
    sock = tmp_path / "g.sock"
    with trio.fail_after(40):
        async with processes(tmp_path) as procs:
            first = await procs.host("--socket", str(sock))
            second = await procs.start("second host", "host", "--socket", str(sock))
            assert await second.process.wait() == 2
            await until(lambda: second.err.endswith(b"\n"), "the second host's error")
            assert second.err.decode() == \
                f"vxdp: error: --socket {sock}: another process serves that socket\n"
            with pytest.raises(Exception, match="another process serves that socket"):
                HostRuntime([sock])
            guest = GuestRuntime(sock, port=open_port("null"), retry=0.05)
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(guest.run)
                    await until(lambda: guest.ready.is_set(), "DRIVER_OK from the first host")
                    nursery.cancel_scope.cancel()
            finally:
                guest.close()
            assert first.process.poll() is None
