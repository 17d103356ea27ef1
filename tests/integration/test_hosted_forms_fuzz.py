"""Generated malformed posts to every hosted form: a page or a redirect, never a 500.

Each post carries what the page gave the browser (its CSRF token, the signed-in user it was
shown to, the flow or the link's token), so that it gets past those checks to the fields it
reads. A browser sends text as UTF-8; by hand, any bytes: half a surrogate pair as UTF-8
would spell it, NUL, control characters. Litestar's synchronous test client runs the app on
its own loop, so Hypothesis can drive it directly.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote_from_bytes, urlencode, urlsplit

import httpx
import pyotp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar.handlers import HTTPRouteHandler
from litestar.testing import TestClient

from identity.accounts.models import User
from identity.app import PAGE_ROUTES, create_app
from identity.clock import utcnow
from identity.permissions import invitations, repository
from identity.permissions.invitations import ACCEPT_PATH
from identity.permissions.models import Account
from identity.recovery.email_change import CONFIRM_PAGE_PATH
from identity.recovery.service import RESET_PAGE_PATH
from identity.runtime import Runtime
from identity.settings import Rate, Settings
from identity.web import cookies, csrf
from identity.web.authorization import ACCOUNT_PAGE
from identity.web.forms import LOCALE_FIELD, SIGNED_IN_FIELD
from identity.web.pages import CONSENT, DECISIONS
from identity.web.pages_account import SIGN_OUT_OTHERS
from identity.web.pages_memberships import CONFIRM_FIELD, USERS_PAGE, users_url
from identity.web.pages_recovery import FORGOT_PATH
from identity.web.pages_second_factor import PATH as SECOND_FACTOR
from identity.web.password_form import SUGGEST_FIELD
from tests import sweep
from tests.browser import (
    CLIENT_ID,
    EMAIL,
    PASSWORD,
    POST_LOGOUT_URI,
    add_oauth_client,
    add_user,
    authorize_params,
    form_fields,
)
from tests.conftest import add_signing_key
from tests.integration.account_helpers import add_member, invite_and_read_link, make_account
from tests.integration.fuzz_helpers import FUZZ, garbage
from tests.integration.oauth_helpers import make_user
from tests.integration.page_helpers import SECURITY, ask_email_change, link_in, mail_to, token_of
from tests.integration.recovery_helpers import NEW_PASSWORD, enrolled_user, stored_reset_token
from tests.integration.recovery_helpers import PASSWORD as TWO_STEP_PASSWORD

T = TypeVar("T")

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
# The Users page's forms, by what each does; leaving is the removal of oneself.
REMOVE = f"{USERS_PAGE}/{{user_id:uuid}}/remove"
USERS_FORMS = {
    "invite": f"{USERS_PAGE}/invite",
    "grants": f"{USERS_PAGE}/{{user_id:uuid}}/grants",
    "remove": REMOVE,
    "leave": REMOVE,
    "resend": f"{USERS_PAGE}/invitations/{{invitation_id:uuid}}/resend",
    "cancel": f"{USERS_PAGE}/invitations/{{invitation_id:uuid}}/cancel",
}
# The forms fuzzed below one test each, with the page state each needs.
OTHER_FORMS = {CONSENT, ACCOUNT_PAGE, SECOND_FACTOR, ACCEPT_PATH, CONFIRM_PAGE_PATH, "/logout"}
# Every hosted form is fuzzed: all that take a post but /authorize, an OIDC authorization
# request (test_oauth_fuzz.py's), which no page of ours posts.
assert {
    path
    for handler in PAGE_ROUTES
    if isinstance(handler, HTTPRouteHandler) and "POST" in handler.http_methods
    for path in handler.paths
} - {*SIGN_IN_AND_RECOVERY_FORMS, *SECURITY_FORMS, *USERS_FORMS.values(), *OTHER_FORMS} == {
    "/authorize"
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

    def sign_in(self, email: str = EMAIL) -> httpx.Response:
        """Signed in (as ``user``, or the user of ``email``) unless it is; the security page."""
        page = self.http.get(SECURITY, follow_redirects=False)
        if page.status_code == 200:
            return page
        login = self.http.get(page.headers["location"])
        fields = form_fields(login.text) | {"email": email, "password": PASSWORD}
        signed_in = self.http.post("/login", data=fields)
        assert urlsplit(str(signed_in.url)).path == SECURITY, signed_in.text
        return signed_in

    def sign_out(self) -> None:
        """The session cookie dropped, the CSRF one kept: a browser signed out."""
        self.http.cookies.delete(cookies.name(self.runtime.settings, cookies.SESSION))


@pytest.fixture
def browser(database: Settings) -> Iterator[Browser]:
    # Limits no fuzzer reaches: past a few wrong passwords, every post would get the same 429
    # and none the work behind the password (a new email, a new password, a set-up).
    unlimited = {"login_max_failures": 10**6, "login_max_failures_per_ip": 10**6}
    rates = ("reset_limit_per_email", "reset_limit_per_ip", "sign_in_limit_per_ip")
    app = create_app(
        dataclasses.replace(database, **unlimited, **{name: Rate(10**6, 60) for name in rates})
    )
    with TestClient(app) as http:
        runtime: Runtime = app.state.runtime

        async def arrange() -> User:
            await add_signing_key(runtime)
            await add_oauth_client(runtime, first_party=True)
            return await add_user(runtime)

        browser = Browser(http, runtime, http.blocking_portal.call(arrange))
        browser.sign_in()
        yield browser


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


def _shown(page: httpx.Response, path: str, *names: str) -> dict[str, str]:
    """The hidden ``names`` of ``page``, which must be the one at ``path`` (a redirect there
    followed)."""
    assert page.status_code == 200 and urlsplit(str(page.url)).path == path, page.text
    shown = form_fields(page.text)
    return {name: shown[name] for name in names}


# Per form: about twenty-five examples.
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


# --- the rest of signing in: consent, the account picker, the code step ----------------------

PARTNER = "partner"


@pytest.fixture
def partner(browser: Browser) -> Browser:
    """``browser``, with a client that is not first-party (its users are asked to consent)."""

    async def arrange() -> None:
        await add_oauth_client(browser.runtime, client_id=PARTNER, first_party=False)

    browser.call(arrange)
    return browser


@FORMS_FUZZ
@given(data=st.data())
def test_consent_form_answers_any_fields_with_a_page(partner: Browser, data: st.DataObject) -> None:
    http = partner.http
    # A flow of its own each time: an answer ends the one it answers.
    page = http.get("/authorize", params=authorize_params(client_id=PARTNER, prompt="consent"))
    hidden = _shown(page, CONSENT, "flow", csrf.FIELD, SIGNED_IN_FIELD)
    _fuzzed_post(http, data, CONSENT, {"decision": sorted(DECISIONS)}, hidden)


@pytest.fixture
def two_accounts(browser: Browser) -> tuple[Browser, list[Account]]:
    """``browser``, its user the owner of one account and a member of another (so that a
    sign-in asks which), and the two accounts."""

    async def arrange() -> list[Account]:
        runtime = browser.runtime
        own = await make_account(runtime, browser.user, "Acme")
        other = await make_account(runtime, await make_user(runtime), "Globex")
        await add_member(runtime, other, browser.user, ["invoices"])
        return [own, other]

    return browser, browser.call(arrange)


@FORMS_FUZZ
@given(data=st.data())
def test_account_picker_answers_any_fields_with_a_page(
    two_accounts: tuple[Browser, list[Account]], data: st.DataObject
) -> None:
    browser, accounts = two_accounts
    page = browser.http.get("/authorize", params=authorize_params())
    hidden = _shown(page, ACCOUNT_PAGE, "flow", csrf.FIELD, SIGNED_IN_FIELD)
    # "" is the page's own choice of no account.
    valid = {"account_id": [str(account.id) for account in accounts] + [""]}
    _fuzzed_post(browser.http, data, ACCOUNT_PAGE, valid, hidden)


TWO_STEP_EMAIL = "bo@example.com"


@pytest.fixture
def two_step(browser: Browser) -> tuple[Browser, pyotp.TOTP, list[str]]:
    """``browser``, and another user with two-step verification on: their code generator
    and recovery codes."""
    _, generator, codes = browser.call(enrolled_user, browser.runtime, TWO_STEP_EMAIL)
    return browser, generator, codes


@FORMS_FUZZ
@given(data=st.data())
def test_second_factor_form_answers_any_fields_with_a_page(
    two_step: tuple[Browser, pyotp.TOTP, list[str]], data: st.DataObject
) -> None:
    browser, generator, recovery_codes = two_step
    http = browser.http
    # The password step of a sign-in of its own each time, which a right code ends.
    login = http.get("/authorize", params=authorize_params(prompt="login"))
    proved = {"email": TWO_STEP_EMAIL, "password": TWO_STEP_PASSWORD}
    page = http.post("/login", data=form_fields(login.text) | proved)
    hidden = _shown(page, SECOND_FACTOR, "flow", csrf.FIELD)
    # The current code (spent once, then refused as a replay) or a recovery code.
    valid = {"code": [generator.now(), *recovery_codes]}
    _fuzzed_post(http, data, SECOND_FACTOR, valid, hidden)


# --- the Users page and invitations ------------------------------------------------------


@dataclass(frozen=True)
class Team:
    """An account of the browser's user, with a member and a pending invitation; and an
    account of someone else's the user owns too (to leave: the Users page, leaving included,
    is for owners and managers)."""

    account: Account
    target: User
    target_membership: uuid.UUID
    invitation_id: uuid.UUID
    other: Account
    own_membership: uuid.UUID


async def _team(runtime: Runtime, user: User) -> Team:
    account = await make_account(runtime, user, "Acme")
    target = await make_user(runtime)
    await add_member(runtime, account, target, ["invoices"])
    other = await make_account(runtime, await make_user(runtime), "Globex")
    await add_member(runtime, other, user, owner=True)
    await invite_and_read_link(runtime, account, f"{uuid.uuid4().hex}@example.com", ["tickets"])
    async with runtime.db.transaction() as session:
        (invitation,) = await invitations.pending(session, account.id, utcnow())
        membership = await repository.get_membership(session, account.id, target.id)
        own = await repository.get_membership(session, other.id, user.id)
    assert membership is not None and own is not None
    return Team(account, target, membership.id, invitation.id, other, own.id)


def _address(template: str, **ids: uuid.UUID) -> str:
    """A route's path with its ``{name:uuid}`` parameters filled in."""
    return re.sub(r"\{(\w+):uuid\}", lambda match: str(ids[match.group(1)]), template)


