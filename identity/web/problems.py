"""RFC 9457 problem details for every error that is not an OAuth protocol error."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.datastructures import Accept
from litestar.exceptions import HTTPException, ValidationException

from identity.db.engine import DatabaseUnavailable
from identity.errors import DomainError
from identity.oauth.metadata import (
    INTROSPECTION_PATH,
    JWKS_PATH,
    REVOCATION_PATH,
    TOKEN_PATH,
    USERINFO_PATH,
)
from identity.store.base import StoreUnavailable
from identity.web.forms import page_locale
from identity.web.rendering import error_page
from identity.web.request_context import CLIENT_GONE
from identity.web.retry_after import UNAVAILABLE, retry_after

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:identity:problem:"


def problem(
    status: int,
    detail: str | None = None,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        # about:blank means "the status code says it all" (RFC 9457 §4.2.1).
        "type": TYPE_PREFIX + code if code else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    # A problem is about one request and may quote it (the address a 409 or a 422 names);
    # without this, a shared cache may keep a 404 or a 405 on its own (RFC 9111 §4.2.2).
    headers = (headers or {}) | {"Cache-Control": "no-store"}
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _prefers_html(accept: str | None) -> bool:
    try:
        return Accept(accept or "").best_match([PROBLEM_JSON, "text/html"]) == "text/html"
    except (ValueError, OverflowError):  # a q-value such as 1e400: no browser sends one
        return False


# Endpoints for programs: an OAuth library, a resource server or a monitor reads JSON even
# when it sends a browser's Accept header, or a person opens one in the address bar.
_FOR_PROGRAMS = (
    "/api",
    TOKEN_PATH,
    INTROSPECTION_PATH,
    REVOCATION_PATH,
    USERINFO_PATH,
    JWKS_PATH,
    "/.well-known",
    "/metrics",
    "/health",
    "/schema",
)


def _for_programs(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in _FOR_PROGRAMS)


def _page_instead(
    request: Request[Any, Any, Any],
    status: int,
    message_id: str,
    *,
    headers: dict[str, str] | None = None,
    error_code: str | None = None,
) -> Response[Any] | None:
    """An error page in the visitor's language for a browser finding an error on a hosted
    page (a mistyped page address, the database down on a form post): JSON would be a page of
    code to a customer. Programs' endpoints, and anyone not asking for HTML first, get the
    problem."""
    if _for_programs(request.url.path) or not _prefers_html(request.headers.get("accept")):
        return None
    response = error_page(
        request,
        request.app.state.runtime,
        message_id,
        # The link's ?ui_locales= first, as on every hosted page (a posted body is not read).
        locale=page_locale(request),
        status=status,
        error_code=error_code,
    )
    response.headers.update(headers or {})
    return response


def _request_id(request: Request[Any, Any, Any]) -> str | None:
    return request.scope.get("state", {}).get("request_id")


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        # Litestar's validation messages name the field and the rule; they hold no internals.
        extra["errors"] = [
            {"field": item.get("key"), "message": item.get("message")}
            for item in exc.extra
            if isinstance(item, dict)
        ]
    headers = {
        k: v for k, v in (exc.headers or {}).items() if k.lower() in ("allow", "retry-after")
    }
    status = exc.status_code
    if status >= 500 and request.scope.get("state", {}).get(CLIENT_GONE):
        # Litestar's answer to a body cut short (a timeout, a client gone) is a 500: it is
        # the client's doing, and must not count as a failure of ours in logs and metrics.
        return problem(400, "The connection closed before the request was received whole.")
    message_id = {404: "error.not_found", 405: "error.not_found", 413: "error.too_large"}.get(
        status, "error.unexpected" if status >= 500 else "error.bad_request"
    )
    if shown := _page_instead(request, status, message_id, headers=headers):
        return shown
    return problem(status, _own_detail(exc), headers=headers or None, **extra)


def _own_detail(exc: HTTPException) -> str | None:
    """The detail worth showing: ours, never one that quotes the request back. Litestar's
    validation detail repeats the method, path and whole query ("Validation failed for GET
    /api/v1/users?..."; its ``errors`` name the field), its static files 404 the path it
    resolved against our folder, and a 5xx detail is internal."""
    status = exc.status_code
    if status >= 500 or status in (404, 405) or isinstance(exc, ValidationException):
        return None
    return exc.detail if exc.detail and exc.detail != HTTPStatus(status).phrase else None


def domain_error_handler(
    request: Request[Any, Any, Any], exc: DomainError
) -> Response[dict[str, Any]]:
    headers = retry_after(exc) or None
    return problem(exc.status, exc.detail, code=exc.code, headers=headers, **exc.extra)


def unavailable_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("dependency unavailable: %s", type(exc).__name__, extra={"reason": str(exc)})
    headers = {"Retry-After": UNAVAILABLE}
    if shown := _page_instead(request, 503, "error.unavailable", headers=headers):
        return shown
    return problem(
        503, "The service is temporarily unavailable. Please try again shortly.", headers=headers
    )


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    request_id = _request_id(request)
    if shown := _page_instead(request, 500, "error.unexpected", error_code=request_id):
        return shown
    return problem(
        500,
        "An unexpected error occurred. Quote the request id when you report it.",
        request_id=request_id,
    )


EXCEPTION_HANDLERS = {
    HTTPException: http_exception_handler,
    DomainError: domain_error_handler,
    DatabaseUnavailable: unavailable_handler,
    StoreUnavailable: unavailable_handler,
    Exception: internal_error_handler,
}
