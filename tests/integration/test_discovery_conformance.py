"""What the discovery document advertises is what the endpoints do (OpenID Connect Discovery
1.0 §3, RFC 8414 §2): every listed value works through the app, and a value left out is
refused with the error the specification names, where it names it to go.

Relying parties and OIDC libraries configure themselves from this document, so each test
reads the value from it rather than from a copy here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from identity.runtime import Runtime
from identity.sessions.models import BrowserSession
from tests.browser import (
    CLIENT_ID,
    POST_LOGOUT_URI,
    add_oauth_client,
    add_user,
    authorize_params,
    id_token,
    open_login,
    redirected_to_client,
    sign_in,
)
from tests.integration.oauth_helpers import (
    fresh_code,
    make_client,
    make_user,
    refresh,
    service_client,
    signed_in_tokens,
)


async def discovered(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    return dict(response.json())


@pytest.fixture
async def first_party(runtime: Runtime) -> None:
    """tests.browser's user and a first-party public client: no consent page in the way."""
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)


async def signed_in(http: httpx.AsyncClient) -> None:
    assert redirected_to_client(await sign_in(http))["code"]


# --- the authorization endpoint ---------------------------------------------------------


@pytest.mark.usefixtures("first_party")
async def test_every_advertised_response_type_and_mode_issues_a_code(
    client: httpx.AsyncClient,
) -> None:
    document = await discovered(client)
    await signed_in(client)

    for response_type in document["response_types_supported"]:
        for mode in document["response_modes_supported"]:
            params = authorize_params(response_type=response_type, response_mode=mode)
            assert redirected_to_client(await client.get("/authorize", params=params))["code"]


@pytest.mark.usefixtures("first_party")
@pytest.mark.parametrize(
    "response_type", ["token", "id_token", "code id_token", "code token", "id_token token", "none"]
)
async def test_an_unadvertised_response_type_is_sent_back_as_unsupported(
    client: httpx.AsyncClient, response_type: str
) -> None:
    """OIDC Core §3.1.2.6 / RFC 6749 §4.1.2.1: once the client and its redirect URI are
    verified, the error goes to the client, with its state and RFC 9207 ``iss``; in the
    fragment for a response type that answers there (a token or ID token in it)."""
    assert response_type not in (await discovered(client))["response_types_supported"]

    params = authorize_params(response_type=response_type)
    response = await client.get("/authorize", params=params)
    result = redirected_to_client(response, fragment=response_type != "none")

    assert result["error"] == "unsupported_response_type"
    assert result["state"] == "af0ifjsldkj"
    assert result["iss"] == "http://testserver.local"
    assert "code" not in result


@pytest.mark.usefixtures("first_party")
@pytest.mark.parametrize("mode", ["form_post", "fragment", "query.jwt", "jwt", "web_message"])
async def test_an_unadvertised_response_mode_is_an_invalid_request(
    client: httpx.AsyncClient, mode: str
) -> None:
    """In the query, but in the fragment for a client that asked to read its answer there."""
    assert mode not in (await discovered(client))["response_modes_supported"]
    await signed_in(client)

    params = authorize_params(response_mode=mode)
    response = await client.get("/authorize", params=params)
    result = redirected_to_client(response, fragment=mode == "fragment")

    assert result["error"] == "invalid_request"
    assert "code" not in result


@pytest.mark.usefixtures("first_party")
async def test_only_the_advertised_code_challenge_method_is_accepted(
    client: httpx.AsyncClient,
) -> None:
    assert (await discovered(client))["code_challenge_methods_supported"] == ["S256"]
    await signed_in(client)

    plain = authorize_params(code_challenge="x" * 43, code_challenge_method="plain")
    result = redirected_to_client(await client.get("/authorize", params=plain))

    assert result["error"] == "invalid_request"