def _offered(page: httpx.Response, name: str) -> list[str]:
    """The values of every checkbox ``name`` of ``page``."""
    return sorted(set(re.findall(rf'name="{name}" value="([^"]*)"', page.text)))


@pytest.mark.parametrize("form", USERS_FORMS)
@FORMS_FUZZ
@given(data=st.data())
def test_users_page_forms_answer_any_fields_with_a_page(
    browser: Browser, form: str, data: st.DataObject
) -> None:
    http = browser.http
    # Its own accounts each time: a valid post removes the member, cancels the invitation.
    team = browser.call(_team, browser.runtime, browser.user)
    page = http.get(users_url(team.account.id))
    hidden = _shown(page, users_url(team.account.id), csrf.FIELD, SIGNED_IN_FIELD)
    grants = {
        "all_permissions": ["yes"],
        "permission": _offered(page, "permission"),
        "role": _offered(page, "role"),
    }
    valid = {
        "invite": {"email": [f"{uuid.uuid4().hex}@example.com"], "locale": ["en", "es"]} | grants,
        "grants": grants,
        "remove": {CONFIRM_FIELD: [str(team.target_membership)]},
        "leave": {CONFIRM_FIELD: [str(team.own_membership)]},
        "resend": {},
        "cancel": {},
    }[form]
    leaving = form == "leave"
    path = _address(
        USERS_FORMS[form],
        account_id=team.other.id if leaving else team.account.id,
        user_id=browser.user.id if leaving else team.target.id,
        invitation_id=team.invitation_id,
    )
    _fuzzed_post(http, data, path, valid, hidden)


