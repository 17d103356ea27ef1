"""RP-initiated logout: id_token_hint, exact post_logout_redirect_uri, state, confirmation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from joserfc import jwt
from sqlalchemy import select

from identity.accounts.models import User
from identity.clock import utcnow
from identity.keys.service import generate_key
from identity.runtime import Runtime
from identity.sessions.models import BrowserSession
from identity.tokens.models import RefreshToken
from tests.browser import (
    CLIENT_ID,
    POST_LOGOUT_URI,
    REDIRECT_URI,
    add_oauth_client,
    add_user,
    authorize_params,
    form_fields,
    id_token,
    pkce_pair,
    post_from_another_site,
    query,
    redirected_to_client,
    sign_in,
)
from tests.integration.account_helpers import staff_headers
from tests.integration.oauth_helpers import (
    RegisteredClient,
    assert_access_token_dead,
    is_active,
    make_client,
    redeem,
    signed_in_tokens,
    verify_with_jwks,
)


@pytest.fixture
async def user(client: httpx.AsyncClient, runtime: Runtime) -> User:
    """A user signed in in ``client``'s browser, through a first-party client."""
    signed_in = await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    redirected_to_client(await sign_in(client))
    return signed_in


async def live_sessions(runtime: Runtime) -> int:
    async with runtime.db.transaction() as session:
        rows = await session.scalars(
            select(BrowserSession).where(BrowserSession.revoked_at.is_(None))
        )
        return len(rows.all())


async def hint_for_this_sign_in(runtime: Runtime, user: User) -> str:
    """An expired ID token naming the browser's current session, as the app got it."""
    async with runtime.db.transaction() as session:
        sid = await session.scalar(
            select(BrowserSession.sid).where(BrowserSession.revoked_at.is_(None))
        )
    return await id_token(runtime, user, sid=str(sid))


def assert_signed_out_cookie(response: httpx.Response) -> None:
    assert 'identity_session=""; HttpOnly; Max-Age=0' in response.headers["set-cookie"]


async def test_expired_id_token_hint_signs_out_at_once_and_returns_with_state(
    client: httpx.AsyncClient, runtime: Runtime, user: User
) -> None:
    params = {
        "id_token_hint": await hint_for_this_sign_in(runtime, user),
        "post_logout_redirect_uri": POST_LOGOUT_URI,
        "state": "bye-123",
    }
    response = await client.get("/logout", params=params)
    assert response.status_code == 303
    assert response.headers["location"] == POST_LOGOUT_URI + "?state=bye-123"
    assert_signed_out_cookie(response)
    assert await live_sessions(runtime) == 0


async def test_without_a_hint_the_user_is_asked_to_confirm(
    client: httpx.AsyncClient, runtime: Runtime, user: User
) -> None:
    params = {"client_id": CLIENT_ID, "post_logout_redirect_uri": POST_LOGOUT_URI, "state": "s1"}
    page = await client.get("/logout", params=params)
    assert page.status_code == 200
    assert "Web App asks you to sign out" in page.text
    assert await live_sessions(runtime) == 1
    response = await client.post("/logout", data=form_fields(page.text))
    assert query(response.headers["location"]) == {"state": "s1"}
    assert response.headers["location"].startswith(POST_LOGOUT_URI)
    assert await live_sessions(runtime) == 0


async def test_confirmation_without_csrf_token_signs_nobody_out(
    client: httpx.AsyncClient, runtime: Runtime, user: User
) -> None:
    page = await client.get("/logout")
    forged = form_fields(page.text) | {"csrf_token": "0" * 64}
    response = await client.post("/logout", data=forged)
    assert response.status_code == 400
    assert "expired or was sent from another site" in response.text
    assert await live_sessions(runtime) == 1


async def test_post_from_the_relying_party_is_accepted_like_get(
    client: httpx.AsyncClient, runtime: Runtime, user: User
) -> None:
    data = {
        "id_token_hint": await hint_for_this_sign_in(runtime, user),
        "post_logout_redirect_uri": POST_LOGOUT_URI,
    }
    response = await client.post("/logout", data=data)
    assert response.status_code == 303
    assert response.headers["location"] == POST_LOGOUT_URI
    assert await live_sessions(runtime) == 0