@pytest.mark.usefixtures("first_party")
async def test_every_advertised_prompt_value_is_honoured(client: httpx.AsyncClient) -> None:
    prompts = set((await discovered(client))["prompt_values_supported"])
    assert prompts == {"none", "login", "consent", "select_account"}

    assert (
        redirected_to_client(
            await client.get("/authorize", params=authorize_params(prompt="none"))
        )["error"]
        == "login_required"
    )
    await signed_in(client)
    await open_login(client, authorize_params(prompt="login"))
    chooser = await client.get("/authorize", params=authorize_params(prompt="select_account"))
    assert chooser.headers["location"].startswith("/login/account?flow=")
    # A first-party client is never asked for consent, prompt=consent or not (README).
    consent = await client.get("/authorize", params=authorize_params(prompt="consent"))
    assert redirected_to_client(consent)["code"]


@pytest.mark.usefixtures("first_party")
@pytest.mark.parametrize("prompt", ["create", "unknown"])
async def test_an_unadvertised_prompt_value_is_an_invalid_request(
    client: httpx.AsyncClient, prompt: str
) -> None:
    """A prompt value not in prompt_values_supported gets invalid_request, as in
    node-oidc-provider: OIDC Core leaves the choice to the OP, and ignoring prompt=create
    (Initiating User Registration 1.0) would silently skip the sign-up the client asked for."""
    assert prompt not in (await discovered(client))["prompt_values_supported"]
    await signed_in(client)

    params = authorize_params(prompt=prompt)
    result = redirected_to_client(await client.get("/authorize", params=params))

    assert result["error"] == "invalid_request"


@pytest.mark.usefixtures("first_party")
@pytest.mark.parametrize(
    "extra",
    [
        {"display": "popup"},
        {"display": "touch"},
        {"acr_values": "urn:mace:incommon:iap:silver"},
        {"claims": '{"id_token": {"acr": {"essential": true}}}'},
        {"claims_locales": "fr"},
        {"ui_locales": "fr-CA de"},
    ],
    ids=["display-popup", "display-touch", "acr_values", "claims", "claims_locales", "ui_locales"],
)
async def test_optional_parameters_the_document_claims_no_support_for_are_ignored(
    client: httpx.AsyncClient, extra: dict[str, str]
) -> None:
    """OIDC Core §3.1.2.1 and §5.5: display, acr_values, claims (claims_parameter_supported
    is false), claims_locales and unsupported ui_locales are the OP's to ignore; none of them
    may stop the flow or be echoed as if honoured."""
    document = await discovered(client)
    assert document["claims_parameter_supported"] is False
    assert not {"display_values_supported", "acr_values_supported"} & set(document)
    await signed_in(client)

    params = authorize_params(**extra)
    result = redirected_to_client(await client.get("/authorize", params=params))

    assert set(result) == {"code", "state", "iss"}


@pytest.mark.usefixtures("first_party")
@pytest.mark.parametrize(
    ("parameter", "flag", "error"),
    [
        ("request", "request_parameter_supported", "request_not_supported"),
        ("request_uri", "request_uri_parameter_supported", "request_uri_not_supported"),
    ],
)
async def test_request_objects_are_refused_as_discovery_says(
    client: httpx.AsyncClient, parameter: str, flag: str, error: str
) -> None:
    """OIDC Core §6.1-6.2: without support, the answer names the unsupported parameter."""
    assert (await discovered(client))[flag] is False
    await signed_in(client)

    params = authorize_params(**{parameter: "https://app.example/r.jwt"})
    result = redirected_to_client(await client.get("/authorize", params=params))

    assert result["error"] == error


