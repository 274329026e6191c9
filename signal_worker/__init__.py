"""The signal role: ``generate_trading_signal`` (entry point in :mod:`.main`), its use case
(:mod:`.service`: snapshot → prompt → quota slot → model → stored signal) and its parts: the
request, the portfolio read from the snapshot, the prompt, the daily quota, the model port, the
answer's schema and the providers (Gemini on Vertex AI, the labelled offline heuristic)."""
