"""The Firebase callable protocol, once, for every callable function.

A handler is a plain function ``handler(ctx: CallContext, data) -> result``; :func:`https_callable`
turns it into a functions-framework HTTP function speaking the protocol the Firebase client SDKs
speak (``POST {"data": ...}`` with ``Authorization: Bearer <ID token>`` → ``{"result": ...}`` or
``{"error": {"status", "message"}}``). The wrapper keeps the handler reachable as ``__wrapped__``
so tests can call it without HTTP.

What reaches a client is only what this project wrote: a :class:`CallableError` raised on purpose
keeps its status and message; any other exception is logged (structured, redacted) and answered
``INTERNAL`` / ``"internal error"``, never with its text or a stack trace.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias, overload

from agenttrader.callable.errors import INTERNAL_MESSAGE, CallableError, Status, invalid_argument
from agenttrader.errors import RetryableError
from agenttrader.logs import get_logger
from agenttrader.paths import validate_uid

if TYPE_CHECKING:
    import flask

    from agenttrader.callable.id_tokens import TokenVerifier

_log = get_logger("agenttrader.callable")

MAX_REQUEST_BYTES = 64 * 1024
"""Far above any valid call (the largest, ``marketConditions``, is capped at a few KiB)."""

ALLOWED_HEADERS = (
    "Authorization, Content-Type, X-Firebase-AppCheck, X-Firebase-Instance-ID-Token, "
    "Firebase-Instance-ID-Token"
)
"""What the Firebase JS SDK may send; a preflight that does not allow one fails in browsers."""

PREFLIGHT_MAX_AGE_SECONDS = 3600


@dataclass(frozen=True)
class CallContext:
    """Who is calling, from a verified Firebase ID token."""

    uid: str
    email: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """Every claim of the token; custom claims (``admin``) sit at the top level."""

    @property
    def sign_in_provider(self) -> str | None:
        """``firebase.sign_in_provider``: ``password``, ``google.com``, ``anonymous``…"""
        firebase = self.claims.get("firebase")
        provider = firebase.get("sign_in_provider") if isinstance(firebase, Mapping) else None
        return provider if isinstance(provider, str) else None

    @property
    def email_verified(self) -> bool:
        """Only a boolean ``true`` claim, and only with an email."""
        return self.email is not None and self.claims.get("email_verified") is True

    @property
    def is_admin(self) -> bool:
        """Only a boolean ``true``: a claim of ``"true"`` or ``1`` grants nothing (as in
        ``firestore.rules``)."""
        return self.claims.get("admin") is True

    def require_admin(self) -> None:
        if not self.is_admin:
            raise CallableError(Status.PERMISSION_DENIED, "this operation requires the admin role")

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> CallContext:
        uid = claims.get("uid") or claims.get("sub")
        if not isinstance(uid, str) or not uid:
            raise CallableError(Status.UNAUTHENTICATED, "the ID token names no user")
        try:
            validate_uid(uid)
        except ValueError:
            # Firebase allows uids (custom tokens) no Firestore document can be named by.
            raise CallableError(
                Status.PERMISSION_DENIED, "this account's user id cannot hold tenant data"
            ) from None
        email = claims.get("email")
        return cls(uid=uid, email=email if isinstance(email, str) else None, claims=dict(claims))


# --- validation helpers ------------------------------------------------------------------------


def fields_of(
    data: Any, *, allowed: Collection[str], required: Collection[str] = ()
) -> dict[str, Any]:
    """``data`` as a dict of known fields: ``null`` reads as ``{}`` (``httpsCallable(fn)()``
    sends it), unknown fields and missing required ones are ``INVALID_ARGUMENT``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise invalid_argument("data", "must be an object")
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        names = ", ".join(name[:64] for name in unknown[:5])
        raise CallableError(
            Status.INVALID_ARGUMENT,
            f"unknown field(s): {names}",
            details={"field": unknown[0][:64], "unknown": [name[:64] for name in unknown[:5]]},
        )
    for name in required:
        if name not in data or data[name] is None:
            raise invalid_argument(name, "is required")
    return data


