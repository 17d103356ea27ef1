"""Lowering IDENTITY_ACCESS_TOKEN_TTL shortens only the access tokens issued afterwards: a
grant revoked later still has the ones issued before denied until their own expiry, however
often housekeeping runs in between."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import httpx
import pytest

from identity.clock import utcnow
from identity.housekeeping.housekeeper import Housekeeper
from identity.runtime import Runtime
from tests.integration.account_helpers import staff_headers
from tests.integration.oauth_helpers import (
    is_active,
    make_client,
    redeemed_code,
    refresh,
)

HOUR = 3600
# What the operator lowers it to, and restarts with.
MINUTE = 60


def set_access_token_ttl(monkeypatch: pytest.MonkeyPatch, runtime: Runtime, ttl: int) -> None:
    monkeypatch.setattr(
        runtime, "settings", dataclasses.replace(runtime.settings, access_token_ttl=ttl)
    )


async def sweep(runtime: Runtime, later: timedelta) -> None:
    """A sweep by a process started with the settings as they are now, ``later`` from now."""
    await Housekeeper.from_settings(runtime.db, runtime.settings).run_once(utcnow() + later)


@pytest.mark.parametrize("how", ["revoke", "reuse", "replay"])
async def test_a_grant_revoked_after_the_ttl_was_lowered_keeps_its_access_tokens_denied(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    app = await make_client(runtime)
    resource_server = await make_client(runtime, grant_types=["client_credentials"])
    set_access_token_ttl(monkeypatch, runtime, HOUR)
    fresh, first = await redeemed_code(client, runtime, app)
    second = (await refresh(client, app, first["refresh_token"])).json()

    set_access_token_ttl(monkeypatch, runtime, MINUTE)
    if how == "revoke":  # RFC 7009
        data = {"token": second["refresh_token"]}
        assert (await client.post("/revoke", data=data, headers=app.basic)).status_code == 200
    elif how == "reuse":
        assert (await refresh(client, app, first["refresh_token"])).status_code == 400
    else:
        assert (await fresh.redeem(client)).status_code == 400
    # Past the new lifetime, and a minute's clock skew, but well within the hour.
    await sweep(runtime, timedelta(minutes=10))

    assert not await is_active(client, resource_server, first["access_token"])
    assert not await is_active(client, resource_server, second["access_token"])


async def test_a_redeemed_code_is_kept_while_its_access_token_lives_after_the_ttl_was_lowered(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No refresh grant: the code alone remembers the access token its redemption issued.
    app = await make_client(runtime, grant_types=["authorization_code"])
    resource_server = await make_client(runtime, grant_types=["client_credentials"])
    set_access_token_ttl(monkeypatch, runtime, 3 * 24 * HOUR)
    fresh, issued = await redeemed_code(client, runtime, app)

    set_access_token_ttl(monkeypatch, runtime, MINUTE)
    # More than a day after the code expired: only its access token still needs it.
    await sweep(runtime, timedelta(days=2))
    assert (await fresh.redeem(client)).status_code == 400

    assert not await is_active(client, resource_server, issued["access_token"])


async def test_a_client_disabled_after_the_ttl_was_lowered_has_every_live_access_token_denied(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    staff = await staff_headers(runtime)
    app = await make_client(runtime)
    resource_server = await make_client(runtime, grant_types=["client_credentials"])
    set_access_token_ttl(monkeypatch, runtime, HOUR)
    _, issued = await redeemed_code(client, runtime, app)
    refreshed = (await refresh(client, app, issued["refresh_token"])).json()

    set_access_token_ttl(monkeypatch, runtime, MINUTE)
    # Disabled five minutes after the tokens were issued: longer ago than the new lifetime.
    later = utcnow() + timedelta(minutes=5)
    monkeypatch.setattr("identity.web.api.clients.utcnow", lambda: later)
    path = f"/api/v1/clients/{app.client_id}"
    assert (await client.patch(path, json={"disabled": True}, headers=staff)).status_code == 200
    await sweep(runtime, timedelta(minutes=15))
    # Enabled again: the tokens it held when disabled stay denied.
    assert (await client.patch(path, json={"disabled": False}, headers=staff)).status_code == 200

    assert not await is_active(client, resource_server, issued["access_token"])
    assert not await is_active(client, resource_server, refreshed["access_token"])
