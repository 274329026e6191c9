"""The Firebase callable protocol, once, for every callable function: :mod:`.errors` (what a
client may be answered), :mod:`.id_tokens` (verifying the caller's Firebase ID token) and
:mod:`.protocol` (the HTTP wrapper turning a plain handler into a callable)."""

from agenttrader.callable.errors import INTERNAL_MESSAGE, CallableError, Status, invalid_argument
from agenttrader.callable.protocol import (
    CallContext,
    Handler,
    HttpFunction,
    fields_of,
    https_callable,
    require_string,
)

__all__ = [
    "INTERNAL_MESSAGE",
    "CallContext",
    "CallableError",
    "Handler",
    "HttpFunction",
    "Status",
    "fields_of",
    "https_callable",
    "invalid_argument",
    "require_string",
]
