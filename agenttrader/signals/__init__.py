"""Trading signals: from a tenant's account snapshot to a stored, structured recommendation.

Rooms: ``request`` (validating what the client sends), ``portfolio`` (reading the snapshot),
``prompt`` (what the model is asked), ``schema`` (what it must answer), ``providers`` (the model
port and which provider answers), ``gemini`` and ``heuristic`` (the two providers), ``quota``
(the per-user daily limit) and ``service`` (the use case tying them together).
"""
