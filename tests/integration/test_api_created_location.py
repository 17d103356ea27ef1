"""A 201 names what it made in ``Location`` (RFC 9110 §15.3.2): without one, the created
resource is the URL the request was sent to, which is the collection."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from identity.runtime import Runtime
from tests.integration.account_helpers import make_user, staff_headers, table_ids, with_ids

# (collection, body, the body's field holding the new resource's id, how to read it back)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("/accounts", {"name": "Acme", "owner_user_id": "{u}"}, "id", "GET"),
    ("/accounts/{a}/members", {"user_id": "{v}"}, "user_id", "GET"),
    ("/accounts/{a}/roles", {"name": "Desk"}, "id", "GET"),
    ("/roles", {"name": "Template {n}"}, "id", "GET"),
    ("/users", {"email": "new-{n}@example.com"}, "id", "GET"),
    (
        "/clients",
        {"name": "Portal", "redirect_uris": ["https://app.example.com/cb"]},
        "client_id",
        "GET",
    ),
    ("/accounts/{a}/invitations", {"email": "invitee-{n}@example.com"}, "id", "GET"),
    (
        "/webhooks",
        {"url": "https://hooks.example.com/identity", "event_types": ["member.removed"]},
        "id",
        "GET",
    ),
]


@pytest.mark.parametrize(
    ("collection", "body", "id_field", "method"), CASES, ids=[c[0] for c in CASES]
)
async def test_a_created_resource_is_named_in_location(
    client: httpx.AsyncClient,
    runtime: Runtime,
    collection: str,
    body: dict[str, Any],
    id_field: str,
    method: str,
) -> None:
    ids = await table_ids(runtime) | {
        "v": str((await make_user(runtime)).id),
        "n": uuid.uuid4().hex[:8],
    }
    staff = await staff_headers(runtime)
    created = await client.post(
        "/api/v1" + collection.format(**ids), json=with_ids(body, ids), headers=staff
    )
    assert created.status_code == 201, created.text
    new_id = created.json()[id_field]
    location = created.headers.get("location")
    assert location == f"/api/v1{collection.format(**ids)}/{new_id}"

    followed = await client.request(method, location, headers=staff)
    assert followed.status_code in (200, 204), followed.text
    if method == "GET":
        assert followed.json()[id_field] == new_id


async def test_the_openapi_document_promises_location_on_those_201s(
    client: httpx.AsyncClient,
) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    for collection, *_ in CASES:
        path = "/api/v1" + collection.replace("{a}", "{account_id}")
        created = paths[path]["post"]["responses"]["201"]
        assert created["headers"]["Location"]["schema"]["type"] == "string", path


@pytest.mark.parametrize(
    ("collection", "body"),
    [(c[0], c[1]) for c in CASES if c[0] in ("/accounts/{a}/invitations", "/webhooks")],
)
async def test_once_cancelled_or_deleted_the_location_reads_404(
    client: httpx.AsyncClient, runtime: Runtime, collection: str, body: dict[str, Any]
) -> None:
    ids = await table_ids(runtime) | {"n": uuid.uuid4().hex[:8]}
    staff = await staff_headers(runtime)
    created = await client.post(
        "/api/v1" + collection.format(**ids), json=with_ids(body, ids), headers=staff
    )
    location = created.headers["location"]
    assert (await client.delete(location, headers=staff)).status_code == 204

    gone = await client.get(location, headers=staff)

    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"
