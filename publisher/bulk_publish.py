"""Publishing a whole pulse: ``user-sync`` messages 1,000 per request from a few threads.

Each request is built as a raw protobuf and sent through the publisher client's own transport
(``PublisherClient.api``, with its retry settings and, locally, the emulator switch), without
the client library's per-message futures, batching thread and proto-plus wrappers.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from agenttrader.logs import get_logger
from agenttrader.messages import SyncRequest
from agenttrader.topology import USER_SYNC

if TYPE_CHECKING:
    from agenttrader.deps import Deps

log = get_logger(__name__)

MESSAGES_PER_REQUEST = 1_000
"""Pub/Sub's maximum per publish request (and far below its 10 MB)."""
THREADS = 4
REQUEST_TIMEOUT_SECONDS = 60.0


def publish_all(
    deps: Deps,
    requests: Sequence[SyncRequest],
    *,
    on_progress: Callable[[int], None] | None = None,
    per_request: int = MESSAGES_PER_REQUEST,
) -> int:
    """Publish every request to ``user-sync``, ``per_request`` messages per publish request
    (at most :data:`MESSAGES_PER_REQUEST`); returns how many were not published.

    ``on_progress(n)`` is called on this thread each time the first ``n`` requests are all
    published (``n`` grows; it stops growing at the first request not published), so a caller
    can record how far a fan-out got."""
    from google.pubsub_v1.types import PublishRequest, PubsubMessage

    if not requests:
        return 0
    if not 1 <= per_request <= MESSAGES_PER_REQUEST:
        raise ValueError(f"per_request must be 1..{MESSAGES_PER_REQUEST}, got {per_request}")
    topic = deps.topic_path(USER_SYNC)
    api: Any = deps.publisher.api
    message = PubsubMessage.pb()

    def send(start: int) -> int:
        chunk = requests[start : start + per_request]
        request = PublishRequest.pb()(topic=topic)
        for sync in chunk:
            request.messages.append(message(data=sync.to_bytes(), attributes=sync.attributes()))
        try:
            response = api.publish(
                request=PublishRequest.wrap(request), timeout=REQUEST_TIMEOUT_SECONDS
            )
        except Exception as err:  # noqa: BLE001 - counted and reported by the caller
            log.warning(f"a publish request of {len(chunk)} messages failed: {type(err).__name__}")
            return len(chunk)
        return len(chunk) - len(response.message_ids)

    starts = range(0, len(requests), per_request)
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=THREADS) as pool:
        # Waited for in order: when one is done, so is the prefix before it.
        for start, future in zip(starts, [pool.submit(send, s) for s in starts], strict=True):
            missing = future.result()
            if missing == 0 and failed == 0 and on_progress is not None:
                on_progress(min(start + per_request, len(requests)))
            failed += missing
    return failed
