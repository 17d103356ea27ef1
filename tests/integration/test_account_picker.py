"""Choosing the customer account at sign-in: the picker page, the ``account_id`` request
parameter, prompt=none, and the account the code and its tokens are then for."""

from __future__ import annotations

from typing import Any

import httpx

from identity.accounts.models import User
from identity.audit.service import Actor
from identity.clients.service import ClientChange, update_client
from identity.clock import utcnow
from identity.permissions import members
from identity.permissions.models import Account
from identity.runtime import Runtime
from identity.sessions import service as sessions
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
    submit_login,
)
from tests.integration.account_helpers import SYSTEM, add_member, make_account
from tests.integration.oauth_helpers import make_user, verify_with_jwks
from tests.integration.page_helpers import other_session, posted_twice


async def _two_accounts(runtime: Runtime) -> tuple[User, Account, Account]:
    """The signed-in person owns Acme and may pay invoices at Globex."""
    ana = await add_user(runtime)
    acme = await make_account(runtime, ana, "Acme")
    globex = await make_account(runtime, await make_user(runtime), "Globex")
    await add_member(runtime, globex, ana, ["invoices"])
    return ana, acme, globex


async def _access_claims(
    http: httpx.AsyncClient, response: httpx.Response, verifier: str
) -> dict[str, Any]:
    """Redeem the code the browser brought back; the access token's claims."""
    code = redirected_to_client(response)["code"]
    tokens = await http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "client_id": CLIENT_ID,
        },
    )
    assert tokens.status_code == 200, tokens.text
    return dict((await verify_with_jwks(http, tokens.json()["access_token"])).claims)


async def test_a_user_with_several_accounts_picks_one_after_signing_in(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime, first_party=True)
    _, acme, globex = await _two_accounts(runtime)
    verifier, challenge = pkce_pair()

    signed_in = await sign_in(client, authorize_params(code_challenge=challenge))

    assert signed_in.status_code == 303
    assert signed_in.headers["location"].startswith("/login/account?flow=")
    picker = await client.get(signed_in.headers["location"])
    assert picker.status_code == 200
    assert "Acme" in picker.text and "Globex" in picker.text
    chosen = await client.post(
        "/login/account", data=form_fields(picker.text) | {"account_id": str(globex.id)}
    )
    claims = await _access_claims(client, chosen, verifier)
    assert claims["account_id"] == str(globex.id)
    assert claims["permissions"] == ["invoices"]
    assert claims["account_owner"] is False
    assert str(acme.id) not in str(claims)


async def test_a_choice_posted_twice_answers_as_the_first(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime, first_party=True)
    _, _, globex = await _two_accounts(runtime)
    verifier, challenge = pkce_pair()
    signed_in = await sign_in(client, authorize_params(code_challenge=challenge))
    picker = await client.get(signed_in.headers["location"])
    fields = form_fields(picker.text) | {"account_id": str(globex.id)}

    first, second = await posted_twice(client, "/login/account", fields)

    assert redirected_to_client(first)["code"]
    assert (await _access_claims(client, second, verifier))["account_id"] == str(globex.id)
    # Another account is another choice, not the first one again: the step is over.
    other = await client.post("/login/account", data=fields | {"account_id": "x"})
    assert other.status_code == 400 and "expired" in other.text


