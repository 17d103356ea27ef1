"""Pending sign-ins (flows) one client address may open: /authorize and the hosted pages store
one for 15 minutes in the shared store, and a client that knows one client_id and redirect
URI (both public) could otherwise fill Redis with them."""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from redis.asyncio import Redis

from identity.oauth.interaction import FlowStore
from identity.runtime import Runtime
from identity.settings import Rate
from identity.store.memory import MemoryStore
from tests.browser import (
    PASSWORD,
    add_oauth_client,
    add_user,
    approve_consent,
    authorize_params,
    form_fields,
    redirected_to_client,
    sign_in,
)
from tests.integration.account_helpers import add_member, make_account
from tests.integration.oauth_helpers import make_user
from tests.integration.page_helpers import posted_twice

MAX = 3
SECURITY = "/account/security"


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return env | {"IDENTITY_SIGN_IN_LIMIT_PER_IP": f"{MAX}/10m"}


async def stored_flows(runtime: Runtime) -> int:
    """How many pending sign-ins the store holds."""
    settings = runtime.settings
    if settings.redis_url is None:
        assert isinstance(runtime.store, MemoryStore)
        return sum(key.startswith("flow:") for key in runtime.store._items)
    redis = Redis.from_url(settings.redis_url)
    try:
        pattern = f"{settings.redis_key_prefix}flow:*"
        return len([key async for key in redis.scan_iter(match=pattern, count=500)])
    finally:
        await redis.aclose()


async def open_flows(http: httpx.AsyncClient, count: int, **overrides: str) -> None:
    for _ in range(count):
        response = await http.get("/authorize", params=authorize_params(**overrides))
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?flow="), response.headers


async def test_new_flows_beyond_the_limit_go_back_to_the_client_temporarily_unavailable(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime)
    await open_flows(client, MAX)

    refused = await client.get("/authorize", params=authorize_params(state="s-42"))

    answer = redirected_to_client(refused)
    assert answer["error"] == "temporarily_unavailable"
    assert answer["state"] == "s-42"
    assert answer["iss"] == runtime.settings.issuer
    assert await stored_flows(runtime) == MAX


async def test_an_unknown_client_still_gets_the_error_page_beyond_the_limit(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Nothing is redirected before the redirect URI is verified, limit or not."""
    await add_oauth_client(runtime)
    await open_flows(client, MAX)

    response = await client.get("/authorize", params=authorize_params(client_id="nobody"))

    assert response.status_code == 400 and "location" not in response.headers


async def test_another_browser_still_opens_flows(
    client: httpx.AsyncClient, runtime: Runtime, other_browser: httpx.AsyncClient
) -> None:
    await add_oauth_client(runtime)
    await open_flows(client, MAX)

    await open_flows(other_browser, 1)

    assert await stored_flows(runtime) == MAX + 1


async def test_answers_given_at_once_do_not_count(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A signed-in browser that gets its code straight away (or login_required for
    prompt=none) stores nothing, and is not refused however often it asks."""
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    redirected_to_client(await sign_in(client))  # the one flow counted

    for _ in range(MAX + 1):
        assert "code" in redirected_to_client(
            await client.get("/authorize", params=authorize_params())
        )
        silent = authorize_params(prompt="none")
        assert "code" in redirected_to_client(await client.get("/authorize", params=silent))

    await open_flows(client, MAX - 1, prompt="login")  # new flows, up to the limit
    assert await stored_flows(runtime) == MAX - 1
    refused = await client.get("/authorize", params=authorize_params(prompt="login"))
    assert redirected_to_client(refused)["error"] == "temporarily_unavailable"


async def test_a_flow_saved_again_does_not_count(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signing in (twice, a double click), picking an account and consenting each store the
    same flow again: with room for one new flow, the sign-in still ends with a code."""
    one = dataclasses.replace(runtime.settings, sign_in_limit_per_ip=Rate(1, 600))
    monkeypatch.setattr(runtime, "settings", one)
    await add_oauth_client(runtime)
    ana = await add_user(runtime)
    await make_account(runtime, ana, "Acme")
    globex = await make_account(runtime, await make_user(runtime), "Globex")
    await add_member(runtime, globex, ana, ["invoices"])

    page = await client.get("/authorize", params=authorize_params())
    login = await client.get(page.headers["location"])
    fields = form_fields(login.text) | {"email": ana.email, "password": PASSWORD}
    _, signed_in = await posted_twice(client, "/login", fields)
    assert signed_in.headers["location"].startswith("/login/account?flow="), signed_in.text
    picker = await client.get(signed_in.headers["location"])
    picked = await client.post(
        "/login/account", data=form_fields(picker.text) | {"account_id": str(globex.id)}
    )
    assert picked.headers["location"].startswith("/consent?flow="), picked.text

    assert "code" in redirected_to_client(await approve_consent(client, picked.headers["location"]))


async def test_hosted_pages_refuse_new_sign_ins_beyond_the_limit_with_a_429_page(
    client: httpx.AsyncClient, runtime: Runtime, other_browser: httpx.AsyncClient
) -> None:
    for _ in range(MAX):
        to_login = await client.get(SECURITY)
        assert to_login.headers["location"].startswith("/login?flow=")

    refused = await client.get(SECURITY)

    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("text/html")
    assert 0 < int(refused.headers["retry-after"]) <= 600
    assert "Too many sign-ins" in refused.text
    assert await stored_flows(runtime) == MAX
    # Spanish too, and another address is not affected.
    spanish = await client.get(SECURITY, headers={"accept-language": "es"})
    assert spanish.status_code == 429 and "Demasiados" in spanish.text
    assert (await other_browser.get(SECURITY)).headers["location"].startswith("/login?flow=")


async def test_authorize_beyond_the_limit_keeps_the_fragment_for_a_fragment_client(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Only response_mode=query is supported, so a request asking for the fragment is refused
    as invalid before any flow: the limit never has to answer it, and it still gets its
    refusal in the fragment."""
    await add_oauth_client(runtime)
    await open_flows(client, MAX)

    asked = authorize_params(response_mode="fragment")
    answer = redirected_to_client(await client.get("/authorize", params=asked), fragment=True)

    assert answer["error"] == "invalid_request"


async def test_the_longest_flow_is_stored_in_utf8(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The reviewer's longest flow (a 2048-character state, emoji in login_hint and nonce)
    took 41,080 bytes of Redis written with JSON escapes; in UTF-8 it takes under 13 KB,
    and resumes with every character intact."""
    await add_oauth_client(runtime)
    emoji = "\U0001f600"
    hint = emoji * 2048
    params = authorize_params(state="s" * 2048, login_hint=hint, nonce=emoji * 512)

    response = await client.get("/authorize", params=params)

    flow_id = response.headers["location"].removeprefix("/login?flow=")
    raw = await runtime.store.get("flow:" + flow_id)
    assert raw is not None and len(raw) < 13_000
    flow = await FlowStore(runtime.store).load(flow_id)
    assert flow is not None and flow.request.get("login_hint") == hint
