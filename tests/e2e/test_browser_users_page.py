"""An owner invites a sub-user on the Users page in Chromium; the sub-user accepts from the
emailed link as a new person, signs in, and gets a token for the account with exactly the
permissions the owner ticked. And removing a member there asks first: "Cancel" keeps them;
a plain member leaves from the security page."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from playwright.sync_api import Browser, Page, Route

from identity.audit.service import Actor
from identity.clock import utcnow
from identity.db.engine import Database
from identity.permissions import customer_accounts, members
from identity.permissions.catalogue import Catalogue, load_policies
from identity.settings import Settings
from tests.browser import PASSWORD, authorize_params, chromium, pkce_pair, query
from tests.e2e.flows import cli
from tests.e2e.test_browser_sign_in import redirect_listener
from tests.processes import identity_server

OWNER = "owner@example.com"
SUB_USER = "billing.clerk@example.com"
COLLEAGUE = "colleague@example.com"


async def _create_account(settings: Settings, owner_id: str) -> str:
    """No command creates accounts (staff use the API): arrange it through the service."""
    db = Database.from_settings(settings)
    try:
        async with db.transaction() as session:
            account = await customer_accounts.create_account(
                session,
                Actor(client_id="e2e"),
                name="Acme Hosting",
                owner_user_id=uuid.UUID(owner_id),
                now=utcnow(),
            )
        return str(account.id)
    finally:
        await db.dispose()


async def _add_member(
    settings: Settings, account_id: str, user_id: str, *, owner: bool = False
) -> None:
    db = Database.from_settings(settings)
    try:
        async with db.transaction() as session:
            await members.add_member(
                session,
                Actor(client_id="e2e"),
                uuid.UUID(account_id),
                uuid.UUID(user_id),
                is_owner=owner,
                catalogue=Catalogue(load_policies(settings.policies_dir)),
                now=utcnow(),
            )
    finally:
        await db.dispose()


def _confirm_twice(page: Page, button_name: str = "Remove") -> None:
    """A double click on the confirmation's button as the browser lives it: the first post
    removes, but the browser drops its answer for the second post's, the one shown.
    Chromium merges a ``dblclick`` into one post and two clicks race the first answer, so
    the first answer is taken out of the browser's hands instead."""
    first_answers: list[int] = []

    def drop_the_first_answer(route: Route) -> None:
        if first_answers or route.request.method != "POST":
            route.continue_()
            return
        first_answers.append(route.fetch(max_redirects=0).status)
        route.fulfill(status=204)  # no content: the browser stays on the question

    page.route("**/remove?*", drop_the_first_answer)
    button = page.get_by_role("button", name=button_name, exact=True)
    with page.expect_response(lambda answer: answer.request.method == "POST"):
        button.click()
    assert first_answers, "the first post was not made"
    with page.expect_navigation():
        button.click()
    page.unroute("**/remove?*")


def mailed_link(outbox: Path, to: str, path: str, timeout: float = 15) -> str:
    """The link to ``path`` in an email to ``to`` that the dispatcher wrote to the outbox."""
    pattern = re.compile(rf"https?://\S+{re.escape(path)}\?token=\S+")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mail in sorted(outbox.glob("*.eml")) if outbox.exists() else []:
            message = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
            body = message.get_body(preferencelist=("plain",))
            match = pattern.search(body.get_content()) if body else None
            if message["To"] == to and match:
                return match.group(0)
        time.sleep(0.2)
    raise AssertionError(f"no email to {to} with a link to {path} in {outbox}")


