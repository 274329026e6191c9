"""The shared core: what two or more roles (``publisher``, ``sync_worker``, ``signal_worker``,
``accounts``) use, and nothing that belongs to one of them.

Settings, Firestore paths, the snapshot's schema, pulses, the ``user-sync`` message, event
decoding, errors, logs, the dependency container and runtime, the topology declaration, the
base-URL allowlist, the Alpaca client factory, audit, dead-lettering, Firestore helpers, the
callable protocol, the market clock and the keys' version. It imports no role package and no
tool; nothing here touches the network at import.
"""
