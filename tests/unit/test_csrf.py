"""identity.web.csrf: a token binds a form to the browser's own random seed."""

from __future__ import annotations

from pathlib import Path

from identity.settings import Settings
from identity.web import csrf

SECRET = "s" * 40
OTHER_SECRET = "o" * 40


def settings(issuer: str = "http://127.0.0.1:8000") -> Settings:
    return Settings(data_dir=Path("."), database_url="sqlite+aiosqlite://", issuer=issuer)


def test_new_browser_gets_a_seed_cookie_and_a_matching_token() -> None:
    state = csrf.prepare({}, settings(), SECRET)
    assert state.cookie is not None
    assert state.cookie.httponly and state.cookie.samesite == "lax" and state.cookie.path == "/"
    assert not state.cookie.secure
    assert csrf.verify(
        {state.cookie.key: state.cookie.value or ""}, settings(), SECRET, state.token
    )


def test_known_browser_keeps_its_seed() -> None:
    state = csrf.prepare({"identity_csrf": "seed-1"}, settings(), SECRET)
    assert state.cookie is None
    assert state.token == csrf.token_for(SECRET, "seed-1")


def test_token_of_another_seed_or_secret_is_refused() -> None:
    token = csrf.token_for(SECRET, "seed-1")
    assert csrf.verify({"identity_csrf": "seed-1"}, settings(), SECRET, token)
    assert not csrf.verify({"identity_csrf": "seed-2"}, settings(), SECRET, token)
    assert not csrf.verify({"identity_csrf": "seed-1"}, settings(), OTHER_SECRET, token)


def test_missing_cookie_or_token_is_refused() -> None:
    token = csrf.token_for(SECRET, "seed-1")
    assert not csrf.verify({}, settings(), SECRET, token)
    assert not csrf.verify({"identity_csrf": "seed-1"}, settings(), SECRET, None)
    assert not csrf.verify({"identity_csrf": "seed-1"}, settings(), SECRET, "")


def test_https_issuer_makes_a_secure_host_only_cookie() -> None:
    state = csrf.prepare({}, settings("https://id.example"), SECRET)
    assert state.cookie is not None
    assert state.cookie.secure
    assert state.cookie.key == "__Host-identity_csrf"
    # A plain-named cookie (settable by a sibling subdomain over http) is not read.
    assert csrf.prepare({"identity_csrf": "x"}, settings("https://id.example"), SECRET).cookie
