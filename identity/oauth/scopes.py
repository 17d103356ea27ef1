"""Scope values (RFC 6749 §3.3) and the OpenID Connect scopes we know."""

from __future__ import annotations

import re

from authlib.oauth2.rfc6749.util import list_to_scope, scope_to_list

from identity.oauth.errors import InvalidScopeError

# Scopes about the signed-in person; they make no sense without one (client_credentials).
USER_SCOPES = ("openid", "profile", "email")
SCOPES_SUPPORTED = USER_SCOPES

# RFC 6749 Appendix A.4: scope-token = 1*NQCHAR.
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,100}")


def parse_scope(raw: str) -> list[str]:
    """Scope tokens in request order without repeats; ``invalid_scope`` when malformed."""
    tokens = scope_to_list(raw) or []
    if not all(SCOPE_TOKEN.fullmatch(token) for token in tokens):
        raise InvalidScopeError("scope holds a malformed value.")
    return list(dict.fromkeys(tokens))


def narrow_scope(requested: str | None, granted: str) -> str:
    """RFC 6749 §6: a refresh may ask for the granted scope or less, never more."""
    if requested is None:
        return granted
    asked = parse_scope(requested)
    allowed = set(scope_to_list(granted) or [])
    if not asked or not set(asked) <= allowed:
        raise InvalidScopeError("scope exceeds what was granted.")
    return list_to_scope(asked)
