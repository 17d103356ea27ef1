"""Staff's management of OAuth clients: /api/v1/clients, with the command line's rules."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from identity.clients.models import OAuthClient
from identity.clock import utcnow
from identity.crypto import digest
from identity.runtime import Runtime
from identity.tokens.consents import remember
from identity.tokens.models import AuthorizationCode, Consent, RefreshToken
from tests.integration.account_helpers import CLIENT_ID, staff_headers, user_headers
from tests.integration.oauth_helpers import (
    BILLING,
    REDIRECT_URI,
    RegisteredClient,
    fresh_code,
    is_active,
    issue_code,
    make_client,
    make_user,
    refresh,
    signed_in_tokens,
    verify_with_jwks,
)

RACERS = 6
PLANS = "https://plans.example.com"
PORTAL = {
    "name": "Portal",
    "redirect_uris": [REDIRECT_URI],
    "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
    "scope": "openid profile email reports:read",
}


async def _register(
    http: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    response = await http.post("/api/v1/clients", json=PORTAL | body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _registered(http: httpx.AsyncClient, headers: dict[str, str]) -> RegisteredClient:
    created = await _register(http, headers)
    return RegisteredClient(created["client_id"], created["client_secret"])


async def _client_credentials(http: httpx.AsyncClient, client: RegisteredClient) -> int:
    data = {"grant_type": "client_credentials", "scope": "reports:read"}
    return (await http.post("/token", data=data, headers=client.basic)).status_code


async def test_a_confidential_clients_secret_is_shown_once_and_works(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    staff = await staff_headers(runtime)
    created = await _register(client, staff)
    secret = created.pop("client_secret")
    registered = RegisteredClient(created["client_id"], secret)

    assert await _client_credentials(client, registered) == 200
    assert created["public"] is False and created["disabled"] is False
    assert created["grant_types"] == PORTAL["grant_types"]
    read = await client.get(f"/api/v1/clients/{registered.client_id}", headers=staff)
    listed = await client.get("/api/v1/clients", params={"limit": 200}, headers=staff)
    assert read.status_code == 200 and read.json() == created
    assert created in listed.json()
    for answer in (read.text, listed.text):
        assert secret not in answer and digest(secret) not in answer
        assert "secret" not in answer


async def test_answers_showing_a_secret_or_listing_clients_are_never_cached(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    staff = await staff_headers(runtime)
    created = await client.post("/api/v1/clients", json=PORTAL, headers=staff)
    client_id = created.json()["client_id"]
    rotated = await client.post(f"/api/v1/clients/{client_id}/secret", headers=staff)
    listed = await client.get("/api/v1/clients", headers=staff)

    assert "client_secret" in created.json() and "client_secret" in rotated.json()
    for answer in (created, rotated, listed):
        assert answer.headers["cache-control"] == "no-store", answer.request.url


async def test_a_public_client_has_no_secret_to_rotate(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    staff = await staff_headers(runtime)
    created = await _register(
        client,
        staff,
        public=True,
        redirect_uris=["com.example.app:/cb"],
        grant_types=["authorization_code"],
    )

    assert "client_secret" not in created
    assert created["public"] is True and created["require_pkce"] is True
    rotated = await client.post(f"/api/v1/clients/{created['client_id']}/secret", headers=staff)
    assert rotated.status_code == 409, rotated.text
    assert rotated.headers["content-type"].startswith("application/problem+json")


async def test_the_list_is_paged(client: httpx.AsyncClient, runtime: Runtime) -> None:
    staff = await staff_headers(runtime)
    ids = [(await _register(client, staff, name=f"App {n}"))["client_id"] for n in range(3)]
    pages = [
        (await client.get("/api/v1/clients", params={"offset": o, "limit": 2}, headers=staff))
        for o in (0, 2)
    ]
    seen = [row["client_id"] for page in pages for row in page.json()]
    # Besides the three, the client the staff token was issued through.
    assert [len(page.json()) for page in pages] == [2, 2]
    assert [client_id for client_id in seen if client_id != CLIENT_ID] == ids


async def test_a_disabled_client_gets_no_tokens_until_enabled_again(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    staff = await staff_headers(runtime)
    portal = await _registered(client, staff)
    resource_server = await make_client(runtime, grant_types=["client_credentials"])
    tokens = await signed_in_tokens(client, runtime, portal)
    # Now in this process's client cache, which the change must not wait for.
    assert await _client_credentials(client, portal) == 200

    path = f"/api/v1/clients/{portal.client_id}"
    disabled = await client.patch(path, json={"disabled": True}, headers=staff)
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True

    assert await _client_credentials(client, portal) == 401
    assert (await refresh(client, portal, tokens["refresh_token"])).status_code == 401
    assert not await is_active(client, resource_server, tokens["access_token"])

    enabled = await client.patch(path, json={"disabled": False}, headers=staff)
    assert enabled.status_code == 200 and enabled.json()["disabled"] is False
    assert await _client_credentials(client, portal) == 200
    refreshed = await refresh(client, portal, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text


@pytest.mark.parametrize("end", ["disable", "delete"])
async def test_a_service_clients_own_token_stops_at_once_when_it_is_disabled_or_deleted(
    client: httpx.AsyncClient, runtime: Runtime, end: str
) -> None:
    # client_credentials tokens are recorded nowhere to be denied one by one.
    staff = await staff_headers(runtime)
    created = await _register(client, staff, scope="openid identity:authz")
    service = RegisteredClient(created["client_id"], created["client_secret"])
    data = {"grant_type": "client_credentials", "scope": "identity:authz"}
    token = (await client.post("/token", data=data, headers=service.basic)).json()
    its_own = {"Authorization": f"Bearer {token['access_token']}"}
    check = {"checks": []}
    assert (
        await client.post("/api/v1/authz/check", json=check, headers=its_own)
    ).status_code != 401
    path = f"/api/v1/clients/{service.client_id}"
    if end == "disable":
        await client.patch(path, json={"disabled": True}, headers=staff)
    else:
        await client.delete(path, headers=staff)
    refused = await client.post("/api/v1/authz/check", json=check, headers=its_own)
    assert refused.status_code == 401
    introspector = await make_client(runtime, grant_types=["client_credentials"], redirect_uris=[])
    assert not await is_active(client, introspector, token["access_token"])


async def test_a_scope_taken_from_a_client_leaves_its_own_token_at_once(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # A client's own token is staff by its scope alone (no administrator stands behind it):
    # staff taking identity:admin away from the client must end that, not in 10 minutes.
    staff = await staff_headers(runtime)
    created = await _register(client, staff, scope="openid identity:admin reports:read")
    robot = RegisteredClient(created["client_id"], created["client_secret"])
    data = {"grant_type": "client_credentials", "scope": "identity:admin reports:read"}
    token = (await client.post("/token", data=data, headers=robot.basic)).json()["access_token"]
    its_own = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/v1/clients", headers=its_own)).status_code == 200

    path = f"/api/v1/clients/{robot.client_id}"
    narrowed = await client.patch(path, json={"scope": "openid reports:read"}, headers=staff)
    assert narrowed.status_code == 200, narrowed.text

    assert (await client.get("/api/v1/clients", headers=its_own)).status_code == 403
    introspector = await make_client(runtime, grant_types=["client_credentials"], redirect_uris=[])
    answer = await client.post("/introspect", data={"token": token}, headers=introspector.basic)
    assert answer.json()["active"] is True and answer.json()["scope"] == "reports:read"


async def test_a_client_no_longer_acting_for_itself_loses_its_own_tokens_at_once(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Its own token's rights are its registration's: once staff take client_credentials
    # away, the staff token it got through that grant must not act for 10 more minutes.
    staff = await staff_headers(runtime)
    created = await _register(client, staff, scope="openid identity:admin")
    robot = RegisteredClient(created["client_id"], created["client_secret"])
    data = {"grant_type": "client_credentials", "scope": "identity:admin"}
    token = (await client.post("/token", data=data, headers=robot.basic)).json()["access_token"]
    its_own = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/v1/clients", headers=its_own)).status_code == 200

    path = f"/api/v1/clients/{robot.client_id}"
    grants = {"grant_types": ["authorization_code", "refresh_token"]}
    assert (await client.patch(path, json=grants, headers=staff)).status_code == 200

    assert (await client.get("/api/v1/clients", headers=its_own)).status_code == 401
    introspector = await make_client(runtime, grant_types=["client_credentials"], redirect_uris=[])
    assert not await is_active(client, introspector, token)


# Each way staff stop a client acting for itself, and the change that lets it again.
STOP_AND_RESUME = {
    "disabled": ({"disabled": True}, {"disabled": False}),
    "client_credentials taken": (
        {"grant_types": ["authorization_code", "refresh_token"]},
        {"grant_types": PORTAL["grant_types"]},
    ),
}


async def _own_token(
    http: httpx.AsyncClient, robot: RegisteredClient, monkeypatch: pytest.MonkeyPatch, at: datetime
) -> str:
    """A client_credentials token the token endpoint issues to ``robot`` at ``at``."""
    with monkeypatch.context() as clock:
        clock.setattr("identity.web.oauth.utcnow", lambda: at)
        data = {"grant_type": "client_credentials", "scope": "identity:authz"}
        answer = await http.post("/token", data=data, headers=robot.basic)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


async def _change_at(
    http: httpx.AsyncClient,
    staff: dict[str, str],
    client_id: str,
    change: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    at: datetime,
) -> None:
    """Staff's PATCH of the client, made at ``at``."""
    with monkeypatch.context() as clock:
        clock.setattr("identity.web.api.clients.utcnow", lambda: at)
        answer = await http.patch(f"/api/v1/clients/{client_id}", json=change, headers=staff)
    assert answer.status_code == 200, answer.text


