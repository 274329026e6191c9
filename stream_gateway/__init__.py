"""The stream gateway: a long-running service holding every eligible tenant's Alpaca
trade-update websocket, spread over any number of instances.

``python -m stream_gateway`` (:mod:`.__main__`) runs one instance: the asyncio service
(:mod:`.gateway`), its health endpoint ``GET /healthz`` on ``PORT`` (:mod:`.health`). Inside:
who may stream (:mod:`.eligibility`, the roster), which buckets of tenants this instance holds
(:mod:`.leases`: session leases in Firestore with fencing), one task per tenant's connection
(:mod:`.connection`) speaking Alpaca's protocol (:mod:`.protocol`) with backoff
(:mod:`.backoff`), the tenant's credentials (:mod:`.credentials`), and what an update does:
the order's latest state in ``users/{uid}/orders/{order_id}`` (:mod:`.orders`) and a coalesced
``user-sync`` (:mod:`.syncs`).
"""
