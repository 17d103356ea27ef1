"""The consent page: asked of third-party clients, remembered per client, scope and customer
account."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select, update

from identity.accounts.models import User
from identity.clock import utcnow
from identity.permissions import members
from identity.permissions.models import Account
from identity.runtime import Runtime
from identity.sessions import service as sessions
from identity.tokens.models import AuthorizationCode
from tests.browser import (
    CLIENT_ID,
    REDIRECT_URI,
    add_oauth_client,
    add_user,
    approve_consent,
    authorize_params,
    form_fields,
    pkce_pair,
    redirected_to_client,
    sign_in,
)
from tests.integration.account_helpers import SYSTEM, add_member, make_account
from tests.integration.oauth_helpers import consented_accounts, consented_scopes, make_user
from tests.integration.page_helpers import other_session, posted_twice


@pytest.fixture
async def third_party(runtime: Runtime) -> None:
    await add_user(runtime)
    await add_oauth_client(runtime)


def sent_to_consent(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/consent?flow="), location
    return location


@pytest.mark.usefixtures("third_party")
async def test_third_party_client_asks_consent_listing_the_scopes(
    client: httpx.AsyncClient,
) -> None:
    location = sent_to_consent(await sign_in(client))
    page = await client.get(location)
    assert page.status_code == 200
    assert "Web App" in page.text
    assert "Know who you are" in page.text
    assert "See your name" in page.text
    assert "See your email address" not in page.text


@pytest.mark.parametrize("is_admin", [False, True])
async def test_the_staff_scope_is_listed_only_for_staff_whose_tokens_carry_it(
    client: httpx.AsyncClient, runtime: Runtime, is_admin: bool
) -> None:
    user = await add_user(runtime)
    async with runtime.db.transaction() as session:
        await session.execute(update(User).where(User.id == user.id).values(is_admin=is_admin))
    await add_oauth_client(runtime, scope="openid profile identity:admin")

    signed_in = await sign_in(client, authorize_params(scope="openid identity:admin"))
    page = await client.get(sent_to_consent(signed_in))

    assert "Know who you are" in page.text
    assert ("Administer this service" in page.text) is is_admin


async def test_allowing_a_page_without_the_staff_scope_does_not_consent_to_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A user who is not staff allows what the page lists, which leaves identity:admin out:
    made staff later, they are asked before the app gets it, not handed it silently."""
    user = await add_user(runtime)
    await add_oauth_client(runtime, scope="openid profile identity:admin")
    asked = authorize_params(scope="openid identity:admin")
    await approve_consent(client, sent_to_consent(await sign_in(client, asked)))
    async with runtime.db.transaction() as session:
        await session.execute(update(User).where(User.id == user.id).values(is_admin=True))

    again = await client.get("/authorize", params=asked | {"state": "again"})

    page = await client.get(sent_to_consent(again))
    assert "Administer this service" in page.text
    # Until then, what they did allow is still remembered.
    narrower = await client.get("/authorize", params=authorize_params(scope="openid"))
    assert redirected_to_client(narrower)["code"]


@pytest.mark.usefixtures("third_party")
async def test_allowing_issues_the_code_and_is_remembered(client: httpx.AsyncClient) -> None:
    location = sent_to_consent(await sign_in(client))
    assert redirected_to_client(await approve_consent(client, location))["code"]
    again = await client.get("/authorize", params=authorize_params(state="again"))
    assert redirected_to_client(again)["state"] == "again"
    narrower = await client.get("/authorize", params=authorize_params(scope="openid"))
    assert redirected_to_client(narrower)["code"]


@pytest.mark.usefixtures("third_party")
async def test_a_wider_scope_asks_again_and_remembers_the_union(client: httpx.AsyncClient) -> None:
    await approve_consent(client, sent_to_consent(await sign_in(client)))
    wider = await client.get("/authorize", params=authorize_params(scope="openid email"))
    await approve_consent(client, sent_to_consent(wider))
    everything = authorize_params(scope="openid profile email", prompt="none")
    assert redirected_to_client(await client.get("/authorize", params=everything))["code"]


