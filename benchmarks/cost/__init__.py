"""The cost benchmark: what one tenant costs per month on Google Cloud.

:mod:`~benchmarks.cost.model` prices per-sync figures (pure arithmetic);
:mod:`~benchmarks.cost.measure` measures them on the emulators and the Alpaca simulator;
:mod:`~benchmarks.cost.report` formats the model's tables; ``python -m benchmarks.cost``
(:mod:`~benchmarks.cost.__main__`) runs both. Imports point one way: measure and report →
model. ``docs/COST.md`` explains the model and the latest figures.
"""
