"""The virtio specification (1.3 numbering) as data and rules; imports nothing else of vxdp.

The names most callers need are re-exported here; every module keeps its full list in
its own `__all__` (e.g. `virtio_spec.ctrl` for each control payload struct).
"""

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

# errors
__all__: list[str] = [
    "FeatureError",
    "LocalProtocolError",
    "MemoryAccessError",
    "RemoteProtocolError",
    "RingError",
    "VirtioError",
]

# features
__all__ += [
    "FEATURE_RULES",
    "FeatureRule",
    "Violation",
    "VirtioFeature",
    "VirtioNetFeature",
    "bits_of",
    "check_accept",
    "check_offer",
    "describe",
    "ensure_valid_accept",
    "ensure_valid_offer",
    "mask_of",
    "negotiate",
]

# status
__all__ += [
    "DRIVER_INIT_SEQUENCE",
    "DeviceState",
    "DeviceStatus",
    "DeviceStatusMachine",
    "StatusEffect",
    "StatusOutcome",
]

# structs
__all__ += [
    "MAX_QUEUE_SIZE",
    "VIRTIO_NET_CONFIG_OFFSETS",
    "VIRTIO_NET_CONFIG_SIZE",
    "RingEventFlags",
    "VirtqAvailFlag",
    "VirtqDescFlag",
    "VirtqUsedFlag",
    "avail_ring_size",
    "desc_table_size",
    "net_hdr_size",
    "packed_ring_size",
    "pvirtq_desc",
    "pvirtq_event_suppress",
    "used_ring_size",
    "virtio_net_config",
    "virtio_net_hdr",
    "virtio_net_hdr_hash",
    "virtq_avail",
    "virtq_desc",
    "virtq_used",
    "virtq_used_elem",
]

# ctrl
__all__ += [
    "VIRTIO_NET_ERR",
    "VIRTIO_NET_OK",
    "VirtioNetCtrlAck",
    "VirtioNetCtrlClass",
    "build_ctrl",
    "check_command_allowed",
    "parse_ctrl",
    "virtio_net_ctrl",
]

# offload
__all__ += [
    "PROFILES",
    "VIRTIO_NET_CTRL_EBPF",
    "VIRTIO_NET_CTRL_EBPF_RFC",
    "VirtioNetBpfMapCmd",
    "VirtioNetBpfProgCmd",
    "VirtioNetCtrlEbpf",
    "XdpCapabilities",
    "ebpf_ctrl_class",
    "ebpf_result_struct",
    "profile",
]

# Ring engines and their helpers (memory, split, packed, notify, testing) follow:
# one `from .module import (...)` block each, then `__all__ += [...]`.

from .chain import MAX_CHAIN_BYTES, Chain, Segment  # noqa: E402
from .memory import GuestAllocator, GuestMemory, MemoryRegion  # noqa: E402
from .notify import (  # noqa: E402
    need_event,
    packed_need_event,
    packed_should_notify,
    split_should_notify,
)
from .packed import PackedDeviceQueue, PackedDriverQueue  # noqa: E402
from .split import SplitDeviceQueue, SplitDriverQueue, UsedElem  # noqa: E402

# rings (driver-side mocks live in `virtio_spec.testing`, not re-exported)
__all__ += [
    "MAX_CHAIN_BYTES",
    "Chain",
    "GuestAllocator",
    "GuestMemory",
    "MemoryRegion",
    "PackedDeviceQueue",
    "PackedDriverQueue",
    "Segment",
    "SplitDeviceQueue",
    "SplitDriverQueue",
    "UsedElem",
    "need_event",
    "packed_need_event",
    "packed_should_notify",
    "split_should_notify",
]