async def _accepted(http: httpx.AsyncClient, runtime: Runtime, token: str) -> bool:
    """Whether /api/v1 takes the token and introspection calls it active (both, or neither)."""
    bearer = {"Authorization": f"Bearer {token}"}
    answer = await http.post("/api/v1/authz/check", json={"checks": []}, headers=bearer)
    introspector = await make_client(runtime, grant_types=["client_credentials"], redirect_uris=[])
    active = await is_active(http, introspector, token)
    assert (answer.status_code != 401) == active, answer.text
    return active


@pytest.mark.parametrize("stop", STOP_AND_RESUME)
async def test_a_clients_own_tokens_stay_refused_once_it_may_act_for_itself_again(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, stop: str
) -> None:
    # The answer to a leaked secret: stop the client, rotate its secret, let it go on. The
    # tokens a thief got before the stop are recorded nowhere, and must not come back with
    # the client; those the client gets afterwards work.
    staff = await staff_headers(runtime)
    created = await _register(client, staff, scope="openid identity:authz")
    robot = RegisteredClient(created["client_id"], created["client_secret"])
    now = utcnow()
    stolen = await _own_token(client, robot, monkeypatch, now - timedelta(seconds=10))
    assert await _accepted(client, runtime, stolen)

    stopping, resuming = STOP_AND_RESUME[stop]
    await _change_at(
        client, staff, robot.client_id, stopping, monkeypatch, now - timedelta(seconds=5)
    )
    rotated = await client.post(f"/api/v1/clients/{robot.client_id}/secret", headers=staff)
    robot = RegisteredClient(robot.client_id, rotated.json()["client_secret"])
    await _change_at(client, staff, robot.client_id, resuming, monkeypatch, now)

    assert not await _accepted(client, runtime, stolen)
    assert await _accepted(client, runtime, await _own_token(client, robot, monkeypatch, now))