def require_string(value: Any, field_name: str, *, max_length: int, min_length: int = 1) -> str:
    """A string of ``min_length``..``max_length`` characters, else ``INVALID_ARGUMENT``."""
    if not isinstance(value, str):
        raise invalid_argument(field_name, "must be a string")
    if not min_length <= len(value) <= max_length:
        raise invalid_argument(field_name, f"must be {min_length} to {max_length} characters long")
    return value


# --- the HTTP adapter --------------------------------------------------------------------------

Handler: TypeAlias = Callable[[CallContext, Any], Any]
HttpFunction: TypeAlias = Callable[["flask.Request"], "flask.Response"]


@overload
def https_callable(handler: Handler, /) -> HttpFunction: ...


@overload
def https_callable(
    *,
    tenant: bool = False,
    verifier: TokenVerifier | None = None,
    max_request_bytes: int = MAX_REQUEST_BYTES,
) -> Callable[[Handler], HttpFunction]: ...


def https_callable(
    handler: Handler | None = None,
    /,
    *,
    tenant: bool = False,
    verifier: TokenVerifier | None = None,
    max_request_bytes: int = MAX_REQUEST_BYTES,
) -> HttpFunction | Callable[[Handler], HttpFunction]:
    """Decorate a handler into a callable HTTP function (named like the handler).

    ``tenant=True``: the handler runs only for an onboarded caller who passes the tenant policy
    (:func:`agenttrader.callable.tenancy.require_tenant`, with the instance's Firestore and
    settings); every tenant callable says so here, so the check lives in one place.
    ``verifier`` replaces the ID-token check (tests); by default
    :func:`agenttrader.callable.id_tokens.get_token_verifier` is asked on each call, so a replaced
    :class:`~agenttrader.deps.Deps` or verifier is honoured.
    """

    def wrap(fn: Handler) -> HttpFunction:
        name = fn.__name__
        guarded = _tenants_only(fn) if tenant else fn

        @functools.wraps(fn)
        def http_function(request: flask.Request) -> flask.Response:
            return _serve(request, guarded, name, verifier, max_request_bytes)

        return http_function

    return wrap(handler) if handler is not None else wrap


def _tenants_only(handler: Handler) -> Handler:
    def guarded(ctx: CallContext, data: Any) -> Any:
        from agenttrader.callable.tenancy import TenantPolicy, require_tenant
        from agenttrader.deps import get_deps

        deps = get_deps()
        require_tenant(ctx, deps.firestore, TenantPolicy.from_settings(deps.settings))
        return handler(ctx, data)

    return guarded


@dataclass(frozen=True)
class _Outcome:
    http_status: int
    payload: bytes
    label: str
    """``OK`` or the error status, for the log line."""
    headers: Mapping[str, str]
    uid: str | None


def _serve(
    request: flask.Request,
    handler: Handler,
    name: str,
    verifier: TokenVerifier | None,
    max_request_bytes: int,
) -> flask.Response:
    origin = request.headers.get("Origin")
    if request.method == "OPTIONS":
        return _preflight(origin)
    started = time.monotonic()
    outcome = _call(request, handler, name, verifier, max_request_bytes)
    _log.info(
        f"{name} answered {outcome.label}",
        fields={"latency_ms": round((time.monotonic() - started) * 1000, 1)},
        function=name,
        uid=outcome.uid,
        status=outcome.label,
    )
    return _response(outcome.payload, outcome.http_status, origin, outcome.headers)


def _call(
    request: flask.Request,
    handler: Handler,
    name: str,
    verifier: TokenVerifier | None,
    max_request_bytes: int,
) -> _Outcome:
    uid: str | None = None
    try:
        data = _decode(request, max_request_bytes)
        ctx = _authenticate(request, verifier)
        uid = ctx.uid
        return _Outcome(200, _encode({"result": handler(ctx, data)}), "OK", {}, uid)
    except CallableError as err:
        failure = err
    except Exception as exc:  # noqa: BLE001 - the one place an unexpected failure becomes INTERNAL
        failure = _unexpected(exc, name, uid)
    return _Outcome(
        failure.http_status, _encode(failure.body()), failure.status.value, failure.headers, uid
    )


