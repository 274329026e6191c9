"""The operator tool, ``agenttrader`` on the command line (:mod:`operations.cli`): never deployed.

- :mod:`.hold`: leasing the messages of ``user-sync-dead-letter-hold`` without consuming them.
- :mod:`.deadletters`: dead letters decoded, filtered, listed, replayed and purged.
- :mod:`.status`: recent pulses, failing tenants, dead-letter depth and alert conditions.
- :mod:`.render`: tables, summaries, progress and JSON for the terminal.

The functions of those modules take their clients (subscriber, publisher, Firestore) and a
clock as arguments and return frozen dataclasses; only :mod:`operations.cli` builds clients
and prints.
"""
