"""The host's control socket: a sans-I/O protocol (`protocol`) and a blocking client
(`client`).  The server lives at the edge, in `vxdp.runtime.control`."""

from .client import ControlClient, HostUnreachable
from .protocol import (
    MAX_REPLY,
    MAX_REQUEST,
    NEED_DATA,
    OPS,
    VERSION,
    BadMessage,
    Closed,
    Connection,
    ErrorInfo,
    Reply,
    Request,
    RequestFailed,
)

__all__ = ["MAX_REPLY", "MAX_REQUEST", "NEED_DATA", "OPS", "VERSION", "BadMessage", "Closed",
           "Connection", "ControlClient", "ErrorInfo", "HostUnreachable", "Reply", "Request",
           "RequestFailed"]
