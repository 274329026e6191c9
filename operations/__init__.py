"""The operator tool, ``agenttrader`` on the command line (:mod:`operations.cli`): never deployed.

The work is done by the console package's use cases (:mod:`console.deadletters`,
:mod:`console.status`, their JSON in :mod:`console.documents`), which the admin console's
callables run too: one implementation, two front ends. This package only parses arguments,
builds clients and renders for the terminal (:mod:`.render`).
"""
