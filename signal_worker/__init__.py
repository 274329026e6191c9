"""Adapter of the ``generate_trading_signal`` callable."""
