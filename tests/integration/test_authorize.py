"""The authorization endpoint: each check's failure, and the code it issues on success."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from sqlalchemy import select

from identity.crypto import digest
from identity.db.engine import DatabaseUnavailable
from identity.oauth.authorize import parse
from identity.oauth.interaction import Flow, FlowStore
from identity.runtime import Runtime
from identity.sessions.models import BrowserSession
from identity.tokens.models import AuthorizationCode
from tests.browser import (
    CLIENT_ID,
    EMAIL,
    REDIRECT_URI,
    add_oauth_client,
    add_user,
    authorize_params,
    form_fields,
    id_token,
    open_login,
    post_from_another_site,
    query,
    redirected_to_client,
    sign_in,
    submit_login,
)
from tests.integration.account_helpers import staff_headers
from tests.integration.db_helpers import counting_transactions


@pytest.fixture
async def first_party(runtime: Runtime) -> None:
    """A user and a first-party client: no consent page in the way of these tests."""
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)


async def signed_in(http: httpx.AsyncClient) -> dict[str, str]:
    """Sign in once; returns the query of the redirect that carried the first code."""
    return redirected_to_client(await sign_in(http))


def assert_error_page(response: httpx.Response) -> None:
    """An HTML page, and above all no redirect to an address nobody verified."""
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")


# --- before the redirect URI is verified: a page, never a redirect ----------------------


@pytest.mark.usefixtures("first_party")
@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "no-such-client"},
        {"client_id": None},
        {"redirect_uri": "https://attacker.example/callback"},
        {"redirect_uri": REDIRECT_URI + "/"},
        {"redirect_uri": REDIRECT_URI + "?extra=1"},
        {"redirect_uri": "https://APP.example/callback"},
        {"redirect_uri": None},
    ],
    ids=[
        "unknown-client",
        "missing-client",
        "foreign-uri",
        "trailing-slash",
        "extra-query",
        "case-changed",
        "missing-uri",
    ],
)
async def test_unverified_client_or_redirect_uri_renders_a_page_and_never_redirects(
    client: httpx.AsyncClient, overrides: dict[str, str | None]
) -> None:
    # Every later check fails too: none of them may turn the page into a redirect.
    params = authorize_params(response_type="token", code_challenge=None, **overrides)
    response = await client.get("/authorize", params=params)
    assert_error_page(response)


@pytest.mark.usefixtures("first_party")
async def test_disabled_client_is_treated_as_unknown(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime, client_id="old", disabled=True, first_party=True)
    response = await client.get("/authorize", params=authorize_params(client_id="old"))
    assert_error_page(response)
    assert "invalid_client" in response.text


@pytest.mark.usefixtures("first_party")
async def test_repeated_redirect_uri_renders_a_page(client: httpx.AsyncClient) -> None:
    params = [*authorize_params().items(), ("redirect_uri", REDIRECT_URI)]
    assert_error_page(await client.get("/authorize", params=params))


# --- after it: errors go back to the client with state and iss --------------------------


@pytest.mark.usefixtures("first_party")
@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": None}, "invalid_request"),
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
        ({"request_uri": "https://app.example/request.jwt"}, "request_uri_not_supported"),
        # OIDC Core §6.1: parameters may be inside the unread request object, so whatever
        # is missing from the query, the answer is that request objects are not supported.
        (
            {"request": "eyJhbGciOiJub25lIn0.e30.", "code_challenge": None, "nonce": None},
            "request_not_supported",
        ),
        (
            {"request_uri": "https://app.example/r.jwt", "code_challenge_method": None},
            "request_uri_not_supported",
        ),
        # Whatever its size: an encrypted or richly signed request object passes the 2 KB
        # any echoed value is held to, and it is still unsupported, not a malformed value.
        ({"request": "eyJhbGciOiJSU0EtT0FFUCJ9." + "e" * 3000}, "request_not_supported"),
        ({"request_uri": "https://app.example/" + "r" * 3000}, "request_uri_not_supported"),
        ({"registration": '{"client_name": "Self"}'}, "registration_not_supported"),
        ({"scope": "profile email"}, "invalid_scope"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"resource": "https://other.example/"}, "invalid_target"),
        ({"prompt": "none login"}, "invalid_request"),
        ({"prompt": "select_account consent login none"}, "invalid_request"),
        ({"max_age": "-1"}, "invalid_request"),
        ({"max_age": "soon"}, "invalid_request"),
        ({"nonce": "n" * 5000}, "invalid_request"),
    ],
)
async def test_invalid_request_is_redirected_with_error_state_and_iss(
    client: httpx.AsyncClient, overrides: dict[str, str | None], error: str
) -> None:
    response = await client.get("/authorize", params=authorize_params(**overrides))
    result = redirected_to_client(response)
    assert result["error"] == error
    assert result["error_description"]
    assert result["state"] == "af0ifjsldkj"
    assert result["iss"] == "http://testserver.local"
    assert "code" not in result


@pytest.mark.usefixtures("first_party")
@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "id_token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"response_type": "id_token token"}, "unsupported_response_type"),
        ({"response_type": "token", "response_mode": "form_post"}, "unsupported_response_type"),
        ({"response_mode": "fragment"}, "invalid_request"),
    ],
)
async def test_a_request_for_a_fragment_answer_gets_its_error_in_the_fragment(
    client: httpx.AsyncClient, overrides: dict[str, str | None], error: str
) -> None:
    # RFC 6749 §4.2.2.1 and OAuth 2.0 Multiple Response Type Encoding Practices §2.1: a
    # response type with a token answers in the fragment, where its client reads; so does
    # response_mode=fragment. node-oidc-provider answers these errors there too.
    response = await client.get("/authorize", params=authorize_params(**overrides))
    assert response.status_code == 303, response.text
    parts = urlsplit(response.headers["location"])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == REDIRECT_URI
    assert parts.query == ""
    result = dict(parse_qsl(parts.fragment))
    assert result["error"] == error
    assert result["state"] == "af0ifjsldkj"
    assert result["iss"] == "http://testserver.local"


@pytest.mark.usefixtures("first_party")
@pytest.mark.parametrize(
    "overrides",
    [
        {"response_type": "token", "response_mode": "query"},
        {"response_type": "unknown"},
    ],
)
async def test_other_errors_about_the_response_type_stay_in_the_query(
    client: httpx.AsyncClient, overrides: dict[str, str | None]
) -> None:
    response = await client.get("/authorize", params=authorize_params(**overrides))
    result = redirected_to_client(response)
    assert result["error"] == "unsupported_response_type"
    assert "#" not in response.headers["location"]


@pytest.mark.usefixtures("first_party")
async def test_repeated_parameter_is_an_invalid_request(client: httpx.AsyncClient) -> None:
    params = [*authorize_params().items(), ("scope", "openid email")]
    result = redirected_to_client(await client.get("/authorize", params=params))
    assert result["error"] == "invalid_request"
    assert "scope" in result["error_description"]


@pytest.mark.usefixtures("first_party")
async def test_client_not_allowed_the_code_grant_is_unauthorized(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime, client_id="m2m", grant_types=["client_credentials"])
    params = authorize_params(client_id="m2m")
    result = redirected_to_client(await client.get("/authorize", params=params))
    assert result["error"] == "unauthorized_client"


@pytest.mark.usefixtures("first_party")
async def test_confidential_client_with_pkce_relaxed_may_omit_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(
        runtime, client_id="legacy", is_public=False, secret_hash=digest("s"), require_pkce=False
    )
    params = authorize_params(client_id="legacy", code_challenge=None, code_challenge_method=None)
    await open_login(client, params)


@pytest.mark.usefixtures("first_party")
async def test_public_client_needs_pkce_even_when_relaxed(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime, client_id="spa", is_public=True, require_pkce=False)
    params = authorize_params(client_id="spa", code_challenge=None, code_challenge_method=None)
    assert redirected_to_client(await client.get("/authorize", params=params))["error"] == (
        "invalid_request"
    )


# --- success ----------------------------------------------------------------------------


@pytest.mark.usefixtures("first_party")
async def test_sign_in_returns_a_code_with_state_and_iss(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    result = await signed_in(client)
    assert set(result) == {"code", "state", "iss"}
    assert result["state"] == "af0ifjsldkj"
    assert result["iss"] == "http://testserver.local"
    async with runtime.db.transaction() as session:
        code = await session.get(AuthorizationCode, digest(result["code"]))
    assert code is not None
    assert code.client_id == CLIENT_ID
    assert code.redirect_uri == REDIRECT_URI
    assert code.scope == "openid profile"
    assert code.nonce == "n-0S6_WzA2Mj"
    assert code.code_challenge_method == "S256"
    assert code.amr == ["pwd"]
    assert code.session_id is not None
    assert code.expires_at - code.created_at == timedelta(seconds=60)


@pytest.mark.usefixtures("first_party")
async def test_signed_in_browser_gets_a_code_without_seeing_a_page(
    client: httpx.AsyncClient,
) -> None:
    await signed_in(client)
    response = await client.get("/authorize", params=authorize_params(state="second"))
    result = redirected_to_client(response)
    assert result["state"] == "second"
    assert result["code"]


@pytest.mark.usefixtures("first_party")
async def test_post_works_like_get_with_parameters_in_any_order_and_unknown_ones_ignored(
    client: httpx.AsyncClient,
) -> None:
    await signed_in(client)
    params = [*reversed(authorize_params().items()), ("display", "page"), ("x", "y")]
    response = await client.post("/authorize", data=dict(params))
    assert redirected_to_client(response)["code"]


@pytest.mark.usefixtures("first_party")
async def test_post_from_another_site_finds_the_session_its_cookie_names(
    client: httpx.AsyncClient,
) -> None:
    await signed_in(client)
    params = authorize_params(prompt="none", state="posted")
    response = await post_from_another_site(client, "/authorize", params)
    # The browser follows our redirects as top-level GET navigations, with its cookies.
    while response.status_code == 303 and response.headers["location"].startswith("/"):
        response = await client.get(response.headers["location"])
    result = redirected_to_client(response)
    assert result["state"] == "posted"
    assert result["code"]


@pytest.mark.usefixtures("first_party")
async def test_redirect_uri_query_is_kept_beside_the_response(client: httpx.AsyncClient) -> None:
    await signed_in(client)
    params = authorize_params(redirect_uri="https://app.example/cb?tenant=1")
    response = await client.get("/authorize", params=params)
    result = query(response.headers["location"])
    assert result["tenant"] == "1"
    assert result["code"]


async def test_a_client_stored_with_a_response_parameter_in_its_redirect_uri_still_signs_in(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Registration refuses such a URI now; one stored before keeps working as it did (its
    # own value first, ours after it), rather than locking its users out.
    uri = "https://app.example/cb?state=own"
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True, redirect_uris=[REDIRECT_URI, uri])
    await signed_in(client)
    response = await client.get("/authorize", params=authorize_params(redirect_uri=uri))
    sent = parse_qsl(urlsplit(response.headers["location"]).query)
    assert [name for name, _ in sent] == ["state", "code", "state", "iss"]
    assert sent[0][1] == "own" and sent[2][1] == "af0ifjsldkj"


@pytest.mark.usefixtures("first_party")
async def test_registered_resource_is_stored_with_the_code(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    params = authorize_params(resource="https://billing.example/")
    result = redirected_to_client(await sign_in(client, params))
    async with runtime.db.transaction() as session:
        code = await session.get(AuthorizationCode, digest(result["code"]))
    assert code is not None
    assert code.resources == ["https://billing.example/"]


@pytest.mark.usefixtures("first_party")
async def test_state_is_optional(client: httpx.AsyncClient) -> None:
    result = redirected_to_client(await sign_in(client, authorize_params(state=None)))
    assert "state" not in result
    assert result["code"]


@pytest.mark.usefixtures("first_party")
async def test_login_hint_prefills_the_email(client: httpx.AsyncClient) -> None:
    page = await open_login(client, authorize_params(login_hint="bob@example.com"))
    assert form_fields(page.text)["email"] == "bob@example.com"


async def test_id_token_hint_prefills_the_email_it_carries(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await add_user(runtime, "ana@example.com")
    await add_oauth_client(runtime, first_party=True)
    hint = await id_token(runtime, user, email="ana@example.com")

    page = await open_login(client, authorize_params(id_token_hint=hint))

    assert form_fields(page.text)["email"] == "ana@example.com"


async def test_id_token_hint_without_email_tells_nothing_of_the_user(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A client granted only ``openid`` has no email in its ID tokens: the login page it can
    open with one as hint must not show the user's address."""
    user = await add_user(runtime, "ana@example.com")
    await add_oauth_client(runtime, first_party=True)
    hint = await id_token(runtime, user)

    page = await open_login(client, authorize_params(id_token_hint=hint, login_hint="x@y.example"))

    assert "ana@example.com" not in page.text
    assert form_fields(page.text)["email"] == "x@y.example"


