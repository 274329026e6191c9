"""The ``generate_trading_signal`` use case: snapshot → prompt → quota slot → model → stored signal.

Nothing is stored unless a valid signal came back; any failure after the slot was reserved
gives the slot back. Model failures reach the client only as ``UNAVAILABLE`` (retry later) or
``INTERNAL`` (nothing more), never with the provider's error text.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from agenttrader.callable import INTERNAL_MESSAGE, CallableError, Status
from agenttrader.logs import get_logger
from agenttrader.paths import snapshot_doc, trading_signals_collection
from agenttrader.snapshot import is_placeholder
from signal_worker.model import ModelFailed, ModelUnavailable, SignalInput, SignalProvider
from signal_worker.portfolio import Portfolio
from signal_worker.prompt import build_prompt
from signal_worker.quota import DailyQuota, Reservation
from signal_worker.request import SignalRequest
from signal_worker.schema import InvalidSignal, TradingSignal

if TYPE_CHECKING:
    from google.cloud import firestore

_log = get_logger("signal_worker")

NO_SNAPSHOT = (
    "no account snapshot yet: connect your Alpaca account (write your keys) and wait for the "
    "first sync"
)


class SignalService:
    def __init__(self, db: firestore.Client, provider: SignalProvider, quota: DailyQuota) -> None:
        self.db = db
        self.provider = provider
        self.quota = quota

    def generate(self, uid: str, request: SignalRequest) -> dict[str, Any]:
        """Returns ``{id, response, snapshotPath}``; ``response`` is the stored JSON text."""
        from google.cloud import firestore

        snapshot_path = snapshot_doc(uid)
        snapshot = self.db.document(snapshot_path).get()
        data = snapshot.to_dict() if snapshot.exists else None
        if data is None or is_placeholder(data):
            raise CallableError(Status.FAILED_PRECONDITION, NO_SNAPSHOT)
        portfolio = Portfolio.from_snapshot(data)
        prompt = build_prompt(portfolio, request.market_conditions)

        reservation = self.quota.reserve(uid)
        try:
            reply = self.provider.generate(
                SignalInput(prompt, portfolio, request.market_conditions)
            )
            signal = TradingSignal.from_json(reply.text)
            body = {**signal.to_dict(), "provider": reply.provider}
            if reply.notice:
                body["notice"] = reply.notice
            response = json.dumps(body, ensure_ascii=False)
            ref = self.db.collection(trading_signals_collection(uid)).document()
            ref.set(
                {
                    "createdAt": firestore.SERVER_TIMESTAMP,
                    "userId": uid,
                    "response": response,
                    "prompt": prompt,
                    "vertex": reply.usage(),
                }
            )
        except ModelUnavailable as err:
            self._release(reservation)
            raise CallableError(
                Status.UNAVAILABLE, "the signal model is temporarily unavailable; retry later"
            ) from err
        except (ModelFailed, InvalidSignal) as err:
            self._release(reservation)
            _log.error("signal model failed", fields={"reason": str(err)}, uid=uid)
            raise CallableError(Status.INTERNAL, INTERNAL_MESSAGE) from err
        except BaseException:
            self._release(reservation)
            raise
        _log.info(
            "trading signal stored",
            fields={"action": signal.action.value, "latency_ms": reply.latency_ms},
            uid=uid,
            provider=reply.provider,
        )
        return {"id": ref.id, "response": response, "snapshotPath": snapshot_path}

    def _release(self, reservation: Reservation) -> None:
        """Give the slot back; a failure here must not hide the error being raised."""
        try:
            self.quota.release(reservation)
        except Exception:  # noqa: BLE001 - logged; the original error is what the caller sees
            _log.exception("could not release a signal quota slot", uid=reservation.uid)