async def _invitation(runtime: Runtime, email: str) -> str:
    """A new account's invitation to ``email``; the token its link carries."""
    account = await make_account(runtime, await make_user(runtime), "Initech")
    return await invite_and_read_link(runtime, account, email, ["invoices"])


@pytest.mark.parametrize("signed_in", [False, True], ids=["new user", "signed in"])
@FORMS_FUZZ
@given(data=st.data())
def test_invitation_accept_form_answers_any_fields_with_a_page(
    browser: Browser, signed_in: bool, data: st.DataObject
) -> None:
    http = browser.http
    # Someone else each time: an address is invited only so many times a day.
    invited = f"{uuid.uuid4().hex}@example.com"
    token = browser.call(_invitation, browser.runtime, invited)
    browser.sign_out()
    if signed_in:
        # A user of the invited address, signed in: the page asks only to confirm.
        browser.call(add_user, browser.runtime, invited)
        browser.sign_in(invited)
        valid = {}
    else:
        # Someone new: the page asks for a name and a password, and signs them in.
        valid = {
            "name": ["Bea"],
            "password": [NEW_PASSWORD],
            "password_confirm": [NEW_PASSWORD],
            SUGGEST_FIELD: ["1"],
        }
    page = http.get(ACCEPT_PATH, params={"token": token})
    hidden = _shown(page, ACCEPT_PATH, csrf.FIELD)
    # The link's token too: one typed or cut short by hand is as likely as any field.
    valid |= {"token": [token], "accept": ["yes"]}
    _fuzzed_post(http, data, ACCEPT_PATH, valid, hidden)