@pytest.mark.usefixtures("third_party")
async def test_denying_returns_access_denied_with_state_and_iss(client: httpx.AsyncClient) -> None:
    location = sent_to_consent(await sign_in(client))
    fields = form_fields((await client.get(location)).text)
    result = redirected_to_client(await client.post("/consent", data=fields | {"decision": "deny"}))
    assert result["error"] == "access_denied"
    assert result["state"] == "af0ifjsldkj"
    assert result["iss"] == "http://testserver.local"
    # Nothing was remembered: the next request asks again.
    sent_to_consent(await client.get("/authorize", params=authorize_params()))


@pytest.mark.usefixtures("third_party")
async def test_prompt_none_needing_consent_is_consent_required(client: httpx.AsyncClient) -> None:
    sent_to_consent(await sign_in(client))
    response = await client.get("/authorize", params=authorize_params(prompt="none"))
    assert redirected_to_client(response)["error"] == "consent_required"


@pytest.mark.usefixtures("third_party")
async def test_prompt_consent_asks_even_when_remembered(client: httpx.AsyncClient) -> None:
    await approve_consent(client, sent_to_consent(await sign_in(client)))
    response = await client.get("/authorize", params=authorize_params(prompt="consent"))
    assert redirected_to_client(await approve_consent(client, sent_to_consent(response)))["code"]


