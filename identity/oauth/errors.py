"""OAuth error classes, one per error code, from Authlib where it has them.

Each carries a ``description`` we wrote ourselves (never ``str(exc)`` of something else);
``identity.web.oauth`` renders them as the endpoint in question requires.
"""

from __future__ import annotations

from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    UnsupportedResponseTypeError,
    UnsupportedTokenTypeError,
)
from authlib.oauth2.rfc6750 import errors as rfc6750
from authlib.oauth2.rfc6750.errors import InvalidTokenError
from authlib.oidc.core.errors import (
    ConsentRequiredError,
    InteractionRequiredError,
    LoginRequiredError,
    RegistrationNotSupportedError,
    RequestNotSupportedError,
    RequestURINotSupportedError,
)


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: the requested resource is invalid, unknown, or not allowed for the client."""

    error = "invalid_target"


def bearer_challenge(error: OAuth2Error, **params: str) -> tuple[str, str]:
    """RFC 6750 §3: the ``WWW-Authenticate`` header with which a protected resource (userinfo)
    refuses a request, naming the error, its description and any further ``params``."""
    fields = {"error": error.error, "error_description": error.description} | params
    return "WWW-Authenticate", "Bearer " + ", ".join(f'{k}="{v}"' for k, v in fields.items())


class InsufficientScopeError(rfc6750.InsufficientScopeError):
    """RFC 6750 §3.1: 403 for a token without the ``scope`` needed. §3 also asks for a
    ``WWW-Authenticate`` challenge, which Authlib's class leaves out; it names the scope."""

    def __init__(self, description: str, *, scope: str) -> None:
        super().__init__(description)
        self.scope = scope

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), bearer_challenge(self, scope=self.scope)]


class InvalidBearerRequestError(InvalidRequestError):
    """RFC 6750 §3.1: 400 for a malformed request to a protected resource, with the Bearer
    challenge §3 asks of its every refusal (Authlib's class, made for the token endpoint,
    has none)."""

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), bearer_challenge(self)]


class MissingTokenError(InvalidTokenError):
    """RFC 6750 §3.1: a request with no access token (or another scheme's credentials) gets
    a bare ``Bearer`` challenge, with no error code: the client may not have known that it
    had to authenticate. The body names no code either, so it cannot contradict the header
    (the same rule as the resource kit's ``error_response``)."""

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super(InvalidTokenError, self).get_headers(), ("WWW-Authenticate", "Bearer")]

    def get_body(self) -> list[tuple[str, str]]:
        return [(name, value) for name, value in super().get_body() if name != "error"]


class ServerError(OAuth2Error):
    """RFC 6749 §4.1.2.1: anything unexpected leaves as ``server_error``, with no details."""

    error = "server_error"
    status_code = 500


class TemporarilyUnavailableError(OAuth2Error):
    error = "temporarily_unavailable"
    status_code = 503


__all__ = [
    "AccessDeniedError",
    "ConsentRequiredError",
    "InsufficientScopeError",
    "InteractionRequiredError",
    "InvalidBearerRequestError",
    "InvalidClientError",
    "InvalidGrantError",
    "InvalidRequestError",
    "InvalidScopeError",
    "InvalidTargetError",
    "InvalidTokenError",
    "LoginRequiredError",
    "MissingTokenError",
    "OAuth2Error",
    "RegistrationNotSupportedError",
    "RequestNotSupportedError",
    "RequestURINotSupportedError",
    "ServerError",
    "TemporarilyUnavailableError",
    "UnauthorizedClientError",
    "UnsupportedGrantTypeError",
    "UnsupportedResponseTypeError",
    "UnsupportedTokenTypeError",
]
