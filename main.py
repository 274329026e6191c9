"""Every entry point, so ``functions-framework --target NAME`` (run from the repository root)
and ``gcloud functions deploy NAME --source=. --entry-point=NAME`` find any function."""

from publisher.main import on_alpaca_secret_written, on_trading_status_written, publish_user_syncs
from sync_worker.main import sync_user

__all__ = [
    "on_alpaca_secret_written",
    "on_trading_status_written",
    "publish_user_syncs",
    "sync_user",
]
