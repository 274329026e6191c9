"""The admin console: admin-only callables (:mod:`.main`) and the operator's use cases they share
with the ``agenttrader`` command line (one implementation, two front ends). The web page itself
lives in ``console/web/`` (Firebase Hosting; never uploaded with the functions).

- :mod:`.hold`: leasing the messages of ``user-sync-dead-letter-hold`` without consuming them.
- :mod:`.deadletters`: dead letters decoded, filtered, listed, grouped, replayed and purged.
- :mod:`.status`: recent pulses, failing tenants, dead-letter depth and the alert conditions.
- :mod:`.tenants`: tenants paged server-side by state or search, and one tenant's detail.
- :mod:`.documents`: the JSON of all of the above, for ``--json`` and for the callables.
- :mod:`.requests`: the callables' arguments, validated into the use cases' types.

The use cases take their clients (subscriber, publisher, Firestore) and a clock as arguments
and return frozen dataclasses; only :mod:`.main` (and the command line) build clients.
"""
