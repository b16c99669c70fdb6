"""vhost-user transport (QEMU docs/interop/vhost-user.rst): front-end and back-end.

Layers: `messages` (wire format, strict framing), `backend` and `frontend` (sans-I/O
protocol state machines), `events` (what the back-end tells the device), `memory`
(memfd regions, mapping, address translation), `transport` (the trio edge: sockets with
SCM_RIGHTS, eventfds, the server and the client).
"""

from .backend import Backend, BackendConfig, Vring
from .frontend import BackendRequests, Frontend, Outgoing, Reply
from .memory import BackendMemory, FrontendMemory, MemfdRegion
from .messages import (
    VHOST_USER_F_PROTOCOL_FEATURES,
    Message,
    MessageReader,
    VhostUserBackendRequest,
    VhostUserFlag,
    VhostUserProtocolFeature,
    VhostUserRequest,
)
from .transport import (
    BackendSession,
    EventFd,
    FrontendConnection,
    serve_backend,
    serve_backend_requests,
    serve_connection,
)

__all__ = [
    "VHOST_USER_F_PROTOCOL_FEATURES",
    "Backend",
    "BackendConfig",
    "BackendMemory",
    "BackendRequests",
    "BackendSession",
    "EventFd",
    "Frontend",
    "FrontendConnection",
    "FrontendMemory",
    "MemfdRegion",
    "Message",
    "MessageReader",
    "Outgoing",
    "Reply",
    "VhostUserBackendRequest",
    "VhostUserFlag",
    "VhostUserProtocolFeature",
    "VhostUserRequest",
    "Vring",
    "serve_backend",
    "serve_backend_requests",
    "serve_connection",
]