# --- prompt and max_age -----------------------------------------------------------------


@pytest.mark.usefixtures("first_party")
async def test_prompt_none_without_a_session_is_login_required(client: httpx.AsyncClient) -> None:
    response = await client.get("/authorize", params=authorize_params(prompt="none"))
    result = redirected_to_client(response)
    assert result["error"] == "login_required"
    assert result["state"] == "af0ifjsldkj"
    assert result["iss"] == "http://testserver.local"


@pytest.mark.usefixtures("first_party")
async def test_prompt_none_with_a_session_issues_a_code(client: httpx.AsyncClient) -> None:
    await signed_in(client)
    response = await client.get("/authorize", params=authorize_params(prompt="none"))
    assert redirected_to_client(response)["code"]


@pytest.mark.usefixtures("first_party")
async def test_prompt_login_asks_a_signed_in_user_to_sign_in_again(
    client: httpx.AsyncClient,
) -> None:
    await signed_in(client)
    page = await open_login(client, authorize_params(prompt="login"))
    response = await client.post(
        "/login", data=form_fields(page.text) | {"email": EMAIL, "password": "Qz7!mVt#pX2w"}
    )
    assert redirected_to_client(response)["code"]


async def _age_sessions(runtime: Runtime, seconds: int) -> None:
    async with runtime.db.transaction() as session:
        for browser_session in await session.scalars(select(BrowserSession)):
            browser_session.auth_time -= timedelta(seconds=seconds)


