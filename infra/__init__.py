"""The production deployment, rendered from the same declarations the local stack applies.

``python -m infra plan`` prints every command a deployment runs (no credentials needed, the
same input always gives the same output); ``python -m infra apply`` checks the preconditions,
then runs each step idempotently: check, create what is missing, update what drifted, skip the
rest. See docs/DEPLOY.md.

- :mod:`infra.model`: steps, checks, placeholders, shell rendering (no Google specifics).
- :mod:`infra.resources`: the functions, their service accounts, environment, required APIs.
- :mod:`infra.iam`: the least-privilege grants, derived from the topology and the functions.
- :mod:`infra.indexes`: the Firestore indexes the code's queries need.
- :mod:`infra.source`: what ``--source=.`` uploads, and its digest.
- :mod:`infra.requirements`: ``requirements.txt``, generated from ``uv.lock``.
- :mod:`infra.plan`: settings + topology + resources -> an ordered :class:`~infra.model.Plan`.
- :mod:`infra.apply`: preconditions and the idempotent executor (the command runner injected).
"""
