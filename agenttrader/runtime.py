"""What every entry point shares: logging configured once and the instance's dependency
container, built on first use (never at import), and the raw push body of the request."""

from __future__ import annotations

import logging
from typing import Any

from agenttrader import logs
from agenttrader.deps import Deps, get_deps


def deps() -> Deps:
    current = get_deps()
    logs.configure(level=logging.getLevelName(current.settings.log_level))
    return current


def raw_push_body() -> Any:
    """The JSON body of the push request being served (``None`` outside a request).

    functions-framework drops ``deliveryAttempt`` when it turns a push into a CloudEvent.
    """
    import flask

    if not flask.has_request_context():
        return None
    return flask.request.get_json(silent=True)