async def _pending_email_change(runtime: Runtime) -> str:
    """A new user's change of email under way; the token its confirmation link carries."""
    user = await add_user(runtime, f"{uuid.uuid4().hex}@example.com")
    new_email = f"{uuid.uuid4().hex}@example.com"
    await ask_email_change(runtime, user, new_email)
    (message,) = await mail_to(runtime, new_email)
    return token_of(link_in(message, CONFIRM_PAGE_PATH))


@FORMS_FUZZ
@given(data=st.data())
def test_email_change_confirmation_answers_any_fields_with_a_page(
    browser: Browser, data: st.DataObject
) -> None:
    http = browser.http
    token = browser.call(_pending_email_change, browser.runtime)
    page = http.get(CONFIRM_PAGE_PATH, params={"token": token})
    hidden = _shown(page, CONFIRM_PAGE_PATH, csrf.FIELD)
    _fuzzed_post(http, data, CONFIRM_PAGE_PATH, {"token": [token]}, hidden)


@FORMS_FUZZ
@given(data=st.data())
def test_logout_confirmation_answers_any_fields_with_a_page(
    browser: Browser, data: st.DataObject
) -> None:
    http = browser.http
    # Signed in again each time: confirming signs the browser out.
    browser.sign_in()
    asked = {"client_id": CLIENT_ID, "post_logout_redirect_uri": POST_LOGOUT_URI, "state": "s"}
    page = http.get(f"/logout?{urlencode(asked)}")
    hidden = _shown(page, "/logout", csrf.FIELD)
    valid = {name: [value] for name, value in asked.items()} | {
        "confirm": ["yes"],
        # No ID token: the form is the browser's own say-so.
        "id_token_hint": [],
    }
    _fuzzed_post(http, data, "/logout", valid, hidden)
