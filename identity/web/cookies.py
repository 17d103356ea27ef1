"""The hosted pages' cookies: names and flags in one place.

Every cookie is HttpOnly (no script reads it), SameSite=Lax (sent on top-level navigations
such as a client sending the browser back to /authorize, never on cross-site form posts or
embedded requests), Path=/, and Secure when the issuer is https. Over https the names carry
the ``__Host-`` prefix, which browsers honour only for Secure, host-only, Path=/ cookies.
"""

from __future__ import annotations

from litestar.datastructures import Cookie

from identity.settings import Settings

SESSION = "identity_session"
CSRF = "identity_csrf"


def name(settings: Settings, base: str) -> str:
    return f"__Host-{base}" if settings.https else base


def read(cookies: dict[str, str], settings: Settings, base: str) -> str | None:
    return cookies.get(name(settings, base)) or None


def make(settings: Settings, base: str, value: str, max_age: int) -> Cookie:
    return Cookie(
        key=name(settings, base),
        value=value,
        max_age=max_age,
        path="/",
        httponly=True,
        secure=settings.https,
        samesite="lax",
    )


def session(settings: Settings, token: str) -> Cookie:
    return make(settings, SESSION, token, settings.session_ttl)


def clear_session(settings: Settings) -> Cookie:
    return make(settings, SESSION, "", 0)
