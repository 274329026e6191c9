"""One exception tree: whether a failure is retried is decided by its class alone.

``RetryableError`` → the cloudevent function raises and Pub/Sub redelivers with backoff (and
dead-letters after the delivery limit). ``PermanentError`` → the failure is recorded, the message
is published to the dead-letter topic and acknowledged: retrying could not help.
Messages are written by this project, never copied from a response that might echo a header,
and never quote a tenant's input (a base URL, a key): they name the rule that failed.
"""

from __future__ import annotations


class AgentTraderError(Exception):
    """Base of every error the backend raises on purpose."""

    @property
    def error_class(self) -> str:
        """Stable name used in ``last_sync_error.error_class`` and dead-letter attributes."""
        return type(self).__name__


class RetryableError(AgentTraderError):
    """Transient: the same message may succeed later."""


class PermanentError(AgentTraderError):
    """Retrying the same message cannot succeed until someone changes something."""


# --- transient ---------------------------------------------------------------------------------


class AlpacaRateLimited(RetryableError):
    """Alpaca answered 429."""


class AlpacaUnavailable(RetryableError):
    """Alpaca answered 5xx."""


class AlpacaTimeout(RetryableError):
    """Alpaca did not answer within the timeout."""


class AlpacaConnectionError(RetryableError):
    """Alpaca could not be reached (DNS, refused, reset, TLS)."""


class DependencyUnavailable(RetryableError):
    """Firestore or Pub/Sub failed transiently."""


# --- permanent ---------------------------------------------------------------------------------


class MalformedMessage(PermanentError):
    """A message that cannot be decoded into the ``user-sync`` schema."""


class UnknownUser(PermanentError):
    """The message names a user that does not exist."""


class MissingKeys(PermanentError):
    """The user has no Alpaca keys stored."""


class InvalidKeys(PermanentError):
    """The stored keys have the wrong shape (missing, empty, non-string, too long)."""


class DisallowedBaseUrl(PermanentError):
    """The stored ``base_url`` is refused by :mod:`agenttrader.urls`; the message names the rule
    that failed, never the URL or its host."""


class AlpacaAuthError(PermanentError):
    """Alpaca answered 401 or 403: the keys are wrong or lack permission."""


class AlpacaRequestError(PermanentError):
    """Alpaca refused the request (other 4xx, a redirect, or a body that does not parse)."""


# --- credentials (sealed at rest) --------------------------------------------------------------


class KmsUnavailable(RetryableError):
    """The key-encryption key could not be used now: Cloud KMS unavailable, throttled, timed
    out or refusing access, or the local development KEK made to fail. Never a verdict on the
    tenant's credentials: they stay as they are and the message is retried."""


class CredentialsTampered(PermanentError):
    """Sealed credentials that do not open for this tenant and document: copied from another
    tenant's document, altered, or sealed under a key-encryption key this deployment does not
    hold. Fails closed; callers dead-letter and audit it."""
