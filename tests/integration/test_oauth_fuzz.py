"""Generated malformed requests to /authorize and /token: a spec error each, never a 500;
to the hosted forms: a page or a redirect, never a 500.

Hypothesis mixes valid values with garbage (control characters, huge and non-ASCII text,
repeated and unknown parameters) for every parameter of the two endpoints. Litestar's
synchronous test client runs the app on its own loop, so Hypothesis can drive it directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote_from_bytes, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from identity.accounts.models import User
from identity.app import create_app
from identity.audit.service import Actor
from identity.clients.service import ClientSpec, register_client
from identity.crypto import Encryptor
from identity.db.engine import Database
from identity.keys.service import create_key
from identity.recovery.service import RESET_PAGE_PATH
from identity.runtime import Runtime
from identity.settings import Rate, Settings
from identity.web import csrf
from identity.web.forms import LOCALE_FIELD, SIGNED_IN_FIELD
from identity.web.pages_account import ROUTES as ACCOUNT_ROUTES
from identity.web.pages_account import SIGN_OUT_OTHERS
from identity.web.pages_recovery import FORGOT_PATH
from identity.web.password_form import SUGGEST_FIELD
from tests import sweep
from tests.backends import TEST_SECRET_KEY
from tests.browser import EMAIL, PASSWORD, add_oauth_client, add_user, authorize_params, form_fields
from tests.conftest import add_signing_key
from tests.integration.oauth_helpers import REDIRECT_URI, pkce_pair
from tests.integration.page_helpers import SECURITY
from tests.integration.recovery_helpers import NEW_PASSWORD, stored_reset_token

TOKEN_ERRORS = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
}
AUTHORIZE_ERRORS = TOKEN_ERRORS - {"invalid_client", "invalid_grant", "unsupported_grant_type"} | {
    "unsupported_response_type",
    "access_denied",
    "login_required",
    "consent_required",
    "interaction_required",
    "account_selection_required",
    "request_not_supported",
    "request_uri_not_supported",
    "registration_not_supported",
}

T = TypeVar("T")

garbage = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=3000),
    st.sampled_from(["", " ", "\x00", "%00", "' OR 1=1 --", "é" * 300, "a b", "\u202e"]),
)


def _param(valid: list[str]) -> st.SearchStrategy[str | None]:
    """Left out, valid, or garbage."""
    return st.one_of(st.none(), st.sampled_from(valid), garbage)


@pytest.fixture
def fuzzed(database: Settings) -> Iterator[tuple[TestClient[Any], str, str]]:
    async def register() -> dict[str, str]:
        db = Database.from_settings(database)
        try:
            async with db.transaction() as session:
                await create_key(session, Encryptor(TEST_SECRET_KEY, "signing-keys"), "RS256")
                return await register_client(
                    session,
                    Actor(),
                    ClientSpec(
                        name="Fuzzed",
                        redirect_uris=[REDIRECT_URI],
                        grant_types=["authorization_code", "refresh_token", "client_credentials"],
                        scope="openid profile email",
                    ),
                )
        finally:
            await db.dispose()

    shown = asyncio.run(register())
    with TestClient(create_app(database)) as http:
        yield http, shown["client_id"], shown["client_secret"]


FUZZ = settings(
    max_examples=sweep.examples(100),
    deadline=None,
    derandomize=not sweep.DEEP,  # CI sends the same requests every run, as tests/sweep.py says
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(
    data=st.data(),
    extra=st.dictionaries(st.text(min_size=1, max_size=10), garbage, max_size=3),
    repeat=st.booleans(),
)
def test_malformed_authorize_requests_get_spec_errors(
    fuzzed: tuple[TestClient[Any], str, str],
    data: st.DataObject,
    extra: dict[str, str],
    repeat: bool,
) -> None:
    http, client_id, _ = fuzzed
    _, challenge = pkce_pair()
    valid = {
        "client_id": [client_id],
        "redirect_uri": [REDIRECT_URI],
        "response_type": ["code", "token", "code id_token"],
        "scope": ["openid", "openid profile", "bogus"],
        "state": ["s"],
        "nonce": ["n"],
        "code_challenge": [challenge],
        "code_challenge_method": ["S256", "plain"],
        "prompt": ["none", "login", "consent", "select_account"],
        "max_age": ["0", "-1", "99999999999999999999"],
        "resource": ["https://billing.example/", "not a uri"],
        "ui_locales": ["es", "xx"],
        "request": ["eyJ.eyJ.sig"],
    }
    pairs = [(name, value) for name, values in valid.items()
             if (value := data.draw(_param(values), label=name)) is not None]  # fmt: skip
    pairs += list(extra.items())
    if repeat and pairs:
        pairs.append(pairs[0])
    response = http.get("/authorize?" + urlencode(pairs), follow_redirects=False)
    assert response.status_code != 500, response.text
    if response.status_code in (302, 303):
        location = response.headers["location"]
        if location.startswith(REDIRECT_URI):
            # Only to the registered URI, with a spec error code or, if all was well, a code;
            # in the fragment for a client that reads its answer there (response_type=token).
            parts = urlsplit(location)
            answer = parse_qs(parts.fragment or parts.query)
            assert answer.get("error", ["?"])[0] in AUTHORIZE_ERRORS or "code" in answer
        else:
            assert location.startswith(("/login", "/consent")), location
    else:
        # Before the redirect URI is proven, an error page, never a redirect elsewhere.
        assert response.status_code in (400, 200), response.status_code
        assert response.headers["content-type"].startswith("text/html")


@FUZZ
@given(
    data=st.data(),
    content_type=st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "application/json",
            "text/plain",
            "",
            "multipart/form-data",
        ]
    ),
    authenticate=st.sampled_from(["basic", "post", "wrong", "none"]),
)
def test_malformed_token_requests_get_spec_errors(
    fuzzed: tuple[TestClient[Any], str, str],
    data: st.DataObject,
    content_type: str,
    authenticate: str,
) -> None:
    http, client_id, secret = fuzzed
    valid = {
        "grant_type": [
            "authorization_code", "refresh_token", "client_credentials", "password", "",
            "urn:ietf:params:oauth:grant-type:device_code",
        ],
        "code": ["abc"],
        "redirect_uri": [REDIRECT_URI],
        "code_verifier": ["x" * 43],
        "refresh_token": ["abc"],
        "scope": ["openid", "bogus"],
        "resource": ["https://billing.example/", "not a uri"],
    }  # fmt: skip
    pairs = [(name, value) for name, values in valid.items()
             if (value := data.draw(_param(values), label=name)) is not None]  # fmt: skip
    headers = {"Content-Type": content_type} if content_type else {}
    auth = None
    if authenticate == "basic":
        auth = (client_id, secret)
    elif authenticate == "wrong":
        auth = (client_id, secret + "x")
    elif authenticate == "post":
        pairs += [("client_id", client_id), ("client_secret", secret)]
    response = http.post("/token", content=urlencode(pairs), headers=headers, auth=auth)
    assert response.status_code != 500, response.text
    if response.status_code == 200:
        assert "access_token" in response.json()
        return
    assert response.status_code in (400, 401), (response.status_code, response.text)
    assert response.json()["error"] in TOKEN_ERRORS
    assert response.headers["cache-control"] == "no-store"


# --- hosted forms ------------------------------------------------------------------------
# Their posts with a valid CSRF token (and the signed-in user a security page was shown to),
# so each gets past that check to the fields it reads. A browser sends text as UTF-8; by hand,
# any bytes: half a surrogate pair as UTF-8 would spell it, NUL, control characters.

form_value = st.one_of(
    garbage.map(str.encode),
    st.text(alphabet=st.characters(categories=["Cs", "Cc", "Cf"]), max_size=20).map(
        lambda text: text.encode("utf-8", "surrogatepass")
    ),
    st.binary(max_size=40),
)
SIGN_IN_AND_RECOVERY_FORMS = {
    "/login": {"email": [EMAIL], "password": [PASSWORD, "wrong"]},
    FORGOT_PATH: {"email": [EMAIL, "nobody@example.com"]},
    RESET_PAGE_PATH: {
        "password": [NEW_PASSWORD],
        "password_confirm": [NEW_PASSWORD],
        SUGGEST_FIELD: ["1"],
    },
}
CONFIRM_TOTP = f"{SECURITY}/totp/confirm"
SECURITY_FORMS = {
    f"{SECURITY}/name": {"name": ["Ana"]},
    f"{SECURITY}/email": {"email": ["new@example.com"], "current_password": [PASSWORD]},
    f"{SECURITY}/password": {
        "current_password": [PASSWORD],
        "password": [NEW_PASSWORD],
        "password_confirm": [NEW_PASSWORD],
        SUGGEST_FIELD: ["1"],
    },
    f"{SECURITY}/totp": {"current_password": [PASSWORD]},
    CONFIRM_TOTP: {"code": ["123456"], SIGN_OUT_OTHERS: ["yes"]},
    f"{SECURITY}/recovery-codes": {"current_password": [PASSWORD]},
    f"{SECURITY}/totp/disable": {"password": [PASSWORD], "code": ["123456"]},
    f"{SECURITY}/sessions": {},
}
# Every form of the security page (its GET aside) is fuzzed.
assert {path for route in ACCOUNT_ROUTES for path in route.paths} - set(SECURITY_FORMS) == {
    SECURITY
}


@st.composite
def _form_field(draw: st.DrawFn, valid: list[str]) -> bytes | None:
    """Left out, valid (when there is a valid value to send), or garbage: a choice drawn
    first, so that each is as likely (one_of() weighs each of garbage's kinds as one)."""
    kind = draw(st.sampled_from(["left out", "valid", "garbage"] if valid else ["", "garbage"]))
    if kind == "garbage":
        return draw(form_value)
    return draw(st.sampled_from(valid)).encode() if kind == "valid" else None


@dataclass(frozen=True)
class Browser:
    """A client signed in (to the security page) as ``user``, and the app it talks to."""

    http: TestClient[Any]
    runtime: Runtime
    user: User

    def call(self, work: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``work`` done on the app's own event loop."""
        return self.http.blocking_portal.call(work, *args)


@pytest.fixture
def browser(database: Settings) -> Iterator[Browser]:
    # Limits no fuzzer reaches: past a few wrong passwords, every post would get the same 429
    # and none the work behind the password (a new email, a new password, a set-up).
    unlimited = {"login_max_failures": 10**6, "login_max_failures_per_ip": 10**6}
    reset_unlimited = {
        name: Rate(10**6, 60) for name in ("reset_limit_per_email", "reset_limit_per_ip")
    }
    app = create_app(dataclasses.replace(database, **unlimited, **reset_unlimited))
    with TestClient(app) as http:
        runtime: Runtime = app.state.runtime

        async def arrange() -> User:
            await add_signing_key(runtime)
            await add_oauth_client(runtime, first_party=True)
            return await add_user(runtime)

        user = http.blocking_portal.call(arrange)
        to_login = http.get(SECURITY, follow_redirects=False)
        login = http.get(to_login.headers["location"])
        fields = form_fields(login.text) | {"email": EMAIL, "password": PASSWORD}
        signed_in = http.post("/login", data=fields)
        assert urlsplit(str(signed_in.url)).path == SECURITY, signed_in.text
        yield Browser(http, runtime, user)


def _fuzzed_post(
    http: TestClient[Any],
    data: st.DataObject,
    path: str,
    valid: dict[str, list[str]],
    hidden: dict[str, str],
) -> None:
    """Post ``path`` each field of ``valid`` left out, valid or garbage, some of them again,
    with ``hidden`` as the page has them (so the post gets past the checks they are for); the
    answer is a page or a redirect, never a server error."""
    pairs = [(name.encode(), value) for name, values in (valid | {LOCALE_FIELD: ["es"]}).items()
             if (value := data.draw(_form_field(values), label=name)) is not None]  # fmt: skip
    if pairs:
        pairs += data.draw(st.lists(st.sampled_from(pairs), max_size=2), label="again")
    pairs += [(name.encode(), value.encode()) for name, value in hidden.items()]
    body = "&".join(f"{quote_from_bytes(name)}={quote_from_bytes(value)}" for name, value in pairs)
    response = http.post(
        path,
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert response.status_code < 500, response.text
    if response.status_code in (302, 303):
        assert response.headers["location"]
    else:
        assert response.headers["content-type"].startswith("text/html"), response.text


# Per form: eleven of them.
FORMS_FUZZ = settings(FUZZ, max_examples=sweep.examples(25))


@pytest.mark.parametrize("path", SIGN_IN_AND_RECOVERY_FORMS)
@FORMS_FUZZ
@given(data=st.data())
def test_sign_in_and_recovery_forms_answer_any_fields_with_a_page(
    browser: Browser, path: str, data: st.DataObject
) -> None:
    http = browser.http
    hidden = {}
    if path == "/login":
        # A flow of its own each time (prompt=login: the browser is signed in already), as
        # a right password spends the one it signs in with.
        page = http.get("/authorize", params=authorize_params(prompt="login"))
        hidden["flow"] = form_fields(page.text)["flow"]
    else:
        page = http.get(FORGOT_PATH)
    if path == RESET_PAGE_PATH:
        hidden["token"] = browser.call(stored_reset_token, browser.runtime, browser.user)
    hidden[csrf.FIELD] = form_fields(page.text)[csrf.FIELD]
    _fuzzed_post(http, data, path, SIGN_IN_AND_RECOVERY_FORMS[path], hidden)


@pytest.mark.parametrize("path", SECURITY_FORMS)
@FORMS_FUZZ
@given(data=st.data())
def test_security_page_forms_answer_any_fields_with_a_page(
    browser: Browser, path: str, data: st.DataObject
) -> None:
    http = browser.http
    page = http.get(SECURITY)
    if path == CONFIRM_TOTP:
        # A set-up under way, for the code to be tried against.
        begun = {"current_password": PASSWORD}
        page = http.post(f"{SECURITY}/totp", data=form_fields(page.text) | begun)
    assert page.status_code == 200, page.text
    shown = form_fields(page.text)
    hidden = {name: shown[name] for name in (csrf.FIELD, SIGNED_IN_FIELD)}
    if path == CONFIRM_TOTP:
        hidden["enrolment"] = shown["enrolment"]
    _fuzzed_post(http, data, path, SECURITY_FORMS[path], hidden)
