"""Staff's look-up of users: GET /api/v1/users?email=part."""

from __future__ import annotations

import httpx
import pytest

from identity.runtime import Runtime
from tests.integration.account_helpers import staff_headers
from tests.integration.oauth_helpers import make_user


@pytest.mark.parametrize("part", ["Ada.Byron", "ADA.BYRON@EXAMPLE", "ada.byron"])
async def test_the_email_filter_ignores_case_on_every_backend(
    client: httpx.AsyncClient, runtime: Runtime, part: str
) -> None:
    # Addresses are stored lower-cased. LIKE ignored the case of the part on SQLite and not on
    # PostgreSQL, so staff typing an address as the customer spelled it found them on one only.
    user = await make_user(runtime, email="ada.byron@example.com")
    await make_user(runtime, email="someone.else@example.com")
    found = await client.get(
        "/api/v1/users", params={"email": part}, headers=await staff_headers(runtime)
    )
    assert found.status_code == 200, found.text
    assert [row["id"] for row in found.json()] == [str(user.id)]


async def test_the_email_filter_takes_wildcards_literally(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await make_user(runtime, email="ada.byron@example.com")
    headers = await staff_headers(runtime)
    for part in ("%", "_", "ada_byron"):
        found = await client.get("/api/v1/users", params={"email": part}, headers=headers)
        assert found.status_code == 200 and found.json() == [], part


@pytest.mark.parametrize(
    ("part", "who"),
    [("jan@straße.de", {"jan"}), ("JAN@STRAßE.DE", {"jan"}), ("straße.de", {"jan", "jürgen"})],
)
async def test_the_email_filter_finds_a_domain_written_in_unicode(
    client: httpx.AsyncClient, runtime: Runtime, part: str, who: set[str]
) -> None:
    # Domains are stored as mail servers name them (IDNA: straße.de is xn--strae-oqa.de), so
    # staff typing the address as the customer spells it found nobody.
    users = {
        "jan": await make_user(runtime, email="jan@xn--strae-oqa.de"),
        "jürgen": await make_user(runtime, email="jürgen@xn--strae-oqa.de"),
        "other": await make_user(runtime, email="jan@strasse.de"),  # another domain and owner
    }
    found = await client.get(
        "/api/v1/users", params={"email": part}, headers=await staff_headers(runtime)
    )
    assert found.status_code == 200, found.text
    assert {row["id"] for row in found.json()} == {str(users[name].id) for name in who}


async def test_the_email_filter_still_finds_a_unicode_local_part(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    jurgen = await make_user(runtime, email="jürgen@xn--strae-oqa.de")
    found = await client.get(
        "/api/v1/users", params={"email": "JÜRGEN"}, headers=await staff_headers(runtime)
    )
    assert [row["id"] for row in found.json()] == [str(jurgen.id)]


async def test_the_email_filter_ignores_spaces_around_a_pasted_address(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # No stored address holds a space (normalise_email strips them), so an address pasted
    # with the spaces or the line break around it found nobody.
    user = await make_user(runtime, email="ada.byron@example.com")
    found = await client.get(
        "/api/v1/users",
        params={"email": " ada.byron@example.com\n"},
        headers=await staff_headers(runtime),
    )
    assert [row["id"] for row in found.json()] == [str(user.id)]


async def test_staff_cannot_add_a_look_alike_beside_an_existing_address(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # "ſam@" (long s) and "ｓam@" (full-width s) were stored beside "sam@" as other users.
    await make_user(runtime, email="sam@example.com")
    headers = await staff_headers(runtime)
    for look_alike in ("\u017fam@example.com", "\uff53am@example.com"):
        refused = await client.post("/api/v1/users", json={"email": look_alike}, headers=headers)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "plain form" in refused.json()["detail"]
    listed = await client.get("/api/v1/users", params={"email": "am@"}, headers=headers)
    assert [row["email"] for row in listed.json()] == ["sam@example.com"]