@pytest.mark.usefixtures("first_party")
async def test_max_age_older_than_the_sign_in_asks_for_it_again(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await signed_in(client)
    await _age_sessions(runtime, 600)
    await open_login(client, authorize_params(max_age="300"))
    fresh = await client.get("/authorize", params=authorize_params(max_age="3600"))
    assert redirected_to_client(fresh)["code"]


@pytest.mark.usefixtures("first_party")
async def test_max_age_too_old_with_prompt_none_is_login_required(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await signed_in(client)
    await _age_sessions(runtime, 600)
    response = await client.get("/authorize", params=authorize_params(max_age="60", prompt="none"))
    assert redirected_to_client(response)["error"] == "login_required"


@pytest.mark.usefixtures("first_party")
async def test_max_age_zero_then_sign_in_issues_a_code_with_the_new_auth_time(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await signed_in(client)
    result = redirected_to_client(await sign_in(client, authorize_params(max_age="0")))
    async with runtime.db.transaction() as session:
        code = await session.get(AuthorizationCode, digest(result["code"]))
        newest = await session.scalar(
            select(BrowserSession).order_by(BrowserSession.created_at.desc()).limit(1)
        )
    assert code is not None and newest is not None
    assert code.session_id == newest.id
    assert code.auth_time == newest.auth_time


async def test_id_token_hint_of_the_signed_in_user_gets_a_code_with_prompt_none(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    await signed_in(client)
    hint = await id_token(runtime, user)
    params = authorize_params(prompt="none", id_token_hint=hint)
    assert redirected_to_client(await client.get("/authorize", params=params))["code"]


async def test_id_token_hint_of_another_user_needs_a_sign_in(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_user(runtime)
    other = await add_user(runtime, "other@example.com")
    await add_oauth_client(runtime, first_party=True)
    await signed_in(client)
    hint = await id_token(runtime, other)
    silent = authorize_params(prompt="none", id_token_hint=hint)
    assert redirected_to_client(await client.get("/authorize", params=silent))["error"] == (
        "login_required"
    )
    await open_login(client, authorize_params(id_token_hint=hint))


async def test_signing_in_as_someone_else_than_the_hint_names_is_login_required(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """OIDC Core §3.1.2.1: the hinted user is neither signed in nor signed in by the request,
    so no code is issued for whoever did sign in; the browser keeps the session it made."""
    await add_user(runtime)
    other = await add_user(runtime, "other@example.com")
    await add_oauth_client(runtime, first_party=True)
    await signed_in(client)
    page = await open_login(client, authorize_params(id_token_hint=await id_token(runtime, other)))

    response = await submit_login(client, page)

    result = redirected_to_client(response)
    assert "code" not in result
    assert result["error"] == "login_required"
    assert result["state"] == "af0ifjsldkj"
    assert result["iss"] == "http://testserver.local"
    assert "identity_session" in response.headers.get("set-cookie", "")
    silent = await client.get("/authorize", params=authorize_params(prompt="none"))
    assert redirected_to_client(silent)["code"]


async def test_a_sign_in_ending_on_the_error_page_keeps_the_session_it_made(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The client was deleted while its user signed in: the error page, with no client to
    go back to, still gives the browser the session that replaced its previous one, rather
    than leave it signed out with a session nobody holds."""
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    page = await open_login(client, authorize_params())
    deleted = await client.delete(
        f"/api/v1/clients/{CLIENT_ID}", headers=await staff_headers(runtime)
    )
    assert deleted.status_code == 204, deleted.text

    response = await submit_login(client, page)

    assert response.status_code == 400 and "location" not in response.headers
    assert "identity_session" in response.headers.get("set-cookie", "")
    assert (await client.get("/account/security")).status_code == 200


async def test_signing_in_as_the_hinted_user_issues_the_code_for_them(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_user(runtime)
    other = await add_user(runtime, "other@example.com")
    await add_oauth_client(runtime, first_party=True)
    await signed_in(client)
    page = await open_login(client, authorize_params(id_token_hint=await id_token(runtime, other)))

    result = redirected_to_client(await submit_login(client, page, email="other@example.com"))

    async with runtime.db.transaction() as session:
        code = await session.get(AuthorizationCode, digest(result["code"]))
    assert code is not None and code.user_id == other.id


@pytest.mark.parametrize(
    "issued_to",
    [{"aud": "other-app"}, {"aud": ["other-app", CLIENT_ID]}, {"azp": "other-app"}],
)
async def test_id_token_hint_issued_to_another_client_is_an_invalid_request(
    client: httpx.AsyncClient, runtime: Runtime, issued_to: dict[str, object]
) -> None:
    """OIDC Core §3.1.2.1: the hint is about the user's session "with the Client", so it is
    an ID token issued to the client asking (its ``azp``, else its one audience), as
    node-oidc-provider validates it; another app's is refused however right its user."""
    user = await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    await signed_in(client)
    hint = await id_token(runtime, user, **issued_to)

    params = authorize_params(prompt="none", id_token_hint=hint)
    result = redirected_to_client(await client.get("/authorize", params=params))

    assert result["error"] == "invalid_request"
    assert result["state"] == "af0ifjsldkj"
    assert result["iss"] == "http://testserver.local"
    assert "code" not in result


@pytest.mark.usefixtures("first_party")
async def test_id_token_hint_not_issued_here_is_an_invalid_request(
    client: httpx.AsyncClient,
) -> None:
    params = authorize_params(id_token_hint="eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
    result = redirected_to_client(await client.get("/authorize", params=params))
    assert result["error"] == "invalid_request"
    assert result["state"] == "af0ifjsldkj"


@pytest.mark.usefixtures("first_party")
@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (RuntimeError("disk on fire"), "server_error"),
        (DatabaseUnavailable("OperationalError"), "temporarily_unavailable"),
    ],
)
async def test_failure_after_the_redirect_uri_is_verified_is_sent_to_the_client(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, failure: Exception, error: str
) -> None:
    await signed_in(client)

    async def failing_insert(*_: object) -> None:
        raise failure

    monkeypatch.setattr("identity.web.authorization.insert_code", failing_insert)
    result = redirected_to_client(await client.get("/authorize", params=authorize_params()))
    assert result["error"] == error
    assert "disk on fire" not in result["error_description"]
    assert result["state"] == "af0ifjsldkj"


async def test_a_flow_survives_a_round_trip_through_the_store(runtime: Runtime) -> None:
    # runtime.store is Redis when configured: what one process saves, another reads back.
    flow = Flow(parse(authorize_params(resource="https://billing.example/").items()))
    flow.login_session_id = "3f1c"
    await FlowStore(runtime.store).save(flow)
    loaded = await FlowStore(runtime.store).load(flow.id)
    assert loaded is not None
    assert (loaded.request, loaded.login_session_id) == (flow.request, "3f1c")
    assert await FlowStore(runtime.store).consume(flow.id) is not None
    assert await FlowStore(runtime.store).load(flow.id) is None


@pytest.mark.usefixtures("first_party")
async def test_hostile_requests_get_the_error_page_not_a_500(client: httpx.AsyncClient) -> None:
    responses = [
        await client.post("/authorize", json=authorize_params()),
        await client.post("/authorize", files={"client_id": ("x", b"webapp")}),
        await client.get("/authorize?client_id=%ff%fe&redirect_uri=%00"),
        await client.get("/authorize", params={"client_id": "x" * 10_000}),
        await client.post(
            "/authorize",
            content=b"\xff\xfe=\x00",
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
    ]
    for response in responses:
        assert_error_page(response)


# --- native apps: any port on a loopback IP redirect (RFC 8252 §7.3) -----------------------

LOOPBACK_CALLBACKS = ["http://127.0.0.1/callback", "http://[::1]:8400/callback"]


@pytest.mark.parametrize(
    "redirect_uri", ["http://127.0.0.1:51004/callback", "http://[::1]:3000/callback"]
)
async def test_a_public_client_s_loopback_redirect_takes_the_port_the_app_chose(
    client: httpx.AsyncClient, runtime: Runtime, redirect_uri: str
) -> None:
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True, redirect_uris=LOOPBACK_CALLBACKS)
    response = await sign_in(client, authorize_params(redirect_uri=redirect_uri))
    assert response.headers["location"].startswith(redirect_uri + "?")
    result = redirected_to_client(response, redirect_uri)
    async with runtime.db.transaction() as session:
        code = await session.get(AuthorizationCode, digest(result["code"]))
    # The token request must then name this very URI, port included (RFC 6749 §4.1.3).
    assert code is not None and code.redirect_uri == redirect_uri


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:51004/other",
        "http://127.0.0.1:51004/callback?x=1",
        "http://localhost:51004/callback",
        "http://127.0.0.2:51004/callback",
        "https://127.0.0.1:51004/callback",
        "http://user@127.0.0.1:51004/callback",
        "http://127.0.0.1:99999/callback",
        "http://[::1%25lo]:3000/callback",
    ],
)
async def test_only_the_port_of_a_loopback_redirect_may_differ(
    client: httpx.AsyncClient, runtime: Runtime, redirect_uri: str
) -> None:
    await add_oauth_client(runtime, first_party=True, redirect_uris=LOOPBACK_CALLBACKS)
    params = authorize_params(redirect_uri=redirect_uri)
    assert_error_page(await client.get("/authorize", params=params))


async def test_a_client_stored_before_credentials_were_refused_keeps_its_redirect(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Registration refuses user:password@ in a redirect URI now; a client already stored
    # with one goes on working until staff change it.
    stored = "https://user:pw@app.example/cb"
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True, redirect_uris=[stored])
    response = await sign_in(client, authorize_params(redirect_uri=stored))
    redirected_to_client(response, stored)


async def test_a_confidential_client_s_loopback_redirect_matches_exactly(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(
        runtime, first_party=True, is_public=False, redirect_uris=LOOPBACK_CALLBACKS
    )
    params = authorize_params(redirect_uri="http://127.0.0.1:51004/callback")
    assert_error_page(await client.get("/authorize", params=params))


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://app.example/index.php?/oauth/callback",
        "https://app.example/cb?a=1;b=2",
        "https://app.example/cb?next=%2Fhome",
    ],
    ids=["path-as-query", "semicolons", "encoded-slash"],
)
async def test_code_goes_to_the_redirect_uri_with_its_own_query_kept_verbatim(
    client: httpx.AsyncClient, runtime: Runtime, redirect_uri: str
) -> None:
    """RFC 6749 §3.1.2: the query of a registered redirect URI MUST be retained; re-encoded,
    index.php?/oauth/callback became index.php?/oauth/callback= and its route no longer
    matched."""
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True, redirect_uris=[REDIRECT_URI, redirect_uri])
    await signed_in(client)
    response = await client.get("/authorize", params=authorize_params(redirect_uri=redirect_uri))
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(redirect_uri + "&code="), location
    assert query(location)["state"] == "af0ifjsldkj"


async def test_authorize_without_session_cookie_opens_no_transaction(
    client: httpx.AsyncClient, runtime: Runtime, first_party: None
) -> None:
    """A sign-in's first request: with no session cookie there is nobody to read, and an
    empty transaction still costs a session, its begin and its commit."""
    await open_login(client, authorize_params())  # this process's client cache filled
    client.cookies.clear()

    with counting_transactions(runtime) as transactions:
        response = await client.get("/authorize", params=authorize_params())

    assert response.headers["location"].startswith("/login?flow="), response.text
    assert transactions == []