async def test_post_from_another_site_signs_out_the_session_its_cookie_names(
    client: httpx.AsyncClient, runtime: Runtime, user: User
) -> None:
    data = {
        "id_token_hint": await hint_for_this_sign_in(runtime, user),
        "post_logout_redirect_uri": POST_LOGOUT_URI,
        "state": "bye-123",
    }
    response = await post_from_another_site(client, "/logout", data)
    # The browser follows our redirects as top-level GET navigations, with its cookies.
    while response.status_code == 303 and response.headers["location"].startswith("/"):
        response = await client.get(response.headers["location"])
    assert response.headers["location"] == POST_LOGOUT_URI + "?state=bye-123"
    assert_signed_out_cookie(response)
    assert await live_sessions(runtime) == 0


async def test_confirmed_logout_without_redirect_shows_the_signed_out_page(
    client: httpx.AsyncClient, runtime: Runtime, user: User
) -> None:
    page = await client.get("/logout")
    response = await client.post("/logout", data=form_fields(page.text))
    assert response.status_code == 200
    assert "You are signed out" in response.text
    assert_signed_out_cookie(response)


async def test_a_code_issued_before_signing_out_is_refused_after_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The code was the session's to hand over: once the user has signed out, whoever holds
    it (a relying party slow to redeem, or one that copied the address bar) gets nothing."""
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    verifier, challenge = pkce_pair()
    signed_in = await sign_in(client, authorize_params(code_challenge=challenge))
    code = redirected_to_client(signed_in)["code"]
    page = await client.get("/logout")
    assert (await client.post("/logout", data=form_fields(page.text))).status_code == 200

    app = RegisteredClient(CLIENT_ID, None)
    response = await redeem(client, app, code, verifier, redirect_uri=REDIRECT_URI)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"


async def test_hint_for_another_user_asks_for_confirmation(
    client: httpx.AsyncClient, runtime: Runtime, user: User
) -> None:
    other = await add_user(runtime, "other@example.com")
    page = await client.get("/logout", params={"id_token_hint": await id_token(runtime, other)})
    assert page.status_code == 200
    assert "confirm" in form_fields(page.text)
    assert await live_sessions(runtime) == 1


@pytest.mark.parametrize(
    "params",
    [
        {"client_id": CLIENT_ID, "post_logout_redirect_uri": "https://attacker.example/"},
        {"client_id": CLIENT_ID, "post_logout_redirect_uri": POST_LOGOUT_URI + "/"},
        {"post_logout_redirect_uri": POST_LOGOUT_URI},
        {"client_id": "unknown", "post_logout_redirect_uri": POST_LOGOUT_URI},
        {"id_token_hint": "not-a-jwt"},
    ],
    ids=["foreign-uri", "trailing-slash", "no-client", "unknown-client", "garbage-hint"],
)
async def test_unverifiable_request_renders_a_page_and_never_redirects(
    client: httpx.AsyncClient, runtime: Runtime, user: User, params: dict[str, str]
) -> None:
    response = await client.get("/logout", params=params)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "sign-out request is not valid" in response.text
    assert await live_sessions(runtime) == 1


async def test_hint_signed_by_a_foreign_key_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, user: User
) -> None:
    forged = jwt.encode(
        {"alg": "RS256", "kid": "foreign"},
        {"iss": runtime.settings.issuer, "sub": str(user.id), "aud": CLIENT_ID},
        generate_key("RS256"),
    )
    params = {"id_token_hint": forged, "post_logout_redirect_uri": POST_LOGOUT_URI}
    response = await client.get("/logout", params=params)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert await live_sessions(runtime) == 1


async def test_hint_and_client_id_must_agree(
    client: httpx.AsyncClient, runtime: Runtime, user: User
) -> None:
    params = {"id_token_hint": await id_token(runtime, user), "client_id": "someone-else"}
    assert (await client.get("/logout", params=params)).status_code == 400


async def test_client_id_must_be_the_one_the_hint_was_issued_to(
    client: httpx.AsyncClient, runtime: Runtime, user: User
) -> None:
    """RP-Initiated Logout §2: client_id must match "the one used when issuing the ID
    Token", its ``azp``: another of its audiences names a client it was not issued to."""
    await add_oauth_client(
        runtime, client_id="other", post_logout_redirect_uris=["https://other.example/bye"]
    )
    hint = await id_token(runtime, user, aud=[CLIENT_ID, "other"], azp=CLIENT_ID)
    params = {
        "id_token_hint": hint,
        "client_id": "other",
        "post_logout_redirect_uri": "https://other.example/bye",
    }

    response = await client.get("/logout", params=params)

    assert response.status_code == 400
    assert "location" not in response.headers
    assert await live_sessions(runtime) == 1


