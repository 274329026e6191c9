"""What the project's JSON log formatter writes, captured for a test's assertions."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from agenttrader.logs import CloudLoggingFormatter


@contextmanager
def json_log_lines(level: int = logging.DEBUG, logger: str | None = None) -> Iterator[io.StringIO]:
    """The lines :class:`CloudLoggingFormatter` writes while inside, from ``level`` up: every
    logger's (the root's handler; libraries' too), or only ``logger``'s (not propagated)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(CloudLoggingFormatter())
    target = logging.getLogger(logger)
    previous_level, previous_propagate = target.level, target.propagate
    target.addHandler(handler)
    target.setLevel(level)
    if logger is not None:
        target.propagate = False
    try:
        yield stream
    finally:
        target.removeHandler(handler)
        target.setLevel(previous_level)
        target.propagate = previous_propagate
