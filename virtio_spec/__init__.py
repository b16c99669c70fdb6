"""The virtio specification (1.3 numbering) as data and rules; imports nothing else of vxdp.

The names most callers need are re-exported here; every module keeps its full list in
its own `__all__` (e.g. `virtio_spec.ctrl` for each control payload struct).

A re-exported name is imported on first use (PEP 562), so `import virtio_spec.offload`
costs that module and what it imports, not every module of the package (`vxdp verify`
needs the offload profiles, not the ring engines).
"""

# ruff: noqa: F401 - the imports under TYPE_CHECKING give the re-exports their types;
# at run time the names resolve through __getattr__ below.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .chain import (
        MAX_CHAIN_BYTES,
        Chain,
        Segment,
    )
    from .ctrl import (
        VIRTIO_NET_ERR,
        VIRTIO_NET_OK,
        VirtioNetCtrlAck,
        VirtioNetCtrlClass,
        build_ctrl,
        check_command_allowed,
        parse_ctrl,
        virtio_net_ctrl,
    )
    from .errors import (
        FeatureError,
        LocalProtocolError,
        MemoryAccessError,
        RemoteProtocolError,
        RingError,
        VirtioError,
    )
    from .features import (
        FEATURE_RULES,
        FeatureRule,
        Violation,
        VirtioFeature,
        VirtioNetFeature,
        bits_of,
        check_accept,
        check_offer,
        describe,
        ensure_valid_accept,
        ensure_valid_offer,
        mask_of,
        negotiate,
    )
    from .memory import (
        GuestAllocator,
        GuestMemory,
        MemoryRegion,
    )
    from .notify import (
        need_event,
        packed_need_event,
        packed_should_notify,
        split_should_notify,
    )
    from .offload import (
        PROFILES,
        VIRTIO_NET_CTRL_EBPF,
        VIRTIO_NET_CTRL_EBPF_RFC,
        VirtioNetBpfMapCmd,
        VirtioNetBpfProgCmd,
        VirtioNetCtrlEbpf,
        XdpCapabilities,
        ebpf_ctrl_class,
        ebpf_result_struct,
        profile,
    )
    from .packed import (
        PackedDeviceQueue,
        PackedDriverQueue,
    )
    from .split import (
        SplitDeviceQueue,
        SplitDriverQueue,
        UsedElem,
    )
    from .status import (
        DRIVER_INIT_SEQUENCE,
        DeviceState,
        DeviceStatus,
        DeviceStatusMachine,
        StatusEffect,
        StatusOutcome,
    )
    from .structs import (
        MAX_QUEUE_SIZE,
        VIRTIO_NET_CONFIG_OFFSETS,
        VIRTIO_NET_CONFIG_SIZE,
        RingEventFlags,
        VirtqAvailFlag,
        VirtqDescFlag,
        VirtqUsedFlag,
        avail_ring_size,
        desc_table_size,
        net_hdr_size,
        packed_ring_size,
        pvirtq_desc,
        pvirtq_event_suppress,
        used_ring_size,
        virtio_net_config,
        virtio_net_hdr,
        virtio_net_hdr_hash,
        virtq_avail,
        virtq_desc,
        virtq_used,
        virtq_used_elem,
    )

#: The re-exported names, by the module that defines them (the ring engines' driver-side
#: mocks live in `virtio_spec.testing` and are not re-exported).
_EXPORTS: dict[str, tuple[str, ...]] = {
    "ctrl": (
        "VIRTIO_NET_ERR", "VIRTIO_NET_OK", "VirtioNetCtrlAck", "VirtioNetCtrlClass",
        "build_ctrl", "check_command_allowed", "parse_ctrl", "virtio_net_ctrl",
    ),
    "errors": (
        "FeatureError", "LocalProtocolError", "MemoryAccessError", "RemoteProtocolError",
        "RingError", "VirtioError",
    ),
    "features": (
        "FEATURE_RULES", "FeatureRule", "Violation", "VirtioFeature", "VirtioNetFeature",
        "bits_of", "check_accept", "check_offer", "describe", "ensure_valid_accept",
        "ensure_valid_offer", "mask_of", "negotiate",
    ),
    "offload": (
        "PROFILES", "VIRTIO_NET_CTRL_EBPF", "VIRTIO_NET_CTRL_EBPF_RFC", "VirtioNetBpfMapCmd",
        "VirtioNetBpfProgCmd", "VirtioNetCtrlEbpf", "XdpCapabilities", "ebpf_ctrl_class",
        "ebpf_result_struct", "profile",
    ),
    "status": (
        "DRIVER_INIT_SEQUENCE", "DeviceState", "DeviceStatus", "DeviceStatusMachine",
        "StatusEffect", "StatusOutcome",
    ),
    "structs": (
        "MAX_QUEUE_SIZE", "VIRTIO_NET_CONFIG_OFFSETS", "VIRTIO_NET_CONFIG_SIZE",
        "RingEventFlags", "VirtqAvailFlag", "VirtqDescFlag", "VirtqUsedFlag", "avail_ring_size",
        "desc_table_size", "net_hdr_size", "packed_ring_size", "pvirtq_desc",
        "pvirtq_event_suppress", "used_ring_size", "virtio_net_config", "virtio_net_hdr",
        "virtio_net_hdr_hash", "virtq_avail", "virtq_desc", "virtq_used", "virtq_used_elem",
    ),
    "chain": ("MAX_CHAIN_BYTES", "Chain", "Segment"),
    "memory": ("GuestAllocator", "GuestMemory", "MemoryRegion"),
    "notify": (
        "need_event", "packed_need_event", "packed_should_notify", "split_should_notify",
    ),
    "packed": ("PackedDeviceQueue", "PackedDriverQueue"),
    "split": ("SplitDeviceQueue", "SplitDriverQueue", "UsedElem"),
}
_MODULE_OF = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = list(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """A re-exported name, imported from its module on first use."""
    mod = _MODULE_OF.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
