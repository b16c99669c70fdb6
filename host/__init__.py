"""The host side: a sans-I/O virtio-net device model (no trio, no sockets, no clocks)."""

from .config import PROFILES, ConfigSpace, DeviceProfile, get_profile
from .ctrl import ControlQueue, CtrlOutcome, CtrlReply, CtrlRequest, Handler, NetState
from .device import CtrlOwner, Device, QueueRole, QueueSlot
from .events import (
    ChainPopped,
    ChainUsed,
    ConfigInterrupt,
    CtrlHandled,
    DeviceEvent,
    DeviceNeedsReset,
    FeaturesWritten,
    FrameDeferred,
    FrameDelivered,
    FrameDropped,
    FrameTransmitted,
    Interrupt,
    KickIgnored,
    MoreAvailable,
    QueueReady,
    StatusChanged,
)
from .rxfilter import RxFilter, Verdict

__all__ = [
    "PROFILES",
    "ChainPopped",
    "ChainUsed",
    "ConfigInterrupt",
    "ConfigSpace",
    "ControlQueue",
    "CtrlHandled",
    "CtrlOutcome",
    "CtrlOwner",
    "CtrlReply",
    "CtrlRequest",
    "Device",
    "DeviceEvent",
    "DeviceNeedsReset",
    "DeviceProfile",
    "FeaturesWritten",
    "FrameDeferred",
    "FrameDelivered",
    "FrameDropped",
    "FrameTransmitted",
    "Handler",
    "Interrupt",
    "KickIgnored",
    "MoreAvailable",
    "NetState",
    "QueueReady",
    "QueueRole",
    "QueueSlot",
    "RxFilter",
    "StatusChanged",
    "Verdict",
    "get_profile",
]