@pytest.mark.parametrize("audience", [123, [1, 2], None, {"client": CLIENT_ID}])
async def test_a_hint_with_an_audience_naming_no_client_is_refused_not_a_crash(
    client: httpx.AsyncClient, runtime: Runtime, user: User, audience: object
) -> None:
    hint = await id_token(runtime, user, aud=audience)

    for extra in ({}, {"client_id": CLIENT_ID}):
        response = await client.get("/logout", params={"id_token_hint": hint} | extra)

        assert response.status_code == 400, response.text
        assert await live_sessions(runtime) == 1


async def test_an_access_token_is_no_id_token_hint(
    client: httpx.AsyncClient, runtime: Runtime, user: User
) -> None:
    access_token = await id_token(runtime, user, typ="at+jwt")
    params = {"id_token_hint": access_token, "post_logout_redirect_uri": POST_LOGOUT_URI}
    response = await client.get("/logout", params=params)
    assert response.status_code == 400
    assert await live_sessions(runtime) == 1


async def _disable(http: httpx.AsyncClient, runtime: Runtime, how: str) -> None:
    path, staff = f"/api/v1/clients/{CLIENT_ID}", await staff_headers(runtime)
    if how == "disabled":
        changed = await http.patch(path, json={"disabled": True}, headers=staff)
    else:
        changed = await http.delete(path, headers=staff)
    assert changed.status_code in (200, 204), changed.text


@pytest.mark.parametrize("how", ["disabled", "deleted"])
async def test_a_hint_from_a_client_no_longer_registered_asks_for_confirmation(
    client: httpx.AsyncClient, runtime: Runtime, user: User, how: str
) -> None:
    # As node-oidc-provider, which refuses a hint whose client it cannot find: a client
    # staff disabled or deleted (one taken over, say) vouches for nobody's sign-out any more.
    hint = await id_token(runtime, user)
    await _disable(client, runtime, how)

    page = await client.get("/logout", params={"id_token_hint": hint})
    assert page.status_code == 200
    assert "confirm" in form_fields(page.text)
    assert await live_sessions(runtime) == 1
    signed_out = await client.post("/logout", data=form_fields(page.text))
    assert signed_out.status_code == 200
    assert "You are signed out" in signed_out.text


@pytest.mark.parametrize("how", ["disabled", "deleted"])
async def test_a_client_no_longer_registered_gets_no_post_logout_redirect(
    client: httpx.AsyncClient, runtime: Runtime, user: User, how: str
) -> None:
    hint = await id_token(runtime, user)
    await _disable(client, runtime, how)

    params = {"id_token_hint": hint, "post_logout_redirect_uri": POST_LOGOUT_URI, "state": "s"}
    response = await client.get("/logout", params=params)
    assert "location" not in response.headers
    assert await live_sessions(runtime) == 1


async def _refresh(http: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}
    return await http.post("/token", data=data)