async def test_first_party_client_skips_consent(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    assert redirected_to_client(await sign_in(client))["code"]


@pytest.mark.usefixtures("third_party")
async def test_consent_without_csrf_token_shows_the_page_again(client: httpx.AsyncClient) -> None:
    location = sent_to_consent(await sign_in(client))
    fields = form_fields((await client.get(location)).text)
    forged = fields | {"csrf_token": "f" * 64, "decision": "allow"}
    response = await client.post("/consent", data=forged)
    assert response.status_code == 400
    assert "expired or was sent from another site" in response.text
    # The flow is intact: the real form still works.
    assert redirected_to_client(await approve_consent(client, location))["code"]


async def _codes_issued(runtime: Runtime) -> int:
    async with runtime.db.transaction() as session:
        return await session.scalar(select(func.count()).select_from(AuthorizationCode)) or 0


def _exchange(code: str, verifier: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        "client_id": CLIENT_ID,
    }


@pytest.mark.parametrize("at_once", [False, True])
@pytest.mark.parametrize("decision", ["allow", "deny"])
@pytest.mark.usefixtures("third_party")
async def test_a_double_submission_answers_as_the_first(
    client: httpx.AsyncClient, runtime: Runtime, decision: str, at_once: bool
) -> None:
    verifier, challenge = pkce_pair()
    location = sent_to_consent(await sign_in(client, authorize_params(code_challenge=challenge)))
    fields = form_fields((await client.get(location)).text) | {"decision": decision}
    if at_once:
        first, second = await asyncio.gather(
            *(client.post("/consent", data=fields) for _ in range(2))
        )
    else:
        first, second = await posted_twice(client, "/consent", fields)
    # The same redirect twice: one consent gives the app one code, whichever answer the
    # browser shows.
    assert first.headers["location"] == second.headers["location"]
    if decision == "deny":
        assert redirected_to_client(second)["error"] == "access_denied"
        assert await _codes_issued(runtime) == 0
        return
    assert await _codes_issued(runtime) == 1
    tokens = await client.post(
        "/token", data=_exchange(redirected_to_client(second)["code"], verifier)
    )
    assert tokens.status_code == 200, tokens.text


@pytest.mark.usefixtures("third_party")
async def test_a_consent_posted_again_after_its_code_was_redeemed_says_so(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    verifier, challenge = pkce_pair()
    location = sent_to_consent(await sign_in(client, authorize_params(code_challenge=challenge)))
    fields = form_fields((await client.get(location)).text) | {"decision": "allow"}
    code = redirected_to_client(await client.post("/consent", data=fields))["code"]
    assert (await client.post("/token", data=_exchange(code, verifier))).status_code == 200

    # Back and the same answer again: the code the app holds is not handed out a second
    # time (the app presenting it again would revoke its tokens), nor is a new one issued.
    again = await client.post("/consent", data=fields)

    assert again.status_code == 409, again.headers
    assert "already answered" in again.text
    assert await _codes_issued(runtime) == 1


@pytest.mark.parametrize(("first", "then"), [("allow", "deny"), ("deny", "allow")])
@pytest.mark.usefixtures("third_party")
async def test_a_consent_posted_again_with_another_decision_gets_the_first_answer(
    client: httpx.AsyncClient, runtime: Runtime, first: str, then: str
) -> None:
    location = sent_to_consent(await sign_in(client))
    fields = form_fields((await client.get(location)).text)
    answer = await client.post("/consent", data=fields | {"decision": first})

    other = await client.post("/consent", data=fields | {"decision": then})

    # The first answer is the one: the second is told its outcome, with no second code.
    assert other.headers["location"] == answer.headers["location"]
    assert await _codes_issued(runtime) == (1 if first == "allow" else 0)
    remembered = authorize_params(prompt="none")
    outcome = redirected_to_client(await client.get("/authorize", params=remembered))
    assert ("code" in outcome) == (first == "allow")


@pytest.mark.usefixtures("third_party")
async def test_consent_after_the_session_ended_goes_back_to_login(
    client: httpx.AsyncClient,
) -> None:
    location = sent_to_consent(await sign_in(client))
    fields = form_fields((await client.get(location)).text) | {"decision": "allow"}
    client.cookies.delete("identity_session")
    response = await client.post("/consent", data=fields)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?flow=")
    assert CLIENT_ID not in response.headers["location"]


@pytest.mark.usefixtures("third_party")
async def test_a_page_left_open_while_another_user_signed_in_gives_no_consent(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    page = await client.get(sent_to_consent(await sign_in(client)))
    # Another tab of this browser signs in as Bea: the page shown while Ana signed in must
    # not hand the client Bea's account, nor remember a consent Bea never saw.
    bea = await add_user(runtime, "bea@example.com")
    client.cookies.set("identity_session", await other_session(runtime, bea))

    refused = await client.post("/consent", data=form_fields(page.text) | {"decision": "allow"})

    assert refused.status_code == 409, refused.headers
    assert "This page was opened while someone else was signed in" in refused.text
    assert await consented_scopes(runtime, bea.id, CLIENT_ID) == set()
    # The page it answered with is Bea's own, and works.
    allowed = await client.post("/consent", data=form_fields(refused.text) | {"decision": "allow"})
    assert redirected_to_client(allowed)["code"]


async def test_the_services_own_scopes_are_described_in_the_page_language(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_user(runtime)
    await add_oauth_client(runtime, scope="openid identity:accounts acme:reports")
    params = authorize_params(scope="openid identity:accounts acme:reports", ui_locales="es")
    page = await client.get(sent_to_consent(await sign_in(client, params)))
    assert "Gestionar las cuentas a las que perteneces" in page.text
    assert "identity:accounts" not in page.text  # described, not named
    assert "Usar «acme:reports»" in page.text  # a scope of another service: named


@pytest.mark.usefixtures("third_party")
async def test_two_consents_given_at_once_are_both_remembered(client: httpx.AsyncClient) -> None:
    """Each approval reads what was granted before and stores it with its own scopes: on
    SQLite both read before either wrote, and the second stored over the first."""
    first = await sign_in(client, authorize_params(scope="openid"))
    await approve_consent(client, sent_to_consent(first))
    pages = []
    for scope in ("openid profile", "openid email"):
        wider = await client.get("/authorize", params=authorize_params(scope=scope))
        pages.append(await client.get(sent_to_consent(wider)))

    approvals = await asyncio.gather(
        *(
            client.post("/consent", data=form_fields(page.text) | {"decision": "allow"})
            for page in pages
        )
    )

    for approval in approvals:
        assert redirected_to_client(approval)["code"]
    everything = authorize_params(scope="openid profile email", prompt="none")
    assert redirected_to_client(await client.get("/authorize", params=everything))["code"]


@pytest.mark.usefixtures("third_party")
async def test_a_consent_posted_again_after_signing_out_is_no_repeat(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    location = sent_to_consent(await sign_in(client))
    fields = form_fields((await client.get(location)).text) | {"decision": "allow"}
    assert redirected_to_client(await client.post("/consent", data=fields))["code"]
    async with runtime.db.transaction() as session:
        assert await sessions.end(session, client.cookies["identity_session"], utcnow())

    # The sign-in is over: the request that issued its code does not come back to life.
    again = await client.post("/consent", data=fields)
    assert again.status_code == 400 and "expired" in again.text
    assert (await client.get(location.replace("/consent", "/login"))).status_code == 400


async def _in_two_accounts(runtime: Runtime) -> tuple[User, Account, Account]:
    """Ana owns her small Acme and may pay invoices at the large Globex."""
    ana = await add_user(runtime)
    acme = await make_account(runtime, ana, "Acme")
    globex = await make_account(runtime, await make_user(runtime), "Globex")
    await add_member(runtime, globex, ana, ["invoices"])
    await add_oauth_client(runtime)
    return ana, acme, globex


def for_account(account: Account, **params: str) -> dict[str, str]:
    return authorize_params(account_id=str(account.id), **params)


async def test_consent_given_for_one_account_does_not_cover_another(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Tokens carry the account's permissions: allowing the app in Acme is not allowing it
    to act in Globex, which it could otherwise pre-select with no question asked."""
    _, acme, globex = await _in_two_accounts(runtime)
    first = await client.get(sent_to_consent(await sign_in(client, for_account(acme))))
    assert "for the account Acme" in first.text
    await client.post("/consent", data=form_fields(first.text) | {"decision": "allow"})

    silent = await client.get("/authorize", params=for_account(globex, prompt="none"))
    assert redirected_to_client(silent)["error"] == "consent_required"
    asked = await client.get("/authorize", params=for_account(globex))
    page = await client.get(sent_to_consent(asked))
    assert "for the account Globex" in page.text and "Acme" not in page.text
    # The account consented to before is still covered, without a question.
    again = await client.get("/authorize", params=for_account(acme, prompt="none"))
    assert redirected_to_client(again)["code"]

    allowed = await client.post("/consent", data=form_fields(page.text) | {"decision": "allow"})

    assert redirected_to_client(allowed)["code"]
    for account in (acme, globex):
        both = await client.get("/authorize", params=for_account(account, prompt="none"))
        assert redirected_to_client(both)["code"]


async def test_denying_another_account_keeps_the_first_one_allowed(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, acme, globex = await _in_two_accounts(runtime)
    await approve_consent(client, sent_to_consent(await sign_in(client, for_account(acme))))
    page = await client.get(
        sent_to_consent(await client.get("/authorize", params=for_account(globex)))
    )

    denied = await client.post("/consent", data=form_fields(page.text) | {"decision": "deny"})

    assert redirected_to_client(denied)["error"] == "access_denied"
    silent = await client.get("/authorize", params=for_account(globex, prompt="none"))
    assert redirected_to_client(silent)["error"] == "consent_required"
    kept = await client.get("/authorize", params=for_account(acme, prompt="none"))
    assert redirected_to_client(kept)["code"]


async def test_consent_given_without_an_account_is_asked_again_once_in_one(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A user in no account consented for tokens without account claims (as did everyone
    before consents named accounts): once in an account, its tokens carry its permissions."""
    ana = await add_user(runtime)
    await add_oauth_client(runtime)
    await approve_consent(client, sent_to_consent(await sign_in(client)))
    acme = await make_account(runtime, ana, "Acme")

    silent = await client.get("/authorize", params=authorize_params(prompt="none"))

    assert redirected_to_client(silent)["error"] == "consent_required"
    page = await client.get(
        sent_to_consent(await client.get("/authorize", params=authorize_params()))
    )
    assert "for the account Acme" in page.text
    await client.post("/consent", data=form_fields(page.text) | {"decision": "allow"})
    assert redirected_to_client(await client.get("/authorize", params=for_account(acme)))["code"]


async def test_a_member_removed_and_added_again_keeps_the_consent(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Consent is the user's word about the app in that account; the app's tokens carry the
    permissions the member has now, so a new membership changes what they allow, not who."""
    ana, _, globex = await _in_two_accounts(runtime)
    await approve_consent(client, sent_to_consent(await sign_in(client, for_account(globex))))
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, globex.id, ana.id, utcnow())
    await add_member(runtime, globex, ana, ["invoices"])

    silent = await client.get("/authorize", params=for_account(globex, prompt="none"))

    assert redirected_to_client(silent)["code"]


async def test_the_account_is_named_in_spanish_and_escaped(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    ana = await add_user(runtime)
    await make_account(runtime, ana, "<b>Tom & Jerry</b>")
    await add_oauth_client(runtime)

    signed_in = await sign_in(client, authorize_params(ui_locales="es"))
    page = await client.get(sent_to_consent(signed_in))

    assert "para la cuenta &lt;b&gt;Tom &amp; Jerry&lt;/b&gt;" in page.text
    assert "<b>Tom" not in page.text


async def test_allowing_a_page_that_named_another_account_asks_again(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Moved from Acme to Globex while the page naming Acme was open: the single account
    picked on resume is Globex, which the user was never asked about."""
    ana, owner = await add_user(runtime), await make_user(runtime)
    acme = await make_account(runtime, owner, "Acme")
    globex = await make_account(runtime, owner, "Globex")
    await add_member(runtime, acme, ana, ["invoices"])
    await add_oauth_client(runtime)
    page = await client.get(sent_to_consent(await sign_in(client)))
    assert "for the account Acme" in page.text
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, acme.id, ana.id, utcnow())
    await add_member(runtime, globex, ana, ["invoices"])

    allowed = await client.post("/consent", data=form_fields(page.text) | {"decision": "allow"})

    again = await client.get(sent_to_consent(allowed))
    assert "for the account Globex" in again.text
    assert await consented_accounts(runtime, ana.id, CLIENT_ID) == set()


@pytest.mark.parametrize("existing", [False, True])
async def test_two_accounts_allowed_at_once_are_both_remembered(
    client: httpx.AsyncClient, runtime: Runtime, existing: bool
) -> None:
    """Two tabs, one page per account, allowed together: neither answer is lost, whether
    both insert the consent or both add an account to one given before."""
    ana, acme, globex = await _in_two_accounts(runtime)
    initech = await make_account(runtime, ana, "Initech")
    signed_in = await sign_in(client, for_account(acme))
    if existing:
        await approve_consent(client, sent_to_consent(signed_in))
    pages = [
        await client.get(sent_to_consent(await client.get("/authorize", params=for_account(a))))
        for a in (globex, initech)
    ]

    approvals = await asyncio.gather(
        *(
            client.post("/consent", data=form_fields(page.text) | {"decision": "allow"})
            for page in pages
        )
    )

    for approval in approvals:
        assert redirected_to_client(approval)["code"]
    granted = await consented_accounts(runtime, ana.id, CLIENT_ID)
    assert granted == {globex.id, initech.id} | ({acme.id} if existing else set())