async def test_the_picker_speaks_spanish(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await add_oauth_client(runtime, first_party=True)
    await _two_accounts(runtime)

    signed_in = await sign_in(client, authorize_params(ui_locales="es"))
    picker = await client.get(signed_in.headers["location"])

    assert picker.status_code == 200
    assert '<html lang="es">' in picker.text
    assert "Elige una cuenta" in picker.text and "Titular" in picker.text


async def test_the_client_preselects_an_account_of_the_user(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime, first_party=True)
    _, acme, _ = await _two_accounts(runtime)
    verifier, challenge = pkce_pair()

    signed_in = await sign_in(
        client, authorize_params(code_challenge=challenge, account_id=str(acme.id))
    )

    claims = await _access_claims(client, signed_in, verifier)
    assert claims["account_id"] == str(acme.id)
    assert claims["account_owner"] is True


async def test_a_preselected_account_the_user_is_not_in_shows_the_picker(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime, first_party=True)
    ana = await add_user(runtime)
    await make_account(runtime, ana, "Acme")
    initech = await make_account(runtime, await make_user(runtime), "Initech")

    signed_in = await sign_in(client, authorize_params(account_id=str(initech.id)))

    # Not swapped silently for the one account Ana has: she sees what happened and picks.
    assert signed_in.headers["location"].startswith("/login/account?flow=")
    picker = await client.get(signed_in.headers["location"])
    assert "not a member" in picker.text
    assert "Acme" in picker.text and "Initech" not in picker.text


async def test_a_user_with_one_account_skips_the_picker(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime, first_party=True)
    acme = await make_account(runtime, await add_user(runtime), "Acme")
    verifier, challenge = pkce_pair()

    signed_in = await sign_in(client, authorize_params(code_challenge=challenge))

    claims = await _access_claims(client, signed_in, verifier)
    assert claims["account_id"] == str(acme.id)


async def test_a_user_without_accounts_gets_tokens_without_account_claims(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime, first_party=True)
    await add_user(runtime)
    verifier, challenge = pkce_pair()

    signed_in = await sign_in(client, authorize_params(code_challenge=challenge))

    claims = await _access_claims(client, signed_in, verifier)
    assert not {"account_id", "permissions", "account_owner"} & set(claims)


async def test_prompt_none_with_several_accounts_answers_account_selection_required(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime, first_party=True)
    _, acme, _ = await _two_accounts(runtime)
    signed_in = await sign_in(client, authorize_params(account_id=str(acme.id)))
    redirected_to_client(signed_in)

    silent = await client.get("/authorize", params=authorize_params(prompt="none"))
    preselected = await client.get(
        "/authorize", params=authorize_params(prompt="none", account_id=str(acme.id))
    )

    result = redirected_to_client(silent)
    assert result["error"] == "account_selection_required"
    assert result["state"] == "af0ifjsldkj"
    assert "code" in redirected_to_client(preselected)


async def test_picking_an_account_of_someone_else_shows_the_picker_again(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime, first_party=True)
    await _two_accounts(runtime)
    initech = await make_account(runtime, await make_user(runtime), "Initech")
    signed_in = await sign_in(client, authorize_params())
    picker = await client.get(signed_in.headers["location"])

    chosen = await client.post(
        "/login/account", data=form_fields(picker.text) | {"account_id": str(initech.id)}
    )

    assert chosen.status_code == 303
    assert chosen.headers["location"].startswith("/login/account?flow=")


async def test_an_account_left_while_the_picker_was_open_is_not_swapped_for_another(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The user chose Globex; removed from it while the page was open, they are asked again,
    told why, rather than sent to the app signed in to Acme, which they never chose."""
    await add_oauth_client(runtime, first_party=True)
    ana, acme, globex = await _two_accounts(runtime)
    verifier, challenge = pkce_pair()
    signed_in = await sign_in(client, authorize_params(code_challenge=challenge))
    picker = await client.get(signed_in.headers["location"])
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, globex.id, ana.id, utcnow())

    chosen = await client.post(
        "/login/account", data=form_fields(picker.text) | {"account_id": str(globex.id)}
    )

    assert chosen.status_code == 303
    assert chosen.headers["location"].startswith("/login/account?flow=")
    again = await client.get(chosen.headers["location"])
    assert "The account you chose is no longer one of yours" in again.text
    assert "Globex" not in again.text
    # Acme, chosen now, is the account the app gets.
    confirmed = await client.post(
        "/login/account", data=form_fields(again.text) | {"account_id": str(acme.id)}
    )
    assert (await _access_claims(client, confirmed, verifier))["account_id"] == str(acme.id)


async def test_a_picker_left_open_while_another_user_signed_in_picks_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime, first_party=True)
    _, acme, globex = await _two_accounts(runtime)
    bea = await add_user(runtime, "bea@example.com")
    await add_member(runtime, acme, bea, ["tickets"])
    await add_member(runtime, globex, bea, ["tickets"])
    signed_in = await sign_in(client)
    picker = await client.get(signed_in.headers["location"])
    # Another tab of this browser signs in as Bea: the choice made on Ana's list must not
    # send the client a code for Bea.
    client.cookies.set("identity_session", await other_session(runtime, bea))

    refused = await client.post(
        "/login/account", data=form_fields(picker.text) | {"account_id": str(globex.id)}
    )

    assert refused.status_code == 409, refused.headers
    assert "This page was opened while someone else was signed in" in refused.text
    # The list it answered with is Bea's own, and works.
    chosen = await client.post(
        "/login/account", data=form_fields(refused.text) | {"account_id": str(acme.id)}
    )
    assert redirected_to_client(chosen)["code"]


async def test_a_pick_is_the_choice_of_the_user_who_made_it_not_of_the_next_one(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Ana picked Globex, then "Use another user" signed Bea in to the same sign-in: Bea,
    in Globex too, is asked which account, not given Ana's pick."""
    await add_oauth_client(runtime)
    _, acme, globex = await _two_accounts(runtime)
    bea = await add_user(runtime, "bea@example.com")
    await add_member(runtime, acme, bea, ["tickets"])
    await add_member(runtime, globex, bea, ["tickets"])
    signed_in = await sign_in(client, authorize_params(prompt="consent"))
    picker = await client.get(signed_in.headers["location"])
    chosen = await client.post(
        "/login/account", data=form_fields(picker.text) | {"account_id": str(globex.id)}
    )
    assert chosen.headers["location"].startswith("/consent?flow=")
    flow = chosen.headers["location"].removeprefix("/consent?flow=")

    login = await client.get(f"/login?flow={flow}")
    assert login.status_code == 200, login.text
    as_bea = await submit_login(client, login, email="bea@example.com")

    assert as_bea.status_code == 303
    assert as_bea.headers["location"].startswith("/login/account?flow="), as_bea.headers
    bea_picker = await client.get(as_bea.headers["location"])
    assert "Acme" in bea_picker.text and "Globex" in bea_picker.text
    assert "no longer one of yours" not in bea_picker.text


async def test_the_picker_refuses_a_post_without_its_csrf_token(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime, first_party=True)
    _, acme, _ = await _two_accounts(runtime)
    signed_in = await sign_in(client, authorize_params())
    picker = await client.get(signed_in.headers["location"])
    fields = form_fields(picker.text)
    del fields["csrf_token"]

    refused = await client.post("/login/account", data=fields | {"account_id": str(acme.id)})

    assert refused.status_code == 400
    assert "This form has expired" in refused.text
    assert "Acme" in refused.text


async def test_the_account_is_picked_before_consent_and_kept_through_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime)
    _, _, globex = await _two_accounts(runtime)
    verifier, challenge = pkce_pair()
    signed_in = await sign_in(client, authorize_params(code_challenge=challenge, prompt="consent"))
    picker = await client.get(signed_in.headers["location"])

    chosen = await client.post(
        "/login/account", data=form_fields(picker.text) | {"account_id": str(globex.id)}
    )
    assert chosen.headers["location"].startswith("/consent?flow=")
    consent = await client.get(chosen.headers["location"])
    allowed = await client.post("/consent", data=form_fields(consent.text) | {"decision": "allow"})

    claims = await _access_claims(client, allowed, verifier)
    assert claims["account_id"] == str(globex.id)


async def test_the_admin_scope_is_granted_to_administrators_only(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    scope = "openid identity:accounts identity:admin"
    await add_oauth_client(runtime, first_party=True, scope=scope)
    admin = await add_user(runtime, "root@example.com")
    async with runtime.db.transaction() as session:
        (await session.get(User, admin.id)).is_admin = True  # type: ignore[union-attr]
    await add_user(runtime)
    granted: dict[str, str] = {}
    for email in ("root@example.com", "ana@example.com"):
        client.cookies.clear()  # another person at a fresh browser
        verifier, challenge = pkce_pair()
        signed_in = await sign_in(
            client, authorize_params(code_challenge=challenge, scope=scope), email=email
        )
        granted[email] = (await _access_claims(client, signed_in, verifier))["scope"]

    assert granted["root@example.com"] == scope
    assert granted["ana@example.com"] == "openid identity:accounts"


async def set_client_disabled(runtime: Runtime, disabled: bool) -> None:
    async with runtime.db.transaction() as session:
        change = ClientChange(disabled=disabled)
        await update_client(session, Actor(), CLIENT_ID, change, utcnow())
    runtime.clients.forget(CLIENT_ID)


async def test_a_sign_in_that_ended_in_an_error_cannot_be_resumed(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The picker resumes its flow when the browser has signed out meanwhile; a flow that
    ended there in an error is gone, and does not come back with the client."""
    await add_oauth_client(runtime, first_party=True)
    await _two_accounts(runtime)
    picker = (await sign_in(client)).headers["location"]
    client.cookies.delete("identity_session")
    await set_client_disabled(runtime, True)

    ended = await client.get(picker)
    await set_client_disabled(runtime, False)
    resumed = await client.get(picker)

    assert ended.status_code == 400
    assert resumed.status_code == 400
    assert "This sign-in page has expired" in resumed.text


async def test_a_choice_posted_again_after_signing_out_is_no_repeat(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime, first_party=True)
    _, _, globex = await _two_accounts(runtime)
    signed_in = await sign_in(client, authorize_params())
    picker = await client.get(signed_in.headers["location"])
    fields = form_fields(picker.text) | {"account_id": str(globex.id)}
    assert redirected_to_client(await client.post("/login/account", data=fields))["code"]
    async with runtime.db.transaction() as session:
        assert await sessions.end(session, client.cookies["identity_session"], utcnow())

    again = await client.post("/login/account", data=fields)
    assert again.status_code == 400 and "expired" in again.text


async def _pick(
    http: httpx.AsyncClient, response: httpx.Response, account: Account
) -> httpx.Response:
    assert response.headers["location"].startswith("/login/account?flow="), response.headers
    picker = await http.get(response.headers["location"])
    fields = form_fields(picker.text) | {"account_id": str(account.id)}
    return await http.post("/login/account", data=fields)


async def test_a_third_party_app_asks_consent_for_the_account_picked(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The account is picked before consent, and the consent is for it: allowing the app in
    Globex is not allowing it in Acme, picked the next time."""
    await add_oauth_client(runtime)
    _, acme, globex = await _two_accounts(runtime)
    verifier, challenge = pkce_pair()

    picked = await _pick(
        client, await sign_in(client, authorize_params(code_challenge=challenge)), globex
    )

    assert picked.headers["location"].startswith("/consent?flow="), picked.headers
    page = await client.get(picked.headers["location"])
    assert "for the account Globex" in page.text and "Acme" not in page.text
    allowed = await client.post("/consent", data=form_fields(page.text) | {"decision": "allow"})
    assert (await _access_claims(client, allowed, verifier))["account_id"] == str(globex.id)

    other = await _pick(client, await client.get("/authorize", params=authorize_params()), acme)

    assert other.headers["location"].startswith("/consent?flow="), other.headers
    assert "for the account Acme" in (await client.get(other.headers["location"])).text
    remembered = authorize_params(prompt="none", account_id=str(globex.id))
    assert redirected_to_client(await client.get("/authorize", params=remembered))["code"]


async def test_prompt_none_answers_the_account_question_before_the_consent_one(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The picker comes before the consent page: with neither answered and prompt=none, the
    client is told to have the user choose an account first."""
    await add_oauth_client(runtime)
    _, acme, _ = await _two_accounts(runtime)
    await approve_consent(
        client,
        (await sign_in(client, authorize_params(account_id=str(acme.id)))).headers["location"],
    )

    silent = await client.get("/authorize", params=authorize_params(prompt="none"))

    assert redirected_to_client(silent)["error"] == "account_selection_required"
