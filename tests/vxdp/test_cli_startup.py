"""Start-up stays lazy: `vxdp --help` loads no command's machinery, `vxdp verify` loads the
verifier and not the runtime; the lazily built parser is the one the full parser builds;
the packages' re-exports resolve on first use.  (How long start-up takes is measured by
`vxdp bench --suite startup`, never here.)"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import virtio_spec
import vxdp.bpf
from vxdp.bpf.clang import clang_unavailable, compile_c
from vxdp.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
PROGS = ROOT / "tests" / "vxdp" / "progs"
#: what the commands below have no use for: the runtime, trio, the device and driver
#: models, the ring engines, the packet core
RUNTIME = ("trio", "host", "guest", "vxdp.runtime", "vxdp.vhost_user", "vxdp.control",
           "vxdp.native", "vxdp._vxdp_core", "virtio_spec.split", "virtio_spec.packed",
           "virtio_spec.conformance")


def modules_after(code: str) -> tuple[str, list[str]]:
    """Run `code` in a fresh interpreter; its output and the modules it left loaded."""
    script = (f"import sys, json\n{code}\n"
              "print(json.dumps(sorted(sys.modules)), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, check=False)
    return out.stdout, json.loads(out.stderr.strip().splitlines()[-1])


def loaded(mods: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in mods if any(m == p or m.startswith(p + ".") for p in prefixes)]


def test_help_loads_no_command_machinery() -> None:
    out, mods = modules_after("from vxdp.cli import main\n"
                              "try:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert "verify" in out and "exec" in out and "bench" in out
    assert loaded(mods, (*RUNTIME, "virtio_spec", "vxdp.bpf", "construct", "elftools")) == []


def test_verify_loads_the_verifier_and_not_the_runtime() -> None:
    if (why := clang_unavailable()) is not None:
        pytest.skip(why)
    obj = compile_c(PROGS / "xdp_drop.c")
    out, mods = modules_after(f"from vxdp.cli import main\nmain(['verify', {str(obj)!r}])")
    assert "xdp_drop_all: accepted" in out
    assert "vxdp.bpf.verifier" in mods and "virtio_spec.offload" in mods
    assert loaded(mods, (*RUNTIME, "vxdp.bpf.asm", "vxdp.bpf.kernel", "vxdp.bench")) == []


def _paths(parser: argparse.ArgumentParser, path: list[str]) -> list[list[str]]:
    out = [path]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _paths(sub, [*path, name])
    return out


def _help_of(argv: list[str]) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        main([*argv, "--help"])
    return buf.getvalue()


def test_each_command_parses_as_the_full_parser_has_it(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    """The surface is the same whether one command's arguments are built or all of them:
    every command path's --help, word for word."""
    monkeypatch.setenv("COLUMNS", "100")
    full = build_parser()
    paths = _paths(full, [])
    assert len(paths) > 20  # every command, and the sub-commands of prog, map, link
    for path in paths:
        sub = full
        for word in path:
            (action,) = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
            sub = action.choices[word]
        assert _help_of(path) == sub.format_help(), path


@pytest.mark.parametrize("package", [virtio_spec, vxdp.bpf], ids=lambda p: p.__name__)
def test_reexports_resolve_on_first_use(package: object) -> None:
    for name in package.__all__:  # type: ignore[attr-defined]
        value = getattr(package, name)
        defining = sys.modules[f"{package.__name__}.{package._MODULE_OF[name]}"]  # type: ignore[attr-defined]
        assert getattr(defining, name) is value
    assert set(package.__all__) <= set(dir(package))  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        package.nosuch  # type: ignore[attr-defined]  # noqa: B018


def test_one_spec_module_costs_that_module_only() -> None:
    _, mods = modules_after("import virtio_spec.offload")
    assert loaded(mods, ("virtio_spec",)) == ["virtio_spec", "virtio_spec.errors",
                                              "virtio_spec.features", "virtio_spec.offload"]
    _, mods = modules_after("import vxdp.bpf.program")
    assert loaded(mods, ("vxdp.bpf",)) == ["vxdp.bpf", "vxdp.bpf.program"]