@pytest.mark.usefixtures("first_party")
async def test_max_age_zero_asks_for_a_sign_in_even_from_a_session_begun_this_instant(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """OIDC Core §3.1.2.1: "max_age=0 is equivalent to prompt=login". A session whose
    auth_time is not yet in this process's past (another server's clock a little ahead, or
    the same tick) must not count as young enough."""
    await signed_in(client)
    async with runtime.db.transaction() as session:
        for browser in await session.scalars(select(BrowserSession)):
            browser.auth_time += timedelta(seconds=2)

    await open_login(client, authorize_params(max_age="0"))


# --- the token endpoint ---------------------------------------------------------------


@pytest.mark.parametrize(
    "grant_type",
    [
        "password",
        "implicit",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    ],
)
async def test_an_unadvertised_grant_type_is_unsupported(
    client: httpx.AsyncClient, runtime: Runtime, grant_type: str
) -> None:
    assert grant_type not in (await discovered(client))["grant_types_supported"]
    app = await make_client(runtime, grant_types=["authorization_code", "client_credentials"])

    response = await client.post("/token", data={"grant_type": grant_type}, headers=app.basic)

    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


async def test_every_advertised_grant_type_issues_tokens(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    grants = set((await discovered(client))["grant_types_supported"])
    assert grants == {"authorization_code", "refresh_token", "client_credentials"}
    app = await make_client(runtime, grant_types=["authorization_code", "refresh_token"])

    tokens = await signed_in_tokens(client, runtime, app)
    refreshed = await refresh(client, app, tokens["refresh_token"])
    service = await service_client(runtime)
    own = await client.post(
        "/token", data={"grant_type": "client_credentials"}, headers=service.basic
    )

    assert refreshed.status_code == own.status_code == 200


async def test_every_advertised_token_endpoint_auth_method_authenticates(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    methods = (await discovered(client))["token_endpoint_auth_methods_supported"]
    confidential = await make_client(runtime, grant_types=["authorization_code"])
    public = await make_client(runtime, public=True, grant_types=["authorization_code"])
    callers = {
        "client_secret_basic": (confidential, lambda c: ({}, c.basic)),
        "client_secret_post": (
            confidential,
            lambda c: ({"client_id": c.client_id, "client_secret": c.secret}, {}),
        ),
        "none": (public, lambda c: ({"client_id": c.client_id}, {})),
    }
    assert set(methods) == set(callers)

    for method in methods:
        app, credentials = callers[method]
        fresh = await fresh_code(runtime, app)
        data, headers = credentials(app)
        response = await client.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": fresh.code,
                "redirect_uri": fresh.redirect_uri,
                "code_verifier": fresh.verifier,
            }
            | data,
            headers=headers,
        )
        assert response.status_code == 200, (method, response.text)


ASSERTION = {
    # RFC 7523 §2.2: private_key_jwt and client_secret_jwt both send these two parameters.
    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    "client_assertion": "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln",
}


def assert_refused_as_invalid_client(response: httpx.Response) -> None:
    """RFC 6749 §5.2: 401 and a challenge, as for any other failed client authentication."""
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic realm=")


@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
async def test_an_unadvertised_jwt_client_assertion_is_refused_as_invalid_client(
    client: httpx.AsyncClient, runtime: Runtime, path: str
) -> None:
    """private_key_jwt and client_secret_jwt are not advertised: a client that authenticates
    with an assertion must not be let in on the strength of its client_id alone (as a
    public client would be) or of other credentials beside it."""
    document = await discovered(client)
    for endpoint in ("token", "introspection", "revocation"):
        listed = document[f"{endpoint}_endpoint_auth_methods_supported"]
        assert not {"private_key_jwt", "client_secret_jwt"} & set(listed)
    public = await make_client(runtime, public=True, grant_types=["authorization_code"])
    data = {"grant_type": "authorization_code", "code": "x", "token": "x"} | ASSERTION

    response = await client.post(path, data=data | {"client_id": public.client_id})

    assert_refused_as_invalid_client(response)


async def test_a_public_client_redeeming_a_code_with_an_assertion_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    public = await make_client(runtime, public=True, grant_types=["authorization_code"])
    fresh = await fresh_code(runtime, public)

    response = await fresh.redeem(client, **ASSERTION)

    assert_refused_as_invalid_client(response)


async def test_a_secret_beside_an_assertion_is_two_methods_at_once(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RFC 6749 §2.3: one authentication method per request, as with basic and post."""
    service = await service_client(runtime)

    response = await client.post(
        "/token", data={"grant_type": "client_credentials"} | ASSERTION, headers=service.basic
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_introspection_takes_exactly_its_advertised_methods(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    methods = set((await discovered(client))["introspection_endpoint_auth_methods_supported"])
    assert methods == {"client_secret_basic", "client_secret_post"}
    caller = await service_client(runtime)
    public = await make_client(runtime, public=True)

    basic = await client.post("/introspect", data={"token": "x"}, headers=caller.basic)
    post = await client.post(
        "/introspect",
        data={"token": "x", "client_id": caller.client_id, "client_secret": caller.secret or ""},
    )
    none = await client.post("/introspect", data={"token": "x", "client_id": public.client_id})

    assert basic.json() == post.json() == {"active": False}
    assert_refused_as_invalid_client(none)


async def test_revocation_takes_every_advertised_method(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    methods = set((await discovered(client))["revocation_endpoint_auth_methods_supported"])
    assert methods == {"client_secret_basic", "client_secret_post", "none"}
    caller = await service_client(runtime)
    public = await make_client(runtime, public=True)

    basic = await client.post("/revoke", data={"token": "x"}, headers=caller.basic)
    post = await client.post(
        "/revoke",
        data={"token": "x", "client_id": caller.client_id, "client_secret": caller.secret or ""},
    )
    none = await client.post("/revoke", data={"token": "x", "client_id": public.client_id})

    assert basic.status_code == post.status_code == none.status_code == 200


# --- claims ---------------------------------------------------------------------------


async def test_claims_are_exactly_those_advertised(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Every claim in claims_supported shows in the ID token or userinfo once its scope is
    granted, and neither carries one that is not listed."""
    document = await discovered(client)
    supported = set(document["claims_supported"])
    app = await make_client(runtime, grant_types=["authorization_code"])
    user = await make_user(runtime, locale="es")
    fresh = await fresh_code(runtime, app, user=user, scope="openid profile email")
    response = await fresh.redeem(client)
    assert response.status_code == 200, response.text
    tokens = response.json()
    keys = KeySet.import_key_set((await client.get("/jwks.json")).json())
    id_token = jwt.decode(tokens["id_token"], keys)
    userinfo = await client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )

    # The sid names a browser session, which fresh_code makes.
    seen = set(id_token.claims) | set(userinfo.json())
    assert seen == supported
    assert id_token.header["alg"] in document["id_token_signing_alg_values_supported"]
    # No userinfo_signing_alg_values_supported: userinfo answers plain JSON.
    assert "userinfo_signing_alg_values_supported" not in document
    assert userinfo.headers["content-type"].startswith("application/json")


# --- the end-session endpoint ---------------------------------------------------------


async def test_end_session_takes_every_rp_initiated_logout_parameter(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RP-Initiated Logout 1.0 §2-3: with a hint for the current session, the user is
    signed out at once and sent to the registered post_logout_redirect_uri with the state;
    logout_hint and ui_locales may be sent too (the OP may ignore them), and no front- or
    back-channel logout is claimed, since none is sent."""
    document = await discovered(client)
    assert document["end_session_endpoint"] == "http://testserver.local/logout"
    assert not {"frontchannel_logout_supported", "backchannel_logout_supported"} & set(document)
    user = await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    await signed_in(client)
    async with runtime.db.transaction() as session:
        sid = await session.scalar(select(BrowserSession.sid))

    response = await client.get(
        "/logout",
        params={
            "id_token_hint": await id_token(runtime, user, sid=str(sid)),
            "logout_hint": user.email,
            "client_id": CLIENT_ID,
            "post_logout_redirect_uri": POST_LOGOUT_URI,
            "state": "bye",
            "ui_locales": "es",
        },
    )

    assert response.status_code == 303
    assert response.headers["location"] == POST_LOGOUT_URI + "?state=bye"
    silent = await client.get("/authorize", params=authorize_params(prompt="none"))
    assert redirected_to_client(silent)["error"] == "login_required"
