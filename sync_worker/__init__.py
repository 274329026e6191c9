"""The sync worker role: one tenant's sync under the retry contract (:mod:`.worker`), how its
result is written (:mod:`.record`), what a sync proves or refutes about the tenant's keys
(:mod:`.key_proof`), the per-instance key cache (:mod:`.key_cache`) and wiring
(:mod:`.instance`); the ``sync_user`` entry point in :mod:`.main`."""
