"""The kit's two failures: a request's bearer token is refused, or the issuer cannot be reached.

RFC 6750 §3 fixes how a refused token is answered: 401 (or 403 for missing privileges, 400 for
a malformed request) with a ``WWW-Authenticate: Bearer`` challenge. Both HTTP integrations
render through :func:`error_response` so they answer alike.
"""

from __future__ import annotations

import json
from typing import Literal

BearerErrorCode = Literal["invalid_request", "invalid_token", "insufficient_scope"]

# RFC 6455 §7.4.1: 1008 policy violation; 1013 try again later.
WS_REFUSED, WS_UNAVAILABLE = 1008, 1013


# RFC 6750 §3.1; every other refusal, no error code included, is 401.
_STATUS: dict[BearerErrorCode | None, int] = {"invalid_request": 400, "insufficient_scope": 403}


class BearerTokenError(Exception):
    """A request's bearer token was missing, malformed, invalid, or grants too little.

    ``error`` is the RFC 6750 §3.1 code; it is ``None`` when the request carried no bearer
    token at all, for which §3.1 says to send a challenge without an error code.
    ``description`` is fixed text of ours, safe to show to the caller.
    """

    def __init__(self, error: BearerErrorCode | None, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description

    @property
    def status_code(self) -> int:
        return _STATUS.get(self.error, 401)

    @property
    def www_authenticate(self) -> str:
        if self.error is None:
            return "Bearer"
        return f'Bearer error="{self.error}", error_description="{self.description}"'


class IssuerUnavailable(Exception):
    """The issuer's discovery document or JWKS could not be fetched or made no sense.

    Not the caller's fault, so it is answered 503, never 401.
    """


def error_response(exc: BearerTokenError | IssuerUnavailable) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (beside the JSON content type) and JSON body answering ``exc``."""
    if isinstance(exc, IssuerUnavailable):
        body = {"error": "temporarily_unavailable", "error_description": "Try again later."}
        return 503, {"retry-after": "10"}, _json(body)
    headers = {"www-authenticate": exc.www_authenticate}
    body = {"error_description": exc.description}
    if exc.error is not None:
        body["error"] = exc.error
    return exc.status_code, headers, _json(body)


def websocket_close_code(exc: BearerTokenError | IssuerUnavailable) -> int:
    """The close code refusing a WebSocket handshake for ``exc``, in both integrations."""
    return WS_UNAVAILABLE if isinstance(exc, IssuerUnavailable) else WS_REFUSED


def _json(body: dict[str, str]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
