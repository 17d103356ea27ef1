"""CSRF tokens for the hosted forms: a per-browser random value, signed with the secret key.

The browser holds a random value in an HttpOnly cookie; each form carries
HMAC(secret key, value). A cross-site page can make the browser send the cookie but can
neither read it nor compute the HMAC, so it cannot produce a matching form field
(the "signed double-submit cookie" of the OWASP CSRF cheat sheet).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from litestar.datastructures import Cookie

from identity.crypto import random_token
from identity.settings import Settings
from identity.web import cookies

FIELD = "csrf_token"
# A year: the value guards forms, it identifies no one, and a fresh one per visit would
# break a form left open in another tab.
_SEED_MAX_AGE = 365 * 86400


def token_for(secret_key: str, seed: str) -> str:
    return hmac.new(secret_key.encode(), b"csrf:" + seed.encode(), hashlib.sha256).hexdigest()


def token_matches(secret_key: str, seed: str | None, token: str | None) -> bool:
    if not seed or not token:
        return False
    # As bytes: compare_digest refuses a str with non-ASCII characters (TypeError), and the
    # token is whatever a form posted.
    expected = token_for(secret_key, seed).encode()
    return hmac.compare_digest(expected, token.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True, slots=True)
class CsrfState:
    """The token for a form being rendered, and the cookie to set when the seed is new."""

    token: str
    cookie: Cookie | None


def prepare(request_cookies: dict[str, str], settings: Settings, secret_key: str) -> CsrfState:
    """A token for this browser's seed, creating the seed (and its cookie) if it has none."""
    seed = cookies.read(request_cookies, settings, cookies.CSRF)
    if seed:
        return CsrfState(token_for(secret_key, seed), None)
    seed = random_token()
    return CsrfState(
        token_for(secret_key, seed), cookies.make(settings, cookies.CSRF, seed, _SEED_MAX_AGE)
    )


def verify(
    request_cookies: dict[str, str], settings: Settings, secret_key: str, token: str | None
) -> bool:
    seed = cookies.read(request_cookies, settings, cookies.CSRF)
    return token_matches(secret_key, seed, token)
