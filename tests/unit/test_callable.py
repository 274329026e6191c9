"""The callable protocol adapter, through a Flask test client, with fake tokens and handlers."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from agenttrader.callable import (
    CallableError,
    CallContext,
    Status,
    fields_of,
    https_callable,
    invalid_argument,
    require_string,
)
from agenttrader.callable.errors import HTTP_STATUS
from agenttrader.callable.protocol import ALLOWED_HEADERS, MAX_REQUEST_BYTES
from devtools.callable_server import callables_app
from tests.callable_fixtures import FakeTokens, call, error_status

PATH = "/demo-p/us-central1/echo"
SECRET_TEXT = "PKSECRETVALUE1234567 and a db password"


@https_callable
def echo(ctx: CallContext, data: Any) -> dict[str, Any]:
    """Returns who called and what they sent."""
    return {"uid": ctx.uid, "email": ctx.email, "admin": ctx.is_admin, "data": data}


raised: list[BaseException] = []


@https_callable
def explode(ctx: CallContext, data: Any) -> Any:
    raise raised[0]


@https_callable
def admin_only(ctx: CallContext, data: Any) -> str:
    ctx.require_admin()
    return "ok"


@pytest.fixture
def client(fake_tokens: FakeTokens) -> Any:
    functions = {"echo": echo, "explode": explode, "admin_only": admin_only}
    return callables_app(functions, project="demo-p", region="us-central1").test_client()


@pytest.fixture
def token(fake_tokens: FakeTokens) -> str:
    return fake_tokens.token_for("alice", "alice@example.com")


def test_success_wraps_the_result_and_passes_the_caller(client: Any, token: str) -> None:
    status, body = call(client, PATH, {"a": [1, "x"]}, token=token)
    assert status == 200
    assert body == {
        "result": {
            "uid": "alice",
            "email": "alice@example.com",
            "admin": False,
            "data": {"a": [1, "x"]},
        }
    }


def test_null_data_is_a_valid_call(client: Any, token: str) -> None:
    assert call(client, PATH, None, token=token)[1]["result"]["data"] is None


def test_decorator_keeps_the_handler_callable_directly() -> None:
    assert echo.__name__ == "echo"
    handler = echo.__wrapped__  # type: ignore[attr-defined]
    assert handler(CallContext(uid="u"), 1) == {
        "uid": "u",
        "email": None,
        "admin": False,
        "data": 1,
    }


# --- CORS ------------------------------------------------------------------------------------


def test_preflight_answers_204_with_the_firebase_cors_headers(client: Any) -> None:
    response = client.options(PATH, headers={"Origin": "https://app.example.com"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert response.headers["Access-Control-Allow-Methods"] == "POST"
    allowed = {h.strip() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {
        "Authorization",
        "Content-Type",
        "X-Firebase-AppCheck",
        "X-Firebase-Instance-ID-Token",
        "Firebase-Instance-ID-Token",
    }
    assert response.headers["Access-Control-Allow-Headers"] == ALLOWED_HEADERS
    assert "Origin" in response.headers["Vary"]
    assert response.data == b""
    assert "Content-Type" not in response.headers


def test_responses_and_errors_carry_the_allowed_origin(client: Any, token: str) -> None:
    origin = {"Origin": "http://localhost:5173"}
    ok = client.post(PATH, json={"data": 1}, headers={**origin, "Authorization": f"Bearer {token}"})
    refused = client.post(PATH, json={"data": 1}, headers=origin)
    for response in (ok, refused):
        assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
        assert "Origin" in response.headers["Vary"]
    assert refused.status_code == 401


def test_without_an_origin_any_origin_is_allowed(client: Any, token: str) -> None:
    response = client.post(PATH, json={"data": 1}, headers={"Authorization": f"Bearer {token}"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# --- malformed requests ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_methods_other_than_post_are_refused(client: Any, token: str, method: str) -> None:
    response = client.open(PATH, method=method, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 405
    assert response.get_json()["error"]["status"] == "INVALID_ARGUMENT"
    assert response.headers["Allow"] == "POST, OPTIONS"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_content_type_must_be_json(client: Any, token: str, content_type: str) -> None:
    response = client.post(
        PATH,
        data=json.dumps({"data": 1}),
        headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == {
        "status": "INVALID_ARGUMENT",
        "message": "content type must be application/json",
    }


def test_json_with_a_charset_is_accepted(client: Any, token: str) -> None:
    status, _ = call(
        client, PATH, 1, token=token, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert status == 200


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b"", "request body is not valid JSON"),
        (b"[1, 2]", 'request body must be an object with "data"'),
        (b'{"dat": 1}', 'request body must be an object with "data"'),
        (b'"data"', 'request body must be an object with "data"'),
    ],
)
def test_malformed_bodies_are_invalid_argument(
    client: Any, token: str, raw: bytes, message: str
) -> None:
    response = client.post(
        PATH,
        data=raw,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == {"status": "INVALID_ARGUMENT", "message": message}


def test_deeply_nested_json_is_refused_not_crashed(client: Any, token: str) -> None:
    depth = 20_000  # within the size limit, beyond the JSON decoder's recursion limit
    raw = b'{"data": ' + b"[" * depth + b"]" * depth + b"}"
    assert len(raw) < MAX_REQUEST_BYTES
    response = client.post(
        PATH,
        data=raw,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["status"] == "INVALID_ARGUMENT"


def test_oversized_body_is_refused_before_parsing(client: Any, token: str) -> None:
    status, body = call(client, PATH, "x" * MAX_REQUEST_BYTES, token=token)
    assert status == 413
    assert body["error"] == {
        "status": "INVALID_ARGUMENT",
        "message": f"request body exceeds {MAX_REQUEST_BYTES} bytes",
    }


def test_oversized_body_without_a_length_is_refused(client: Any, token: str) -> None:
    """A chunked upload has no Content-Length; the adapter stops reading past the limit."""
    payload = json.dumps({"data": "x" * (MAX_REQUEST_BYTES * 4)}).encode()
    response = client.post(
        PATH,
        input_stream=io.BytesIO(payload),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        environ_overrides={"wsgi.input_terminated": True},  # what a server sets for chunked
    )
    assert response.status_code == 413


def test_a_body_just_under_the_limit_is_served(client: Any, token: str) -> None:
    filler = MAX_REQUEST_BYTES - len(json.dumps({"data": ""})) - 10
    status, _ = call(client, PATH, "x" * filler, token=token)
    assert status == 200


# --- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "fake:{}", "Token abc"],
)
def test_missing_or_malformed_authorization_is_unauthenticated(
    client: Any, header: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Authorization"] = header
    response = client.post(PATH, data=json.dumps({"data": 1}), headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == {
        "status": "UNAUTHENTICATED",
        "message": "a Firebase ID token is required",
    }


def test_an_invalid_token_is_unauthenticated(client: Any) -> None:
    status, body = call(client, PATH, 1, token="not-a-token")
    assert (status, error_status(body)) == (401, "UNAUTHENTICATED")


def test_a_token_without_a_user_is_unauthenticated(client: Any) -> None:
    status, body = call(client, PATH, 1, token='fake:{"email": "x@example.com"}')
    assert (status, error_status(body)) == (401, "UNAUTHENTICATED")


def test_the_bearer_scheme_is_case_insensitive(client: Any, token: str) -> None:
    response = client.post(PATH, json={"data": 1}, headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 200


# --- the admin claim -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "expected"),
    [({"admin": True}, 200), ({}, 403), ({"admin": "true"}, 403), ({"admin": 1}, 403)],
)
def test_only_a_boolean_admin_claim_is_admin(
    fake_tokens: FakeTokens, claims: dict[str, Any], expected: int
) -> None:
    client = callables_app({"admin_only": admin_only}).test_client()
    status, body = call(
        client, "/p/r/admin_only", None, token=fake_tokens.token_for("op", **claims)
    )
    assert status == expected
    if expected == 403:
        assert body["error"] == {
            "status": "PERMISSION_DENIED",
            "message": "this operation requires the admin role",
        }


def test_call_context_from_claims() -> None:
    ctx = CallContext.from_claims({"sub": "u1", "email": 5, "admin": True})
    assert (ctx.uid, ctx.email, ctx.is_admin) == ("u1", None, True)
    assert "claims" not in repr(ctx)  # tokens' claims stay out of logs and reprs


@pytest.mark.parametrize("uid", ["a/b", "__reserved__", "x" * 200, "..", "has space"])
def test_a_user_id_no_document_can_be_named_by_is_refused_clearly(uid: str) -> None:
    with pytest.raises(CallableError) as info:
        CallContext.from_claims({"sub": uid})
    assert info.value.status is Status.PERMISSION_DENIED
    assert uid not in info.value.message


# --- errors raised by handlers ---------------------------------------------------------------


@pytest.mark.parametrize("status", list(Status))
def test_a_callable_error_keeps_its_status_and_message(token: str, status: Status) -> None:
    raised[:] = [CallableError(status, f"{status.value} on purpose")]
    client = callables_app({"explode": explode}).test_client()
    code, body = call(client, "/p/r/explode", None, token=token)
    assert code == HTTP_STATUS[status]
    assert body == {"error": {"status": status.value, "message": f"{status.value} on purpose"}}


def test_canonical_http_codes() -> None:
    assert {s.value: HTTP_STATUS[s] for s in Status} == {
        "INVALID_ARGUMENT": 400,
        "FAILED_PRECONDITION": 400,
        "OUT_OF_RANGE": 400,
        "UNAUTHENTICATED": 401,
        "PERMISSION_DENIED": 403,
        "NOT_FOUND": 404,
        "ALREADY_EXISTS": 409,
        "ABORTED": 409,
        "RESOURCE_EXHAUSTED": 429,
        "CANCELLED": 499,
        "UNIMPLEMENTED": 501,
        "INTERNAL": 500,
        "UNKNOWN": 500,
        "UNAVAILABLE": 503,
        "DATA_LOSS": 500,
        "DEADLINE_EXCEEDED": 504,
    }


def test_details_name_the_bad_field(client: Any, token: str) -> None:
    raised[:] = [invalid_argument("marketConditions", "must be a string or an object")]
    code, body = call(client, "/demo-p/us-central1/explode", None, token=token)
    assert code == 400
    assert body["error"] == {
        "status": "INVALID_ARGUMENT",
        "message": "marketConditions: must be a string or an object",
        "details": {"field": "marketConditions"},
    }


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(SECRET_TEXT),
        KeyError(SECRET_TEXT),
        ValueError(SECRET_TEXT),
        gexc.PermissionDenied(SECRET_TEXT),
    ],
)
def test_unexpected_errors_are_internal_and_say_nothing(
    client: Any, token: str, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    raised[:] = [error]
    with caplog.at_level(logging.ERROR):
        response = client.post(
            "/demo-p/us-central1/explode",
            json={"data": None},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 500
    assert response.get_json() == {"error": {"status": "INTERNAL", "message": "internal error"}}
    assert b"SECRET" not in response.data and b"Traceback" not in response.data
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failures and failures[0].exc_info is not None  # logged, with the stack, server-side
    assert failures[0].labels["function"] == "explode"  # type: ignore[attr-defined]
    assert failures[0].labels["uid"] == "alice"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "error", [gexc.ServiceUnavailable("x"), gexc.DeadlineExceeded("x"), gexc.Aborted("x")]
)
def test_transient_firestore_errors_are_unavailable(
    client: Any, token: str, error: Exception
) -> None:
    raised[:] = [error]
    code, body = call(client, "/demo-p/us-central1/explode", None, token=token)
    assert (code, error_status(body)) == (503, "UNAVAILABLE")
    assert body["error"]["message"] == "service temporarily unavailable; retry later"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2024, 5, 1, 12, 0, tzinfo=UTC), "2024-05-01T12:00:00+00:00"),
        ({"n": [1, 2.5, None, True]}, {"n": [1, 2.5, None, True]}),
    ],
)
def test_results_are_encoded_as_json(fake_tokens: FakeTokens, value: Any, expected: Any) -> None:
    @https_callable
    def give(ctx: CallContext, data: Any) -> Any:
        return value

    client = callables_app({"give": give}).test_client()
    _, body = call(client, "/p/r/give", None, token=fake_tokens.token_for("u"))
    assert body == {"result": expected}


@pytest.mark.parametrize("value", [{1, 2}, float("nan"), object()])
def test_an_unencodable_result_is_internal(fake_tokens: FakeTokens, value: Any) -> None:
    @https_callable
    def give(ctx: CallContext, data: Any) -> Any:
        return value

    client = callables_app({"give": give}).test_client()
    code, body = call(client, "/p/r/give", None, token=fake_tokens.token_for("u"))
    assert (code, body) == (500, {"error": {"status": "INTERNAL", "message": "internal error"}})


# --- the router ------------------------------------------------------------------------------


def test_the_router_refuses_unknown_functions_projects_and_regions(client: Any, token: str) -> None:
    for path in (
        "/demo-p/us-central1/nope",
        "/other/us-central1/echo",
        "/demo-p/europe-west1/echo",
    ):
        code, body = call(client, path, None, token=token)
        assert (code, error_status(body)) == (404, "NOT_FOUND"), path


def test_the_router_lists_its_functions(client: Any) -> None:
    assert client.get("/").get_json() == {"functions": ["admin_only", "echo", "explode"]}


# --- validation helpers ----------------------------------------------------------------------


def test_fields_of_refuses_unknown_and_missing_fields() -> None:
    assert fields_of(None, allowed=("a",)) == {}
    assert fields_of({"a": 1}, allowed=("a",), required=("a",)) == {"a": 1}
    with pytest.raises(CallableError) as unknown:
        fields_of({"a": 1, "zz": 2, "b": 3}, allowed=("a",))
    assert unknown.value.status is Status.INVALID_ARGUMENT
    assert unknown.value.message == "unknown field(s): b, zz"
    assert unknown.value.details == {"field": "b", "unknown": ["b", "zz"]}
    with pytest.raises(CallableError) as missing:
        fields_of({"a": None}, allowed=("a",), required=("a",))
    assert missing.value.message == "a: is required"
    for not_an_object in ([], "x", 3, True):
        with pytest.raises(CallableError) as wrong:
            fields_of(not_an_object, allowed=())
        assert wrong.value.message == "data: must be an object"


def test_require_string_bounds() -> None:
    assert require_string("abc", "f", max_length=3) == "abc"
    for bad in ("", "abcd", 3, None):
        with pytest.raises(CallableError) as err:
            require_string(bad, "f", max_length=3)
        assert err.value.details == {"field": "f"}