def _unexpected(exc: Exception, name: str, uid: str | None) -> CallableError:
    """Log ``exc`` (the one being handled); the client learns nothing but that it failed.

    Firestore answering "unavailable", "deadline exceeded" or "aborted" (transaction contention),
    and any ``RetryableError`` (a dependency down, a document under sustained contention), is
    worth a retry, so it is ``UNAVAILABLE``; anything else is a bug or an outage we do not
    describe to clients.
    """
    from google.api_core import exceptions as gexc

    transient = (
        gexc.ServiceUnavailable,
        gexc.DeadlineExceeded,
        gexc.Aborted,
        gexc.TooManyRequests,
        RetryableError,
    )
    if isinstance(exc, transient):
        _log.warning(
            f"{name}: dependency unavailable ({type(exc).__name__})", function=name, uid=uid
        )
        return CallableError(Status.UNAVAILABLE, "service temporarily unavailable; retry later")
    _log.exception(f"{name} failed", function=name, uid=uid)
    return CallableError(Status.INTERNAL, INTERNAL_MESSAGE)


def _decode(request: flask.Request, max_request_bytes: int) -> Any:
    """The ``data`` of a well-formed callable request, else ``INVALID_ARGUMENT``."""
    if request.method != "POST":
        raise CallableError(
            Status.INVALID_ARGUMENT,
            "request method must be POST",
            http_status=405,
            headers={"Allow": "POST, OPTIONS"},
        )
    if request.mimetype != "application/json":
        raise CallableError(Status.INVALID_ARGUMENT, "content type must be application/json")
    too_large = CallableError(
        Status.INVALID_ARGUMENT,
        f"request body exceeds {max_request_bytes} bytes",
        http_status=413,
    )
    if request.content_length is not None and request.content_length > max_request_bytes:
        raise too_large
    # Read at most one byte past the limit: a chunked body without a length cannot exhaust memory.
    raw = request.stream.read(max_request_bytes + 1)
    if len(raw) > max_request_bytes:
        raise too_large
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as err:  # RecursionError: absurdly nested arrays
        raise CallableError(Status.INVALID_ARGUMENT, "request body is not valid JSON") from err
    if not isinstance(body, dict) or "data" not in body:
        raise CallableError(Status.INVALID_ARGUMENT, 'request body must be an object with "data"')
    return body["data"]


def _authenticate(request: flask.Request, verifier: TokenVerifier | None) -> CallContext:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise CallableError(Status.UNAUTHENTICATED, "a Firebase ID token is required")
    if verifier is None:
        from agenttrader.callable.id_tokens import get_token_verifier

        verifier = get_token_verifier()
    return CallContext.from_claims(verifier(token))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _encode(body: Mapping[str, Any]) -> bytes:
    """JSON with timestamps as ISO 8601; anything else unserialisable raises ``TypeError``."""
    return json.dumps(body, default=_json_default, allow_nan=False).encode()


def _response(
    payload: bytes, status: int, origin: str | None, headers: Mapping[str, str]
) -> flask.Response:
    import flask

    response = flask.Response(payload, status=status, mimetype="application/json")
    response.headers.update(headers)
    _cors(response, origin)
    return response


def _preflight(origin: str | None) -> flask.Response:
    import flask

    response = flask.Response(status=204)
    del response.headers["Content-Type"]  # no body, so no type
    response.headers["Access-Control-Allow-Methods"] = "POST"
    response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
    response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_SECONDS)
    _cors(response, origin)
    return response


def _cors(response: flask.Response, origin: str | None) -> None:
    """Any origin may call, as Firebase callables allow: the ID token, not the origin, is what
    authorises a call (and it is a header, which browsers never attach on their own)."""
    response.headers["Access-Control-Allow-Origin"] = origin or "*"
    response.headers["Vary"] = "Origin"