async def test_signing_out_ends_the_refresh_tokens_of_that_sign_in_only(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """As Keycloak ends a session's refresh tokens with it and node-oidc-provider revokes its
    grants: an app signed in through the browser gets no new tokens once the user signed
    out there. The same user's sign-in in another browser keeps its own."""
    user = await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    app = RegisteredClient(CLIENT_ID, None)
    verifier, challenge = pkce_pair()
    signed_in = await sign_in(client, authorize_params(code_challenge=challenge))
    code = redirected_to_client(signed_in)["code"]
    here = await redeem(client, app, code, verifier, redirect_uri=REDIRECT_URI)
    assert here.status_code == 200, here.text
    elsewhere = await signed_in_tokens(client, runtime, app, user=user, redirect_uri=REDIRECT_URI)

    params = {"id_token_hint": here.json()["id_token"], "post_logout_redirect_uri": POST_LOGOUT_URI}
    assert (await client.get("/logout", params=params)).status_code == 303

    refused = await _refresh(client, here.json()["refresh_token"])
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_grant"
    assert (await _refresh(client, elsewhere["refresh_token"])).status_code == 200


async def test_signing_out_ends_the_access_tokens_of_that_sign_in_only(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """As Keycloak answers introspection once the user session has ended: the access tokens
    the sign-in gave, through its code and through a refresh, are refused at once, not
    after their 10 minutes. Those of the same user's other browser live on."""
    user = await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    app = RegisteredClient(CLIENT_ID, None)
    service = await make_client(runtime)
    verifier, challenge = pkce_pair()
    signed_in = await sign_in(client, authorize_params(code_challenge=challenge))
    code = redirected_to_client(signed_in)["code"]
    here = await redeem(client, app, code, verifier, redirect_uri=REDIRECT_URI)
    assert here.status_code == 200, here.text
    refreshed = await _refresh(client, here.json()["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    elsewhere = await signed_in_tokens(client, runtime, app, user=user, redirect_uri=REDIRECT_URI)

    params = {"id_token_hint": here.json()["id_token"], "post_logout_redirect_uri": POST_LOGOUT_URI}
    assert (await client.get("/logout", params=params)).status_code == 303

    await assert_access_token_dead(client, service, here.json()["access_token"])
    await assert_access_token_dead(client, service, refreshed.json()["access_token"])
    assert await is_active(client, service, elsewhere["access_token"])
    bearer = {"Authorization": f"Bearer {elsewhere['access_token']}"}
    assert (await client.get("/userinfo", headers=bearer)).status_code == 200


async def test_signing_out_ends_the_access_token_of_an_app_without_refresh_tokens(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """An app registered without the refresh grant has only its code's access token, which
    ends with the sign-in too."""
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True, grant_types=["authorization_code"])
    app = RegisteredClient(CLIENT_ID, None)
    service = await make_client(runtime)
    verifier, challenge = pkce_pair()
    signed_in = await sign_in(client, authorize_params(code_challenge=challenge))
    code = redirected_to_client(signed_in)["code"]
    here = await redeem(client, app, code, verifier, redirect_uri=REDIRECT_URI)
    assert here.status_code == 200, here.text
    assert "refresh_token" not in here.json()

    params = {"id_token_hint": here.json()["id_token"], "post_logout_redirect_uri": POST_LOGOUT_URI}
    assert (await client.get("/logout", params=params)).status_code == 303

    await assert_access_token_dead(client, service, here.json()["access_token"])


@pytest.mark.parametrize("refresh", [True, False], ids=["with-refresh", "code-only"])
async def test_signing_out_after_signing_in_again_ends_the_first_sign_in_s_tokens(
    client: httpx.AsyncClient, runtime: Runtime, refresh: bool
) -> None:
    """prompt=login gives the browser a new session; what apps got through the one it
    replaced is still this browser's sign-in, and ends with it: refresh tokens, and access
    tokens, of which an app without refresh tokens has only its code's record."""
    await add_user(runtime)
    grants = ["authorization_code", "refresh_token"] if refresh else ["authorization_code"]
    await add_oauth_client(runtime, first_party=True, grant_types=grants)
    app = RegisteredClient(CLIENT_ID, None)
    service = await make_client(runtime)
    verifier, challenge = pkce_pair()
    first = await sign_in(client, authorize_params(code_challenge=challenge))
    code = redirected_to_client(first)["code"]
    before = await redeem(client, app, code, verifier, redirect_uri=REDIRECT_URI)
    assert before.status_code == 200, before.text
    again = await sign_in(client, authorize_params(prompt="login"))
    assert redirected_to_client(again)["code"]

    params = {
        "id_token_hint": before.json()["id_token"],
        "post_logout_redirect_uri": POST_LOGOUT_URI,
    }
    assert (await client.get("/logout", params=params)).status_code == 303

    await assert_access_token_dead(client, service, before.json()["access_token"])
    if refresh:
        refused = await _refresh(client, before.json()["refresh_token"])
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "invalid_grant"


async def test_someone_else_signing_in_in_the_browser_ends_the_first_user_s_tokens(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """On a shared computer Bea signs in over Ana's session: that ends Ana's sign-in there as
    her own sign-out would, so the tokens her apps got through it (a browser app keeps them
    on this computer) stop working. Her sign-in in another browser keeps its own."""
    ana = await add_user(runtime)
    await add_user(runtime, "bea@example.com")
    await add_oauth_client(runtime, first_party=True)
    service = await make_client(runtime)
    app = RegisteredClient(CLIENT_ID, None)
    hers = await _signed_in_app_tokens(client)
    elsewhere = await signed_in_tokens(client, runtime, app, user=ana, redirect_uri=REDIRECT_URI)

    bea = await _signed_in_app_tokens(client, prompt="login", email="bea@example.com")

    await assert_access_token_dead(client, service, hers["access_token"])
    refused = await _refresh(client, hers["refresh_token"])
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_grant"
    assert (await _refresh(client, elsewhere["refresh_token"])).status_code == 200
    assert (await _refresh(client, bea["refresh_token"])).status_code == 200


async def test_signing_in_again_keeps_the_sid_the_first_sign_in_s_refresh_tokens_name(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """prompt=login continues the session under the same ``sid``: the ID tokens a handed-over
    refresh token brings name it as before."""
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    first = await _signed_in_app_tokens(client)
    again = await _signed_in_app_tokens(client, prompt="login")

    refreshed = await _refresh(client, first["refresh_token"])

    assert refreshed.status_code == 200, refreshed.text
    sid = await _sid(client, refreshed.json()["id_token"])
    assert sid == await _sid(client, first["id_token"]) == await _sid(client, again["id_token"])


async def test_signing_in_again_in_a_session_without_sid_gives_its_refresh_tokens_the_new_one(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A session begun before sessions had a ``sid`` (migration 0010) has none, nor have its
    refresh tokens. Signing in again there starts a new ``sid``; the refresh tokens handed
    over to the new session bring ID tokens naming it, so that its logout hint works."""
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    first = await _signed_in_app_tokens(client)
    async with runtime.db.transaction() as session:
        for browser_session in await session.scalars(select(BrowserSession)):
            browser_session.sid = None
        for token in await session.scalars(select(RefreshToken)):
            token.sid = None
    again = await _signed_in_app_tokens(client, prompt="login")
    async with runtime.db.transaction() as session:
        new_sid = await session.scalar(
            select(BrowserSession.sid).where(BrowserSession.revoked_at.is_(None))
        )
    assert new_sid is not None and await _sid(client, again["id_token"]) == str(new_sid)

    refreshed = await _refresh(client, first["refresh_token"])

    assert refreshed.status_code == 200, refreshed.text
    assert await _sid(client, refreshed.json()["id_token"]) == str(new_sid)


async def test_a_code_fetched_before_signing_in_again_stays_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Handing the first sign-in's redeemed codes over to the new session must not revive
    one not yet redeemed: it was fetched by a session that has ended."""
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    app = RegisteredClient(CLIENT_ID, None)
    verifier, challenge = pkce_pair()
    first = await sign_in(client, authorize_params(code_challenge=challenge))
    code = redirected_to_client(first)["code"]
    again = await sign_in(client, authorize_params(prompt="login"))
    assert redirected_to_client(again)["code"]

    refused = await redeem(client, app, code, verifier, redirect_uri=REDIRECT_URI)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_grant"


async def test_a_link_to_logout_leaves_the_tokens_of_an_expired_sign_in_alone(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """With the browser's session expired there is nobody to ask for confirmation, so a link
    from any site gets the signed-out page; it must not end what apps still hold."""
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    app = RegisteredClient(CLIENT_ID, None)
    verifier, challenge = pkce_pair()
    signed_in = await sign_in(client, authorize_params(code_challenge=challenge))
    code = redirected_to_client(signed_in)["code"]
    issued = await redeem(client, app, code, verifier, redirect_uri=REDIRECT_URI)
    assert issued.status_code == 200, issued.text
    async with runtime.db.transaction() as session:
        for browser_session in await session.scalars(select(BrowserSession)):
            browser_session.expires_at = utcnow() - timedelta(minutes=1)

    assert (await client.get("/logout")).status_code == 200

    assert (await _refresh(client, issued.json()["refresh_token"])).status_code == 200


async def _signed_in_app_tokens(
    client: httpx.AsyncClient, prompt: str | None = None, **credentials: str
) -> Any:
    """Sign in through the app in ``client``'s browser; the app's token response."""
    verifier, challenge = pkce_pair()
    extra = {"prompt": prompt} if prompt else {}
    signed_in = await sign_in(
        client, authorize_params(code_challenge=challenge, **extra), **credentials
    )
    code = redirected_to_client(signed_in)["code"]
    issued = await redeem(
        client, RegisteredClient(CLIENT_ID, None), code, verifier, redirect_uri=REDIRECT_URI
    )
    assert issued.status_code == 200, issued.text
    return issued.json()


async def _sid(http: httpx.AsyncClient, id_token: str) -> Any:
    return (await verify_with_jwks(http, id_token)).claims.get("sid")


async def _sign_out(client: httpx.AsyncClient, runtime: Runtime) -> None:
    page = await client.get("/logout")
    assert (await client.post("/logout", data=form_fields(page.text))).status_code == 200


async def _expire_sessions(client: httpx.AsyncClient, runtime: Runtime) -> None:
    async with runtime.db.transaction() as session:
        for browser_session in await session.scalars(select(BrowserSession)):
            browser_session.expires_at = utcnow() - timedelta(minutes=1)


@pytest.mark.parametrize("end_it", [_sign_out, _expire_sessions], ids=["signed_out", "expired"])
async def test_a_hint_from_an_earlier_sign_in_asks_for_confirmation(
    client: httpx.AsyncClient,
    runtime: Runtime,
    end_it: Callable[[httpx.AsyncClient, Runtime], Awaitable[None]],
) -> None:
    """RP-Initiated Logout §2: an ID token that does not belong to the current session gets
    the question. One from an earlier sign-in, left at an app or replayed by a page that
    got hold of it, must not end the one the user has made since: after a sign-out, or
    after the session expired (signing in again then starts a new one, even in the same
    browser)."""
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    earlier = await _signed_in_app_tokens(client)
    await end_it(client, runtime)
    current = await _signed_in_app_tokens(client)

    page = await client.get("/logout", params={"id_token_hint": earlier["id_token"]})

    assert page.status_code == 200
    assert "confirm" in form_fields(page.text)
    assert await live_sessions(runtime) == 1
    assert await _sid(client, current["id_token"]) != await _sid(client, earlier["id_token"])


async def test_a_hint_without_a_session_id_asks_for_confirmation(
    client: httpx.AsyncClient, runtime: Runtime, user: User
) -> None:
    """An ID token issued before they carried ``sid`` cannot show it belongs to this session."""
    page = await client.get("/logout", params={"id_token_hint": await id_token(runtime, user)})
    assert page.status_code == 200
    assert "confirm" in form_fields(page.text)
    assert await live_sessions(runtime) == 1


async def test_an_id_token_from_a_refresh_signs_its_session_out_at_once(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A refresh token stays with the session that granted it: the ID tokens it brings name
    that session, as the first one did."""
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    first = await _signed_in_app_tokens(client)
    refreshed = await _refresh(client, first["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert await _sid(client, refreshed.json()["id_token"]) == await _sid(client, first["id_token"])

    params = {"id_token_hint": refreshed.json()["id_token"]}
    response = await client.get("/logout", params=params)

    assert response.status_code == 200
    assert "You are signed out" in response.text
    assert await live_sessions(runtime) == 0


async def test_the_session_id_reveals_nothing_of_the_cookie(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """``sid`` goes to every app; the cookie alone signs a browser in."""
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    issued = await _signed_in_app_tokens(client)
    sid = await _sid(client, issued["id_token"])
    cookie = client.cookies["identity_session"]
    async with runtime.db.transaction() as session:
        stored = await session.scalar(select(BrowserSession))
    assert stored is not None
    assert isinstance(sid, str) and sid
    assert sid not in (cookie, stored.token_hash, str(stored.id))


async def test_a_sign_in_after_the_session_expired_does_not_take_over_its_tokens(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """An expired session is over: signing in again in that browser starts a new one, and
    the refresh tokens of the old sign-in stay its own (valid until their own expiry, as
    any token of an expired sign-in), so the new one's sign-out leaves them alone and the
    ID tokens they bring still name the old session."""
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    service = await make_client(runtime)
    earlier = await _signed_in_app_tokens(client)
    await _expire_sessions(client, runtime)
    current = await _signed_in_app_tokens(client)
    await _sign_out(client, runtime)

    assert await is_active(client, service, earlier["access_token"])
    refreshed = await _refresh(client, earlier["refresh_token"])

    assert refreshed.status_code == 200, refreshed.text
    sid = await _sid(client, refreshed.json()["id_token"])
    assert sid == await _sid(client, earlier["id_token"])
    assert sid != await _sid(client, current["id_token"])


async def test_an_id_token_from_a_refresh_keeps_its_sid_once_the_session_is_deleted(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Housekeeping deletes a session once it has expired, while the refresh tokens it
    granted live on: their ID tokens still name the sign-in they came from."""
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    first = await _signed_in_app_tokens(client)
    await _expire_sessions(client, runtime)
    await runtime.housekeeping.run_once(utcnow())
    assert await live_sessions(runtime) == 0

    refreshed = await _refresh(client, first["refresh_token"])

    assert refreshed.status_code == 200, refreshed.text
    assert await _sid(client, refreshed.json()["id_token"]) == await _sid(client, first["id_token"])
