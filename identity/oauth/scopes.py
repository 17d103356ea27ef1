"""Scope values (RFC 6749 §3.3) and the OpenID Connect scopes we know."""

from __future__ import annotations

import re
from collections.abc import Sequence

from authlib.oauth2.rfc6749.util import list_to_scope, scope_to_list

from identity.oauth.errors import InvalidScopeError

# The management API's scopes (identity.web.api.auth reads them from every bearer token).
# Staff administration: an administrator's token, or a client allowed it for itself.
SCOPE_ADMIN = "identity:admin"
# A user managing the accounts they belong to.
SCOPE_ACCOUNTS = "identity:accounts"
# A service asking for authorization decisions (POST /api/v1/authz/check).
SCOPE_AUTHZ = "identity:authz"

# OIDC Core §11 asks with offline_access for a refresh token, which client libraries (MSAL,
# many oidc-client setups) always request. Refresh tokens here follow the client's
# refresh_token grant alone, and §11 lets the server ignore the request: it is accepted from any
# client and dropped, so it is never granted, shown for consent or carried by a token.
OFFLINE_ACCESS = "offline_access"

# Scopes about the signed-in person; they make no sense without one (client_credentials).
# offline_access too: a client's registration may hold it for its users' sign-ins, but its
# own tokens have no user to be offline for and no refresh token (RFC 6749 §4.4.3).
USER_SCOPES = ("openid", "profile", "email", SCOPE_ACCOUNTS, OFFLINE_ACCESS)
SCOPES_SUPPORTED = ("openid", "profile", "email", SCOPE_ACCOUNTS, SCOPE_ADMIN, SCOPE_AUTHZ)


# RFC 6749 Appendix A.4: scope-token = 1*NQCHAR.
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,100}")


def parse_scope(raw: str) -> list[str]:
    """Scope tokens in request order without repeats; ``invalid_scope`` when malformed."""
    tokens = scope_to_list(raw) or []
    if not all(SCOPE_TOKEN.fullmatch(token) for token in tokens):
        raise InvalidScopeError("scope holds a malformed value.")
    return list(dict.fromkeys(tokens))


def without_offline_access(scopes: Sequence[str]) -> list[str]:
    return [s for s in scopes if s != OFFLINE_ACCESS]


def requested_at_authorize(raw: str) -> list[str]:
    """An authorization request's scope tokens (``parse_scope``) less ``offline_access``."""
    return without_offline_access(parse_scope(raw))


def for_user(scopes: Sequence[str], *, is_admin: bool) -> tuple[str, ...]:
    """What a user's token may carry of ``scopes``: identity:admin only for administrators
    (RFC 6749 §3.3 lets the server grant less than asked; the token response says so)."""
    return tuple(s for s in scopes if s != SCOPE_ADMIN or is_admin)


def user_may_hold(scope: str, *, is_admin: bool) -> str:
    """``for_user`` of a token's space-separated ``scope``."""
    return " ".join(for_user(scope.split(), is_admin=is_admin))


def still_allowed(scope: str, allowed: str) -> str:
    """Of a client's own token's ``scope``, what the client's registration ``allowed`` now:
    its rights are its registration's, which staff may have narrowed since the token."""
    kept = set(scope_to_list(allowed) or [])
    return " ".join(s for s in scope_to_list(scope) or [] if s in kept)


def requested_scope(raw: str | None) -> list[str] | None:
    """A token request's ``scope``: None when omitted (sent without a value counts as omitted,
    RFC 6749 §3.2, as the form reader does), else its tokens. One made only of spaces names no
    scope-token (§3.3): ``invalid_scope`` saying so, as node-oidc-provider refuses it, rather
    than reading it as a request for nothing. ``offline_access`` is dropped as at /authorize;
    one naming nothing else is then ``scope=`` with it taken out, so counts as omitted."""
    if raw is None:
        return None
    asked = parse_scope(raw)
    if not asked:
        raise InvalidScopeError(
            "scope is blank: name at least one scope, or leave the parameter out."
        )
    return without_offline_access(asked) or None


def narrow_scope(requested: str | None, granted: str) -> str:
    """RFC 6749 §6: a refresh may ask for the granted scope or less, never more."""
    asked = requested_scope(requested)
    if asked is None:
        return granted
    if not set(asked) <= set(scope_to_list(granted) or []):
        raise InvalidScopeError("scope exceeds what was granted.")
    return list_to_scope(asked)