@pytest.mark.parametrize("stop", STOP_AND_RESUME)
async def test_a_clients_own_token_issued_in_the_second_it_was_stopped_stays_refused(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, stop: str
) -> None:
    # A token's iat is whole seconds: one issued a moment before the stop, in the same
    # second, carries an iat earlier than the stop's time, and must be refused all the same.
    staff = await staff_headers(runtime)
    created = await _register(client, staff, scope="openid identity:authz")
    robot = RegisteredClient(created["client_id"], created["client_secret"])
    second = utcnow().replace(microsecond=0) - timedelta(seconds=10)
    stolen = await _own_token(client, robot, monkeypatch, second + timedelta(milliseconds=100))

    stopping, resuming = STOP_AND_RESUME[stop]
    await _change_at(
        client, staff, robot.client_id, stopping, monkeypatch, second + timedelta(milliseconds=200)
    )
    await _change_at(client, staff, robot.client_id, resuming, monkeypatch, utcnow())

    assert not await _accepted(client, runtime, stolen)


async def test_giving_client_credentials_back_leaves_its_users_tokens_alone(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the client's own tokens are marked: its users' tokens are not what it acts with.
    staff = await staff_headers(runtime)
    portal = await _registered(client, staff)
    tokens = await signed_in_tokens(client, runtime, portal)
    stopping, resuming = STOP_AND_RESUME["client_credentials taken"]
    later = utcnow() + timedelta(seconds=5)
    await _change_at(client, staff, portal.client_id, stopping, monkeypatch, later)
    await _change_at(client, staff, portal.client_id, resuming, monkeypatch, later)

    introspector = await make_client(runtime, grant_types=["client_credentials"], redirect_uris=[])
    assert await is_active(client, introspector, tokens["access_token"])


async def test_a_scope_taken_from_a_client_leaves_its_users_tokens_at_once(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # An administrator's token is staff only through a client allowed identity:admin: staff
    # taking that away (an admin console found compromised) must end it, not in 10 minutes.
    staff = await staff_headers(runtime)
    created = await _register(client, staff, scope="openid email identity:admin")
    console = RegisteredClient(created["client_id"], created["client_secret"])
    admin = await make_user(runtime, is_admin=True)
    tokens = await signed_in_tokens(
        client, runtime, console, user=admin, scope="openid email identity:admin"
    )
    theirs = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get("/api/v1/clients", headers=theirs)).status_code == 200
    assert "email" in (await client.get("/userinfo", headers=theirs)).json()

    path = f"/api/v1/clients/{console.client_id}"
    narrowed = await client.patch(path, json={"scope": "openid"}, headers=staff)
    assert narrowed.status_code == 200, narrowed.text

    assert (await client.get("/api/v1/clients", headers=theirs)).status_code == 403
    assert "email" not in (await client.get("/userinfo", headers=theirs)).json()
    introspector = await make_client(runtime, grant_types=["client_credentials"], redirect_uris=[])
    answer = await client.post(
        "/introspect", data={"token": tokens["access_token"]}, headers=introspector.basic
    )
    assert answer.json()["active"] is True and answer.json()["scope"] == "openid"


async def test_a_scope_taken_from_a_client_leaves_its_introspected_refresh_tokens(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The refresh token keeps what was granted, but what it is good for now is only what
    the client may still have: introspection says so, as for access tokens."""
    staff = await staff_headers(runtime)
    created = await _register(client, staff, scope="openid email profile")
    app = RegisteredClient(created["client_id"], created["client_secret"])
    tokens = await signed_in_tokens(client, runtime, app, scope="openid email profile")

    path = f"/api/v1/clients/{app.client_id}"
    narrowed = await client.patch(path, json={"scope": "openid email"}, headers=staff)
    assert narrowed.status_code == 200, narrowed.text

    answer = await client.post(
        "/introspect", data={"token": tokens["refresh_token"]}, headers=app.basic
    )
    assert answer.json()["active"] is True
    assert answer.json()["scope"] == "openid email"


async def test_a_rotated_secret_stops_the_old_one_at_once(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    staff = await staff_headers(runtime)
    created = await _register(client, staff)
    old = RegisteredClient(created["client_id"], created["client_secret"])
    assert await _client_credentials(client, old) == 200

    rotated = await client.post(f"/api/v1/clients/{old.client_id}/secret", headers=staff)

    assert rotated.status_code == 200, rotated.text
    new = RegisteredClient(old.client_id, rotated.json()["client_secret"])
    assert new.secret != old.secret
    assert await _client_credentials(client, old) == 401
    assert await _client_credentials(client, new) == 200


async def _rows(runtime: Runtime, model: Any, client_id: str) -> int:
    async with runtime.db.transaction() as session:
        count = select(func.count()).select_from(model).where(model.client_id == client_id)
        return int(await session.scalar(count) or 0)


async def test_deleting_a_client_ends_what_it_holds(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    staff = await staff_headers(runtime)
    portal = await _registered(client, staff)
    resource_server = await make_client(runtime, grant_types=["client_credentials"])
    user = await make_user(runtime)
    tokens = await signed_in_tokens(client, runtime, portal, user=user)
    await issue_code(runtime, portal, user)
    async with runtime.db.transaction() as session:
        await remember(session, user.id, portal.client_id, ["openid"], utcnow(), account_id=None)

    deleted = await client.delete(f"/api/v1/clients/{portal.client_id}", headers=staff)

    assert deleted.status_code == 204, deleted.text
    for model in (RefreshToken, AuthorizationCode, Consent):
        assert await _rows(runtime, model, portal.client_id) == 0, model
    assert (await refresh(client, portal, tokens["refresh_token"])).status_code == 401
    assert not await is_active(client, resource_server, tokens["access_token"])
    gone = await client.get(f"/api/v1/clients/{portal.client_id}", headers=staff)
    assert gone.status_code == 404


async def _grants_under_way(
    http: httpx.AsyncClient, runtime: Runtime, portal: RegisteredClient
) -> list[Coroutine[Any, Any, httpx.Response]]:
    """Refreshes and code redemptions of ``portal``, interleaved, ready to race a change."""
    refresh_tokens = [
        (await signed_in_tokens(http, runtime, portal))["refresh_token"] for _ in range(RACERS)
    ]
    grants = []
    for token in refresh_tokens:
        fresh = await fresh_code(runtime, portal)
        grants += [refresh(http, portal, token), fresh.redeem(http)]
    return grants


async def test_a_delete_racing_refreshes_and_redemptions_leaves_nothing_live(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # On PostgreSQL a delete that locked the client row first deadlocked with a redemption
    # (holding its code, inserting a refresh token that refers to the client): a 503.
    staff = await staff_headers(runtime)
    portal = await _registered(client, staff)
    grants = await _grants_under_way(client, runtime, portal)

    deleted, *answers = await asyncio.gather(
        client.delete(f"/api/v1/clients/{portal.client_id}", headers=staff),
        *grants,
    )

    assert deleted.status_code == 204, deleted.text
    assert all(a.status_code in (200, 400, 401) for a in answers), [a.text for a in answers]
    for model in (RefreshToken, AuthorizationCode, Consent):
        assert await _rows(runtime, model, portal.client_id) == 0, model


async def test_a_disable_racing_refreshes_and_redemptions_leaves_no_access_token_live(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Each grant authenticates its client from the cache, before the disable commits; the
    # tokens issued after it were missed by its deny list, and lived for 10 minutes.
    staff = await staff_headers(runtime)
    portal = await _registered(client, staff)
    resource_server = await make_client(runtime, grant_types=["client_credentials"])
    grants = await _grants_under_way(client, runtime, portal)

    disabled, *answers = await asyncio.gather(
        client.patch(f"/api/v1/clients/{portal.client_id}", json={"disabled": True}, headers=staff),
        *grants,
    )

    assert disabled.status_code == 200, disabled.text
    assert all(a.status_code in (200, 400, 401) for a in answers), [a.text for a in answers]
    issued = [a.json()["access_token"] for a in answers if a.status_code == 200]
    live = [token for token in issued if await is_active(client, resource_server, token)]
    assert live == [], f"{len(live)} of {len(issued)} issued"


async def test_every_change_is_audited_without_secrets(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    staff = await staff_headers(runtime)
    created = await _register(client, staff)
    client_id = created["client_id"]
    path = f"/api/v1/clients/{client_id}"
    await client.patch(path, json={"name": "Portal 2", "first_party": True}, headers=staff)
    rotated = await client.post(f"{path}/secret", headers=staff)
    await client.delete(path, headers=staff)

    log = await client.get("/api/v1/audit", params={"target_id": client_id}, headers=staff)
    events = list(reversed(log.json()["events"]))
    assert [e["action"] for e in events] == [
        "client.created",
        "client.updated",
        "client.secret_rotated",
        "client.deleted",
    ]
    assert events[0]["details"]["new"]["name"] == "Portal"
    assert events[1]["details"] == {
        "old": {"name": "Portal", "first_party": False},
        "new": {"name": "Portal 2", "first_party": True},
    }
    assert events[3]["details"]["old"]["name"] == "Portal 2"
    text = json.dumps(events)
    for secret in (created["client_secret"], rotated.json()["client_secret"]):
        assert secret not in text and digest(secret) not in text


async def test_a_change_keeps_the_registration_rules(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    staff = await staff_headers(runtime)
    created = await _register(client, staff)
    path = f"/api/v1/clients/{created['client_id']}"

    changed = await client.patch(
        path,
        json={"redirect_uris": ["https://new.example.com/cb"], "scope": "openid  email"},
        headers=staff,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["redirect_uris"] == ["https://new.example.com/cb"]
    assert changed.json()["scope"] == "openid email"
    # The authorization_code grant still needs a redirect URI.
    refused = await client.patch(path, json={"redirect_uris": []}, headers=staff)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "redirect_uris"
    assert (await client.get(path, headers=staff)).json() == changed.json()


@pytest.mark.parametrize(
    "uri",
    ["https://user:hunter2@app.example.com/cb", "https://user:hunter2@[app.example.com/cb"],
)
async def test_a_refused_redirect_uri_does_not_show_its_password(
    client: httpx.AsyncClient, runtime: Runtime, uri: str
) -> None:
    # The second is unparsable (an unclosed IPv6 bracket), refused before any other rule.
    body = PORTAL | {"redirect_uris": [uri]}
    refused = await client.post("/api/v1/clients", json=body, headers=await staff_headers(runtime))
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["errors"][0]["field"] == "redirect_uris"
    assert "hunter2" not in refused.text and "app.example.com/cb" in refused.text


@pytest.mark.parametrize("separator", ["&", ";"], ids=["ampersand", "semicolon"])
@pytest.mark.parametrize(
    "name",
    ["code", "state", "iss", "error", "error_description", "error_uri", "session_state"],
)
async def test_a_redirect_uri_already_holding_a_response_parameter_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, name: str, separator: str
) -> None:
    # The authorization response adds these to the query: the client would get each twice
    # and could not tell ours from its own. The query is sent back as written, so a
    # framework that also splits it on ";" (as many do) reads a name after one too.
    staff = await staff_headers(runtime)
    uri = f"https://app.example.com/cb?tenant=1{separator}{name}=x"
    refused = await client.post(
        "/api/v1/clients", json=PORTAL | {"redirect_uris": [uri]}, headers=staff
    )
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    error = refused.json()["errors"][0]
    assert error["field"] == "redirect_uris" and repr(name) in error["message"]

    path = f"/api/v1/clients/{(await _register(client, staff))['client_id']}"
    changed = await client.patch(path, json={"redirect_uris": [uri]}, headers=staff)
    assert changed.status_code == 422, changed.text
    assert changed.json()["errors"][0]["field"] == "redirect_uris"


async def test_a_post_logout_redirect_uri_already_holding_state_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # The logout answer adds the client's state to it.
    body = PORTAL | {"post_logout_redirect_uris": ["https://app.example.com/bye?state=1"]}
    refused = await client.post("/api/v1/clients", json=body, headers=await staff_headers(runtime))
    assert refused.status_code == 422, refused.text
    error = refused.json()["errors"][0]
    assert error["field"] == "post_logout_redirect_uris" and "'state'" in error["message"]


async def test_a_redirect_uri_query_without_response_parameters_is_accepted(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Names are compared whole and exactly: these are not the response's parameters.
    uri = "https://app.example.com/cb?tenant=1&state_id=2&Code=3&next=code;lang=en"
    created = await _register(client, await staff_headers(runtime), redirect_uris=[uri])
    assert created["redirect_uris"] == [uri]


@pytest.mark.parametrize(
    "host",
    [
        "127.1",  # 127.0.0.1, the last parts filled with zeros
        "2130706433",  # 127.0.0.1 as one number
        "0x7f.1",  # hexadecimal
        "0177.0.0.1",  # octal
        "127.0.0.1.",  # a final dot
        "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # full-width digits
        "app.example.123",  # not an address at all: no browser opens it
        "app.example.0x",
    ],
)
@pytest.mark.parametrize("field", ["redirect_uris", "post_logout_redirect_uris"])
async def test_a_host_a_browser_reads_as_another_ip_address_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, host: str, field: str
) -> None:
    # WHATWG URL: a host whose last label is a number is an IPv4 address, so the browser is
    # sent to 127.0.0.1 by a URI that names no such address (or to no host at all); staff
    # reading the registration, or the audit log, could not tell where codes go.
    staff = await staff_headers(runtime)
    body = PORTAL | {field: [f"https://{host}/cb"]}
    refused = await client.post("/api/v1/clients", json=body, headers=staff)
    assert refused.status_code == 422, refused.text
    error = refused.json()["errors"][0]
    assert error["field"] == field and "IPv4" in error["message"]


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "192.0.2.10", "[::1]", "app1.example.com", "1.example.com", "a.0xg"]
)
async def test_an_ip_address_or_a_name_with_numbers_is_a_host(
    client: httpx.AsyncClient, runtime: Runtime, host: str
) -> None:
    uri = f"https://{host}/cb"
    created = await _register(client, await staff_headers(runtime), redirect_uris=[uri])
    assert created["redirect_uris"] == [uri]


async def test_a_resource_with_a_password_is_refused_without_showing_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # A resource becomes the aud of every token for it: readable by each holder of one and
    # written into the logs of the services that check it.
    body = PORTAL | {"resources": ["https://billing:hunter2@billing.example.com"]}
    refused = await client.post("/api/v1/clients", json=body, headers=await staff_headers(runtime))
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "resources"
    assert "hunter2" not in refused.text and "billing.example.com" in refused.text


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/secret")],
)
async def test_an_unknown_client_is_not_found(
    client: httpx.AsyncClient, runtime: Runtime, method: str, suffix: str
) -> None:
    body = {"name": "X"} if method == "PATCH" else None
    response = await client.request(
        method, f"/api/v1/clients/nope{suffix}", json=body, headers=await staff_headers(runtime)
    )
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_other_users_are_forbidden(client: httpx.AsyncClient, runtime: Runtime) -> None:
    portal = await make_client(runtime)
    headers = await user_headers(runtime, await make_user(runtime))
    for method, path in [
        ("GET", "/api/v1/clients"),
        ("POST", "/api/v1/clients"),
        ("PATCH", f"/api/v1/clients/{portal.client_id}"),
        ("POST", f"/api/v1/clients/{portal.client_id}/secret"),
        ("DELETE", f"/api/v1/clients/{portal.client_id}"),
    ]:
        body = {"POST": PORTAL, "PATCH": {"disabled": True}}.get(method)
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code == 403, (method, path, response.text)
    staff = await staff_headers(runtime)
    kept = await client.get(f"/api/v1/clients/{portal.client_id}", headers=staff)
    assert kept.status_code == 200 and kept.json()["disabled"] is False
    listed = (await client.get("/api/v1/clients", headers=staff)).json()
    assert {row["client_id"] for row in listed} == {portal.client_id, CLIENT_ID}


async def test_a_resource_taken_from_a_client_is_not_issued_again_by_refresh_or_code(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # A resource server checks aud with the JWKS alone: a refresh token granted for it
    # before staff took the resource from the client must not mint new tokens naming it.
    staff = await staff_headers(runtime)
    created = await _register(client, staff, resources=[BILLING, PLANS])
    portal = RegisteredClient(created["client_id"], created["client_secret"])
    tokens = await signed_in_tokens(client, runtime, portal, resources=[BILLING])
    both = await signed_in_tokens(client, runtime, portal, resources=[BILLING, PLANS])
    pending = await fresh_code(runtime, portal, resources=[BILLING])

    path = f"/api/v1/clients/{portal.client_id}"
    narrowed = await client.patch(path, json={"resources": [PLANS]}, headers=staff)
    assert narrowed.status_code == 200, narrowed.text

    for answer in (
        await refresh(client, portal, tokens["refresh_token"]),
        await refresh(client, portal, tokens["refresh_token"], resource=BILLING),
        await refresh(client, portal, both["refresh_token"], resource=BILLING),
        await pending.redeem(client),
        await pending.redeem(client, resource=BILLING),
    ):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_target"
    # A grant for several goes on for those still registered, as a narrowing refresh would.
    kept = await refresh(client, portal, both["refresh_token"])
    assert kept.status_code == 200, kept.text
    assert (await verify_with_jwks(client, kept.json()["access_token"])).claims["aud"] == PLANS


async def test_a_scope_taken_from_a_client_is_not_issued_again_by_refresh_or_code(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # The token's own scope claim is what other services read: once staff take a scope
    # from the client, a token issued afterwards must not carry it (nor the response claim it).
    staff = await staff_headers(runtime)
    created = await _register(client, staff, scope="openid email reports:read")
    portal = RegisteredClient(created["client_id"], created["client_secret"])
    scope = "openid email reports:read"
    tokens = await signed_in_tokens(client, runtime, portal, scope=scope)
    pending = await fresh_code(runtime, portal, scope=scope)

    path = f"/api/v1/clients/{portal.client_id}"
    narrowed = await client.patch(path, json={"scope": "openid email"}, headers=staff)
    assert narrowed.status_code == 200, narrowed.text

    refreshed = await refresh(client, portal, tokens["refresh_token"])
    redeemed = await pending.redeem(client)
    for answer in (refreshed, redeemed):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        claims = (await verify_with_jwks(client, body["access_token"])).claims
        assert claims["scope"] == "openid email"
        assert body["scope"] == "openid email"
    # Asked for by name, it is left out as identity:admin is for a user who lost it: the
    # response's scope says what was granted (RFC 6749 §3.3).
    asked = await refresh(client, portal, refreshed.json()["refresh_token"], scope=scope)
    assert asked.status_code == 200 and asked.json()["scope"] == "openid email"


async def test_a_refresh_left_with_no_scope_says_so(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RFC 6749 §5.1: ``scope`` may be left out only when it is what was asked for. Once staff
    take every scope the token had from the client, leaving it out would tell the client it
    still has them all. Registration now keeps openid in a signing-in client's scope, so
    this is a client stored before that rule, its scope changed in the database."""
    staff = await staff_headers(runtime)
    created = await _register(client, staff, scope="reports:read openid")
    portal = RegisteredClient(created["client_id"], created["client_secret"])
    tokens = await signed_in_tokens(client, runtime, portal, scope="reports:read")
    async with runtime.db.transaction() as session:
        await session.execute(
            update(OAuthClient)
            .where(OAuthClient.client_id == portal.client_id)
            .values(scope="reports:write")
        )
    runtime.clients.forget(portal.client_id)

    refreshed = await refresh(client, portal, tokens["refresh_token"])

    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["scope"] == ""


LOOPBACK = "http://127.0.0.1/callback"


@pytest.mark.parametrize(
    ("public", "registered", "used"),
    [
        (False, REDIRECT_URI, REDIRECT_URI),
        # A native app's loopback redirect, any port (RFC 8252 §7.3), goes with its URI.
        (True, LOOPBACK, "http://127.0.0.1:51004/callback"),
    ],
    ids=["exact", "loopback-port"],
)
async def test_a_code_for_a_redirect_uri_taken_from_the_client_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, public: bool, registered: str, used: str
) -> None:
    # As Keycloak and node-oidc-provider check the redirect URI against the registration at
    # redemption: staff removing an address (one whose site was lost, say) must stop the
    # codes already sent to it, not leave them to be exchanged for their 60 seconds.
    staff = await staff_headers(runtime)
    created = await _register(
        client,
        staff,
        public=public,
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[registered, "https://new.example.com/cb"],
    )
    portal = RegisteredClient(created["client_id"], created.get("client_secret"))
    kept = await fresh_code(runtime, portal, redirect_uri=used)
    assert (await kept.redeem(client)).status_code == 200
    pending = await fresh_code(runtime, portal, redirect_uri=used)

    path = f"/api/v1/clients/{portal.client_id}"
    narrowed = await client.patch(
        path, json={"redirect_uris": ["https://new.example.com/cb"]}, headers=staff
    )
    assert narrowed.status_code == 200, narrowed.text

    for _ in range(2):
        refused = await pending.redeem(client)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"redirect_uris": [REDIRECT_URI, REDIRECT_URI]}, "redirect_uris"),
        ({"redirect_uris": [f"https://a{i}.example/cb" for i in range(101)]}, "redirect_uris"),
        ({"scope": " ".join(f"s{i}" for i in range(300))}, "scope"),
        ({"redirect_uris": ["https://*.example.com/cb"]}, "redirect_uris"),
        # Every sign-in asks for openid: without it allowed, each would end in invalid_scope.
        ({"scope": "profile email reports:read"}, "scope"),
    ],
)
async def test_the_command_lines_rules_answer_422_naming_the_field(
    client: httpx.AsyncClient, runtime: Runtime, body: dict[str, Any], field: str
) -> None:
    staff = await staff_headers(runtime)
    refused = await client.post("/api/v1/clients", json=PORTAL | body, headers=staff)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == field
    created = await _register(client, staff)
    path = f"/api/v1/clients/{created['client_id']}"
    refused = await client.patch(path, json=body, headers=staff)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == field


