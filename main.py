"""Every entry point, so ``functions-framework --target NAME`` (run from the repository root)
and ``gcloud functions deploy NAME --source=. --entry-point=NAME`` find any function."""

from accounts.main import (
    connect_alpaca,
    delete_account,
    disconnect_alpaca,
    migrate_legacy_data,
    on_alpaca_secret_written,
    onboard_user,
)
from console.main import (
    admin_dead_letters,
    admin_purge_dead_letters,
    admin_replay_dead_letters,
    admin_status,
    admin_tenant,
    admin_tenants,
)
from publisher.main import (
    on_alpaca_config_written,
    on_trading_status_written,
    publish_user_syncs,
)
from signal_worker.main import generate_trading_signal
from sync_worker.main import sync_user

__all__ = [
    "admin_dead_letters",
    "admin_purge_dead_letters",
    "admin_replay_dead_letters",
    "admin_status",
    "admin_tenant",
    "admin_tenants",
    "connect_alpaca",
    "delete_account",
    "disconnect_alpaca",
    "generate_trading_signal",
    "migrate_legacy_data",
    "on_alpaca_config_written",
    "on_alpaca_secret_written",
    "on_trading_status_written",
    "onboard_user",
    "publish_user_syncs",
    "sync_user",
]
