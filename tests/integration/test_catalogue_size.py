"""The permission catalogue stays small enough for an owner's access token, which lists all of
it, to pass the resource kit's size limit: a registration past that is refused, not the
owners locked out of every service."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from identity.errors import Conflict
from identity.permissions import catalogue, registration
from identity.permissions.models import Permission
from identity.resource.validator import DEFAULT_MAX_TOKEN_BYTES
from identity.runtime import Runtime
from tests.integration.account_helpers import SYSTEM, make_account, make_user, staff_headers
from tests.integration.oauth_helpers import make_client, signed_in_tokens, verify_with_jwks

LONGEST = 100  # the longest name a permission may have


def name(number: int, length: int = LONGEST) -> str:
    prefix = f"svc{number}:"
    return prefix + "a" * (length - len(prefix))


async def room_left(runtime: Runtime) -> int:
    async with runtime.db.transaction() as session:
        listed = catalogue.listed_size(await runtime.catalogue.names(session))
    return catalogue.MAX_CATALOGUE - listed


async def register(runtime: Runtime, permission: str) -> None:
    async with runtime.db.transaction() as session:
        await registration.register_permission(
            session,
            SYSTEM,
            Permission(name=permission, label_en="L", label_es="L"),
            runtime.catalogue,
        )


async def post(
    client: httpx.AsyncClient, headers: dict[str, str], permission: str
) -> httpx.Response:
    body = {"name": permission, "label": {"en": "Long", "es": "Largo"}}
    return await client.post("/api/v1/permissions", json=body, headers=headers)


async def test_registration_stops_before_an_owners_token_outgrows_the_kits_limit(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = await staff_headers(runtime)
    # 8 KB of names, and more: far past what any token limit could hold.
    for number in range(90):
        response = await post(client, headers, name(number))
        if response.status_code != 201:
            break

    assert response.status_code == 409, response.text
    assert "catalogue is full" in response.json()["detail"]
    assert number > 30  # the limit leaves room for dozens of the longest names
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    tokens = await signed_in_tokens(
        client, runtime, await make_client(runtime), user=owner, account_id=account.id
    )
    token = tokens["access_token"]
    claims = (await verify_with_jwks(client, token)).claims
    assert {name(n) for n in range(number)} <= set(claims["permissions"])
    assert len(token) <= DEFAULT_MAX_TOKEN_BYTES


async def test_a_shorter_name_still_fits_where_a_longer_one_did_not(runtime: Runtime) -> None:
    number = 0
    # Listed as "…", with its quotes and a comma: three bytes besides the name.
    while await room_left(runtime) >= LONGEST + 3:
        await register(runtime, name(number))
        number += 1
    room = await room_left(runtime)
    shorter = name(number, room - 3)

    with pytest.raises(Conflict):
        await register(runtime, name(number))
    await register(runtime, shorter)

    assert await room_left(runtime) == 0


async def test_two_registrations_at_once_cannot_both_take_the_last_room(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    number = 0
    while await room_left(runtime) >= 2 * (LONGEST + 3):
        await register(runtime, name(number))
        number += 1
    # Room for one more of these names, not for two.
    length = min(LONGEST, await room_left(runtime) - 3)
    headers = await staff_headers(runtime)

    answers = await asyncio.gather(
        post(client, headers, name(number, length)), post(client, headers, name(number + 1, length))
    )

    assert sorted(a.status_code for a in answers) == [201, 409]
    assert await room_left(runtime) >= 0
