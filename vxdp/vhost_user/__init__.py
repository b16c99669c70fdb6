"""vhost-user transport (QEMU docs/interop/vhost-user.rst): front-end and back-end.

Layers: `messages` (wire format, strict framing), `backend` and `frontend` (sans-I/O
protocol state machines), `events` (what the back-end tells the device), `memory`
(memfd regions, mapping, address translation), `transport` (the trio edge: sockets with
SCM_RIGHTS, eventfds, the server and the client).

Spoken: front-end requests GET/SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE,
SET_VRING_NUM/ADDR/BASE, GET_VRING_BASE, SET_VRING_KICK/CALL/ERR, GET/SET_PROTOCOL_FEATURES,
GET_QUEUE_NUM, SET_VRING_ENABLE, SET_BACKEND_REQ_FD, GET/SET_CONFIG, RESET_DEVICE,
SET/GET_STATUS, SET_DEVICE_STATE_FD and CHECK_DEVICE_STATE (a back-end's state moved
through a pipe for migration: `save_device_state`, `load_device_state`); back-end request
CONFIG_CHANGE_MSG on the back-end request channel.  Protocol features: MQ, REPLY_ACK,
BACKEND_REQ, CONFIG, RESET_DEVICE, STATUS, DEVICE_STATE (which of them a back-end offers
is its `BackendConfig`'s choice).
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
