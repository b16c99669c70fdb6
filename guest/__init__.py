"""The guest side: a sans-I/O virtio-net driver model (no trio, no sockets, no clocks)."""

from .ctrl import CommandRefused, CtrlCommand
from .driver import MIN_RX_BUFFER, SUPPORTED_FEATURES, Driver
from .events import (
    ChainAdded,
    ConfigChanged,
    CtrlCompleted,
    DeviceError,
    DriverEvent,
    DriverReady,
    FeaturesNegotiated,
    FrameReceived,
    InitFailed,
    KickDecision,
    TxCompleted,
    UsedReaped,
)
from .init import InitEvent, InitState
from .queues import Allocator, DriverQueue, Reaped
from .transport import (
    EnableQueue,
    Kick,
    ReadConfig,
    ReadDeviceFeatures,
    ReadQueueMax,
    ReadStatus,
    Request,
    SetupQueue,
    WriteDriverFeatures,
    WriteStatus,
)

__all__ = [
    "MIN_RX_BUFFER",
    "SUPPORTED_FEATURES",
    "Allocator",
    "ChainAdded",
    "CommandRefused",
    "ConfigChanged",
    "CtrlCommand",
    "CtrlCompleted",
    "DeviceError",
    "Driver",
    "DriverEvent",
    "DriverQueue",
    "DriverReady",
    "EnableQueue",
    "FeaturesNegotiated",
    "FrameReceived",
    "InitEvent",
    "InitFailed",
    "InitState",
    "Kick",
    "KickDecision",
    "ReadConfig",
    "ReadDeviceFeatures",
    "ReadQueueMax",
    "ReadStatus",
    "Reaped",
    "Request",
    "SetupQueue",
    "TxCompleted",
    "UsedReaped",
    "WriteDriverFeatures",
    "WriteStatus",
]
