"""Access tokens fit in the header that carries them: nginx's ``large_client_header_buffers``
(8k) must hold the whole ``Authorization: Bearer <token>`` line, so a token longer is issued
but refused by every service behind such a proxy. ``aud`` is the part a client makes grow
(RFC 8707 resources); past the limit the token request is ``invalid_target``."""

from __future__ import annotations

import base64

import httpx

from identity.runtime import Runtime
from tests.browser import add_oauth_client, add_user, authorize_params, redirected_to_client
from tests.integration.oauth_helpers import fresh_code, make_client, refresh, verify_with_jwks

LIMIT = 8192 - len("Authorization: Bearer \r\n")
LONG = "https://r{}.example.com/" + "a" * 1990


def _payload_bytes(token: str) -> int:
    segment = token.split(".")[1]
    return len(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _length_with_payload(token: str, payload: int) -> int:
    """The length of ``token`` with a payload of ``payload`` bytes (base64url, no padding)."""
    header, _, signature = token.split(".")
    return len(header) + len(signature) + 2 + -(-4 * payload // 3)


async def _service_token(
    http: httpx.AsyncClient, app_basic: dict[str, str], resources: list[str]
) -> httpx.Response:
    return await http.post(
        "/token",
        data={"grant_type": "client_credentials", "resource": resources},
        headers=app_basic,
    )


async def test_resources_just_under_the_limit_work_and_just_over_are_invalid_target(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    base = [LONG.format(1), LONG.format(2)]
    short = "https://r.example.com/"
    probe = await make_client(
        runtime, grant_types=["client_credentials"], redirect_uris=[], resources=[*base, short]
    )
    measured = (await _service_token(client, probe.basic, [*base, short])).json()["access_token"]
    payload = _payload_bytes(measured)
    room = 0
    while _length_with_payload(measured, payload + room + 1) <= LIMIT:
        room += 1
    under = short + "u" * room
    over = short + "o" * (room + 1)
    # Another client of the same shape: its id is as long, so the token grows only by aud.
    app = await make_client(
        runtime,
        grant_types=["client_credentials"],
        redirect_uris=[],
        resources=[*base, under, over],
    )

    fits = await _service_token(client, app.basic, [*base, under])
    too_long = await _service_token(client, app.basic, [*base, over])

    assert fits.status_code == 200, fits.text
    token = fits.json()["access_token"]
    assert LIMIT - 2 <= len(token) <= LIMIT
    assert (await verify_with_jwks(client, token)).claims["aud"] == [*base, under]
    assert too_long.status_code == 400, f"{len(too_long.text)} bytes answered"
    assert too_long.json()["error"] == "invalid_target"


async def test_a_code_asking_for_too_many_resources_stays_usable_for_fewer(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Their names alone would fit: only the token as issued, with its other claims, does not.
    resources = [LONG.format(n) for n in range(3)]
    app = await make_client(runtime, resources=resources)
    code = await fresh_code(runtime, app, resources=resources)

    refused = await code.redeem(client)
    narrowed = await code.redeem(client, resource=resources[0])

    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_target"
    assert narrowed.status_code == 200, narrowed.text
    claims = (await verify_with_jwks(client, narrowed.json()["access_token"])).claims
    assert claims["aud"] == resources[0]


async def test_authorize_refuses_resources_no_access_token_could_hold(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Their names alone, base64url encoded, pass the limit: no sign-in could end in a token.
    resources = [LONG.format(n) for n in range(5)]
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True, resources=resources)

    response = await client.get("/authorize", params=authorize_params() | {"resource": resources})

    result = redirected_to_client(response)
    assert result["error"] == "invalid_target"
    assert result["state"] == "af0ifjsldkj"


async def test_a_refresh_for_too_many_resources_keeps_the_refresh_token_usable_for_fewer(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    resources = [LONG.format(n) for n in range(3)]
    app = await make_client(runtime, resources=resources)
    first = (
        await (await fresh_code(runtime, app, resources=resources)).redeem(
            client, resource=resources[0]
        )
    ).json()

    refused = await refresh(client, app, first["refresh_token"])
    narrowed = await refresh(client, app, first["refresh_token"], resource=resources[1])

    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_target"
    assert narrowed.status_code == 200, narrowed.text
    claims = (await verify_with_jwks(client, narrowed.json()["access_token"])).claims
    assert claims["aud"] == resources[1]


async def test_a_resource_of_accented_letters_that_fits_in_a_token_is_issued_for(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Two bytes each in the token's UTF-8: some 5,400 characters of base64url with the rest,
    # well under the limit, though \u00e9 escapes (six bytes each) would be far over it.
    resource = "https://r.example.com/" + "\u00e9" * 2000
    app = await make_client(
        runtime, grant_types=["client_credentials"], redirect_uris=[], resources=[resource]
    )

    response = await _service_token(client, app.basic, [resource])

    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert len(token) <= LIMIT
    assert (await verify_with_jwks(client, token)).claims["aud"] == resource