async def test_a_public_client_with_no_grant_type_is_refused_naming_the_field(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """With no grant a public client could do nothing at all: it may not introspect, and
    has no secret for client_credentials. A registration that cannot work is a mistake
    to point out, not a client to store."""
    staff = await staff_headers(runtime)
    public = {"public": True, "grant_types": ["authorization_code"]}
    refused = await client.post(
        "/api/v1/clients", json=PORTAL | public | {"grant_types": []}, headers=staff
    )
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["errors"][0]["field"] == "grant_types"
    assert "needs a grant type" in refused.json()["errors"][0]["message"]
    created = await _register(client, staff, **public)
    path = f"/api/v1/clients/{created['client_id']}"
    emptied = await client.patch(path, json={"grant_types": []}, headers=staff)
    assert emptied.status_code == 422, emptied.text
    assert emptied.json()["errors"][0]["field"] == "grant_types"


async def test_a_confidential_client_with_no_grant_type_only_introspects(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A resource server that only asks /introspect needs no grant, as in node-oidc-provider
    (grant_types []) and Keycloak (every flow off): least privilege, not a mistake."""
    staff = await staff_headers(runtime)
    created = await _register(client, staff, grant_types=[], redirect_uris=[])
    introspector = RegisteredClient(created["client_id"], created["client_secret"])
    service = await _registered(client, staff)

    token = (
        await client.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "reports:read"},
            headers=service.basic,
        )
    ).json()["access_token"]

    assert await is_active(client, introspector, token)
    assert await _client_credentials(client, introspector) == 400