def _invite_on_the_users_page(browser: Browser, base_url: str, account_id: str) -> None:
    page = browser.new_context().new_page()
    users_page = f"{base_url}/accounts/{account_id}/users"
    page.goto(users_page)
    # Signed out: the login page first, then back to the Users page.
    assert page.url.startswith(f"{base_url}/login?flow=")
    page.fill("input[name=email]", OWNER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{users_page}?ui_locales=en")
    assert "Users of Acme Hosting" in page.content()
    page.fill("#invite-email", SUB_USER)
    page.check("#invite-p-invoices")
    page.check("#invite-p-tickets")
    page.click("form#invite button[type=submit]")
    page.wait_for_url(f"{users_page}?done=invited&ui_locales=en")
    assert "The invitation has been sent." in page.content()
    assert SUB_USER in page.text_content("table:nth-of-type(2)")  # pending invitations


def _accept_as_new_person(browser: Browser, link: str) -> None:
    page = browser.new_context().new_page()
    page.goto(link)
    assert "Acme Hosting" in page.content()
    page.fill("#name", "Bill Clerk")
    page.fill("#password", PASSWORD)
    page.fill("#password_confirm", PASSWORD)
    page.click("button[name=accept]")
    page.wait_for_load_state()
    page.wait_for_selector("text=You are now a member")


@pytest.mark.e2e
def test_an_owner_invites_a_sub_user_who_accepts_and_gets_the_chosen_permissions(
    env: dict[str, str],
) -> None:
    env = {name: value for name, value in env.items() if name != "IDENTITY_ISSUER"}
    with redirect_listener() as (redirect_uri, received), identity_server(env) as server:
        owner = cli(env, "users", "create", "--email", OWNER, "--password-stdin", stdin=PASSWORD)
        registered = cli(
            env,
            "clients",
            "create",
            "--name",
            "Portal",
            "--first-party",
            "--redirect-uri",
            redirect_uri,
            "--scope",
            "openid",
        )
        settings = Settings.from_env(env | {"IDENTITY_ISSUER": server.base_url})
        account_id = asyncio.run(_create_account(settings, owner["id"]))
        discovery = httpx.get(f"{server.base_url}/.well-known/openid-configuration").json()
        verifier, challenge = pkce_pair()
        params = authorize_params(
            client_id=registered["client_id"],
            redirect_uri=redirect_uri,
            scope="openid",
            state=secrets.token_urlsafe(16),
            nonce=None,
            code_challenge=challenge,
        )
        authorize_url = f"{discovery['authorization_endpoint']}?{urlencode(params)}"

        with chromium() as browser:
            _invite_on_the_users_page(browser, server.base_url, account_id)
            link = mailed_link(settings.outbox_dir, SUB_USER, "/invitations/accept")
            assert link.startswith(f"{server.base_url}/invitations/accept?token=")
            _accept_as_new_person(browser, link)
            # The sub-user signs in to the portal in a fresh browser: one account, no picker.
            page = browser.new_context().new_page()
            page.goto(authorize_url)
            page.fill("input[name=email]", SUB_USER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{redirect_uri}?*")

        callbacks = [path for path in received if path.startswith("/callback?")]
        assert len(callbacks) == 1
        tokens = httpx.post(
            discovery["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": query(callbacks[0])["code"],
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            auth=(registered["client_id"], registered["client_secret"]),
        )
        assert tokens.status_code == 200, tokens.text
        jwks = KeySet.import_key_set(httpx.get(discovery["jwks_uri"]).json())
        claims = jwt.decode(tokens.json()["access_token"], jwks).claims
        assert claims["account_id"] == account_id
        assert claims["permissions"] == ["invoices", "tickets"]
        assert claims["account_owner"] is False


@contextmanager
def _users_page_of(env: dict[str, str], who: str, *, colleague_owner: bool) -> Iterator[Page]:
    """Chromium on Acme Hosting's Users page, signed in as ``who`` (the owner or the
    colleague, who is a member too: an owner as well if ``colleague_owner``)."""
    env = {name: value for name, value in env.items() if name != "IDENTITY_ISSUER"}
    with identity_server(env) as server:
        owner = cli(env, "users", "create", "--email", OWNER, "--password-stdin", stdin=PASSWORD)
        colleague = cli(
            env, "users", "create", "--email", COLLEAGUE, "--password-stdin", stdin=PASSWORD
        )
        settings = Settings.from_env(env | {"IDENTITY_ISSUER": server.base_url})
        account_id = asyncio.run(_create_account(settings, owner["id"]))
        asyncio.run(_add_member(settings, account_id, colleague["id"], owner=colleague_owner))
        users_page = f"{server.base_url}/accounts/{account_id}/users"

        with chromium() as browser:
            page = browser.new_context().new_page()
            page.goto(users_page)
            page.fill("input[name=email]", who)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{users_page}?ui_locales=en")
            yield page


@pytest.mark.e2e
def test_removing_a_member_asks_first_and_cancel_keeps_them(env: dict[str, str]) -> None:
    with _users_page_of(env, OWNER, colleague_owner=False) as page:
        users_page = page.url
        members = page.locator("table").first

        with page.expect_navigation():
            page.get_by_role("button", name=f"Remove {COLLEAGUE}").click()
        assert page.locator("h1").text_content() == f"Remove {COLLEAGUE}?"
        assert page.title().startswith(f"Remove {COLLEAGUE}?")
        question = f"Remove {COLLEAGUE} from Acme Hosting? They lose access at once."
        assert page.locator("#remove-question").text_content() == question
        with page.expect_navigation():
            page.get_by_role("link", name="Cancel").click()
        assert page.url == users_page
        assert COLLEAGUE in (members.text_content() or "")

        with page.expect_navigation():
            page.get_by_role("button", name=f"Remove {COLLEAGUE}").click()
        _confirm_twice(page)
        # The second post finds the colleague gone already: done, as the first said.
        assert page.url == users_page.replace("?ui_locales=en", "?done=removed&ui_locales=en")
        assert page.get_by_role("status").text_content() == "The member has been removed."
        assert COLLEAGUE not in (members.text_content() or "")


@pytest.mark.e2e
def test_leaving_an_account_posted_twice_says_one_has_left(env: dict[str, str]) -> None:
    with _users_page_of(env, COLLEAGUE, colleague_owner=True) as page:
        base_url = page.url.split("/accounts/")[0]
        with page.expect_navigation():
            page.get_by_role("button", name=f"Remove {COLLEAGUE}").click()
        assert page.locator("h1").text_content() == "Leave Acme Hosting?"
        _confirm_twice(page, "Leave")

        assert page.get_by_role("status").text_content() == "You have left Acme Hosting."
        with page.expect_navigation():
            page.get_by_role("link", name="Security").click()
        assert page.url == f"{base_url}/account/security?ui_locales=en"


@pytest.mark.e2e
def test_a_plain_member_leaves_from_the_security_page(env: dict[str, str]) -> None:
    # Signed in where the Users page refuses them (no `users`), and free to leave all the same.
    with _users_page_of(env, COLLEAGUE, colleague_owner=False) as page:
        security = page.url.split("/accounts/")[0] + "/account/security"
        page.goto(security)
        leave = page.get_by_role("button", name="Leave Acme Hosting")
        with page.expect_navigation():
            leave.click()
        assert page.locator("h1").text_content() == "Leave Acme Hosting?"
        with page.expect_navigation():
            page.get_by_role("link", name="Cancel").click()
        assert page.url == f"{security}?ui_locales=en"

        with page.expect_navigation():
            leave.click()
        with page.expect_navigation():
            page.get_by_role("button", name="Leave", exact=True).click()
        assert page.get_by_role("status").text_content() == "You have left Acme Hosting."
