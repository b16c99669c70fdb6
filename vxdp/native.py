"""The one module that talks to the cffi extension's `lib` and `ffi`.

Everything else in vxdp, guest and host calls the thin wrappers here: each checks lengths
and types before the call and turns a negative return code into an exception, so no other
module has to know how the C core reports errors.

`VXDP_CORE=asan` selects the sanitizer build (`make test-asan` builds and preloads it).
"""

from __future__ import annotations

import os

from vxdp.errors import CoreError

if os.environ.get("VXDP_CORE") == "asan":
    from vxdp._vxdp_core_asan import ffi, lib
else:
    from vxdp._vxdp_core import ffi, lib

ABI = 1


def core_version() -> str:
    """Version string compiled into the C core."""
    return ffi.string(lib.vxdp_core_version()).decode()


def check_abi() -> None:
    """Refuse to run against a core built from other headers than this module expects."""
    got = lib.vxdp_core_abi()
    if got != ABI:
        raise CoreError(f"packet core ABI {got}, this vxdp expects {ABI}: rebuild with `make build`")


check_abi()
