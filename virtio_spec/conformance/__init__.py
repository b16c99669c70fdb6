"""virtio conformance checks, runnable against any implementation through small adapters.

`adapter` defines what the checks drive (`DeviceUnderTest`, `DriverUnderTest`, the
`Transport` between them); `device_checks`, `net_device_checks`, `offload_checks` (the
XDP offload, docs/offload-spec.md), `driver_checks` and `driver_ring_checks` hold one
plain function per normative clause, registered in
`registry.CLAUSES`; `report` runs a selection and renders pass / fail / not-applicable
per clause as a table or JSON.
Nothing here imports a test framework or anything of vxdp outside `virtio_spec`.
"""

from . import device_checks as device_checks
from . import driver_checks as driver_checks
from . import driver_ring_checks as driver_ring_checks
from . import net_device_checks as net_device_checks
from . import offload_checks as offload_checks
from .adapter import (
    CONFIG_NOTIFICATION,
    DeviceFactory,
    DeviceUnderTest,
    DriverFactory,
    DriverUnderTest,
    NotApplicable,
    Transport,
    TransportRefused,
    Unsupported,
)
from .recorder import RecordingDevice
from .registry import CLAUSES, Clause, select
from .report import Report, Result, merge, run, run_clause
from .session import DriverSession, ReferenceDriver, SetupError

__all__ = [
    "CLAUSES",
    "CONFIG_NOTIFICATION",
    "Clause",
    "DeviceFactory",
    "DeviceUnderTest",
    "DriverFactory",
    "DriverSession",
    "DriverUnderTest",
    "NotApplicable",
    "RecordingDevice",
    "ReferenceDriver",
    "Report",
    "Result",
    "SetupError",
    "Transport",
    "TransportRefused",
    "Unsupported",
    "device_checks",
    "driver_checks",
    "driver_ring_checks",
    "merge",
    "net_device_checks",
    "offload_checks",
    "run",
    "run_clause",
    "select",
]
