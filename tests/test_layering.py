"""House rules of DESIGN.md that a test can check."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_sans_io_packages_do_not_import_trio():
    code = ("import sys, guest, host, virtio_spec, pkgutil, importlib\n"
            "for pkg in (guest, host, virtio_spec):\n"
            "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
            "        importlib.import_module(m.name)\n"
            "print('trio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_virtio_spec_imports_no_test_framework_but_in_its_pytest_plugin():
    code = ("import sys, virtio_spec, pkgutil, importlib\n"
            "for m in pkgutil.walk_packages(virtio_spec.__path__, 'virtio_spec.'):\n"
            "    if m.name != 'virtio_spec.pytest_plugin':\n"
            "        importlib.import_module(m.name)\n"
            "print(sorted(n for n in ('pytest', '_pytest', 'hypothesis') if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_one_module_touches_the_cffi_extension():
    users = [p.relative_to(ROOT).as_posix()
             for pkg in ("vxdp", "guest", "host", "virtio_spec")
             for p in (ROOT / pkg).rglob("*.py")
             if any(n.startswith("vxdp._vxdp_core") for n in _imports(p))]
    assert users == ["vxdp/native.py"]


def test_imports_run_downhill():
    """virtio_spec imports nothing of ours; vxdp.bpf nothing of guest, host or virtio_spec."""
    rules = {"virtio_spec": ("vxdp", "guest", "host"),
             "vxdp/bpf": ("guest", "host", "virtio_spec", "vxdp.vhost_user", "vxdp.cli",
                          "vxdp.commands", "trio")}
    bad = []
    for folder, banned in rules.items():
        for p in (ROOT / folder).rglob("*.py"):
            for name in _imports(p):
                if any(name == b or name.startswith(b + ".") for b in banned):
                    bad.append(f"{p.relative_to(ROOT)} imports {name}")
    assert bad == []
