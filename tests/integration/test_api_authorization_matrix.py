"""Every cell of the authorization matrix, for every endpoint, and every endpoint with another
account's ids. The expected outcome of each cell comes from ``identity.permissions.access``;
the endpoint list below says which action each endpoint performs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import select

from identity.audit.service import Actor
from identity.clock import utcnow
from identity.mfa.service import SecondFactor
from identity.permissions import account_roles, invitations
from identity.permissions.access import MATRIX, Action, Relation
from identity.permissions.grants import RoleGrant
from identity.permissions.invitations import InvitationRequest
from identity.runtime import Runtime
from identity.webhooks import events
from identity.webhooks import service as webhooks
from identity.webhooks.models import WebhookDelivery
from tests.integration.account_helpers import (
    SYSTEM,
    add_member,
    make_account,
    make_user,
    service_headers,
    staff_headers,
    user_headers,
    with_ids,
)
from tests.integration.oauth_helpers import make_client


@dataclass
class World:
    """Account ``a`` with a plain member ``t`` to act on, a role ``r`` that ``t`` holds, a
    pending invitation ``i``, a staff template ``tr``; account ``x`` with the same kinds of
    things, as another customer's; and a user ``u`` who belongs to no account. ``me`` is each
    relation's own user: in ``a`` for staff (so its own membership may be left) and a second
    owner (so the owner is not the last), ``u`` for a client that acts for no user."""

    ids: dict[str, str]
    headers: dict[Relation, dict[str, str]]
    me: dict[Relation, str]


async def _account_with_things(runtime: Runtime, prefix: str) -> dict[str, Any]:
    owner, co_owner, manager, member, target = [await make_user(runtime) for _ in range(5)]
    admin = await make_user(runtime, is_admin=True)
    account = await make_account(runtime, owner)
    await add_member(runtime, account, co_owner, owner=True)
    await add_member(runtime, account, admin)
    # A manager hands out only what they hold (grants.Delegation): this one holds what the
    # endpoints below grant, so the matrix alone decides.
    await add_member(
        runtime, account, manager, ["users", "invoices", "quotes", "tickets", "domains"]
    )
    await add_member(runtime, account, member, ["tickets"])
    async with runtime.db.transaction() as session:
        role = await account_roles.create_role(
            session,
            SYSTEM,
            account.id,
            name=f"{prefix} desk",
            permissions=["domains"],
            catalogue=runtime.catalogue,
            now=utcnow(),
        )
    await add_member(runtime, account, target, ["tickets"], roles=[RoleGrant(role.role.id)])
    async with runtime.db.transaction() as session:
        invitation = await invitations.invite(
            session,
            SYSTEM,
            account.id,
            InvitationRequest(email=f"{prefix}-{uuid.uuid4().hex[:6]}@example.com"),
            catalogue=runtime.catalogue,
            limiter=runtime.limiter,
            settings=runtime.settings,
            now=utcnow(),
        )
    return {
        "owner": owner,
        "admin": admin,
        "manager": manager,
        "member": member,
        prefix: str(account.id),
        "t": str(target.id),
        "r": str(role.role.id),
        "i": str(invitation.id),
    }


async def _enrol_second_factor(runtime: Runtime, user: Any) -> None:
    """So that staff resetting this user's second factor has one to reset."""
    second_factor = SecondFactor.from_runtime(runtime)
    async with runtime.db.transaction() as session:
        enrolment = await second_factor.begin_enrolment(session, user, utcnow())
    async with runtime.db.transaction() as session:
        code = pyotp.TOTP(enrolment.secret).now()
        await second_factor.confirm_enrolment(session, Actor(user.id), user.id, code, utcnow())


async def _world(runtime: Runtime) -> World:
    ours = await _account_with_things(runtime, "a")
    theirs = await _account_with_things(runtime, "x")
    outsider = await make_user(runtime)
    await _enrol_second_factor(runtime, outsider)
    async with runtime.db.transaction() as session:
        template = await account_roles.create_role(
            session,
            SYSTEM,
            None,
            name=f"Template {uuid.uuid4().hex[:6]}",
            permissions=["orders"],
            catalogue=runtime.catalogue,
            now=utcnow(),
        )
    async with runtime.db.transaction() as session:
        subscription = await webhooks.create_subscription(
            session,
            SYSTEM,
            runtime.webhook_encryptor,
            # One subscription per URL: each world (one per relation) has its own.
            url=f"https://billing.example.com/hooks/{uuid.uuid4()}",
            event_types=["member.removed"],
            description="",
            allow_http_loopback=False,
            now=utcnow(),
        )
        await events.emit(
            session, events.MEMBER_REMOVED, events.about_member(uuid.uuid4(), outsider.id)
        )
        delivery_id = await session.scalar(
            select(WebhookDelivery.id).where(
                WebhookDelivery.subscription_id == subscription.subscription.id
            )
        )
    ids = {
        "a": ours["a"],
        "t": ours["t"],
        "r": ours["r"],
        "i": ours["i"],
        "x": theirs["x"],
        "xt": theirs["t"],
        "xr": theirs["r"],
        "xi": theirs["i"],
        "tr": str(template.role.id),
        "u": str(outsider.id),
        "fresh": f"{uuid.uuid4().hex[:8]}@example.com",
        "perm": f"svc{uuid.uuid4().hex[:6]}:act",
        "w": str(subscription.subscription.id),
        "d": str(delivery_id),
        "c": (await make_client(runtime)).client_id,
        # Whose membership "{me}" names, where no relation is at hand: the owner's own.
        "me": str(ours["owner"].id),
    }
    headers = {
        Relation.STAFF: await staff_headers(runtime, ours["admin"]),
        Relation.OWNER: await user_headers(runtime, ours["owner"]),
        Relation.MANAGER: await user_headers(runtime, ours["manager"]),
        Relation.MEMBER: await user_headers(runtime, ours["member"]),
        Relation.OTHER_USER: await user_headers(runtime, outsider),
        Relation.SERVICE: await service_headers(runtime),
    }
    users = {
        Relation.STAFF: ours["admin"],
        Relation.OWNER: ours["owner"],
        Relation.MANAGER: ours["manager"],
        Relation.MEMBER: ours["member"],
        Relation.OTHER_USER: outsider,
    }
    me = {relation: str(user.id) for relation, user in users.items()}
    return World(ids, headers, me | {Relation.SERVICE: ids["u"]})


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    action: Action
    body: dict[str, Any] | None = None

    def request(self, world: World, **swap: str) -> tuple[str, str, Any]:
        ids = world.ids | swap
        path = "/api/v1" + self.path.format(**ids)
        return self.method, path, with_ids(self.body, ids)


ENDPOINTS = [
    Endpoint("POST", "/accounts", Action.ACCOUNT_CREATE, {"name": "N", "owner_user_id": "{u}"}),
    Endpoint("GET", "/accounts", Action.ACCOUNT_LIST_ALL),
    Endpoint("GET", "/me/accounts", Action.ACCOUNT_LIST_MINE),
    Endpoint("GET", "/accounts/{a}", Action.ACCOUNT_READ),
    Endpoint("PATCH", "/accounts/{a}", Action.ACCOUNT_RENAME, {"name": "Renamed"}),
    Endpoint(
        "POST",
        "/accounts/{a}/ownership-transfer",
        Action.OWNERSHIP_HAND_OVER,
        {"to_user_id": "{t}"},
    ),
    Endpoint("GET", "/accounts/{a}/members", Action.MEMBER_READ),
    Endpoint("POST", "/accounts/{a}/members", Action.MEMBER_ADD, {"user_id": "{u}"}),
    Endpoint("GET", "/accounts/{a}/members/{t}", Action.MEMBER_READ),
    Endpoint(
        "PATCH",
        "/accounts/{a}/members/{t}",
        Action.MEMBER_GRANTS,
        {"permissions": [{"name": "invoices"}]},
    ),
    Endpoint("PATCH", "/accounts/{a}/members/{t}", Action.OWNERSHIP_CHANGE, {"owner": True}),
    Endpoint("DELETE", "/accounts/{a}/members/{t}", Action.MEMBER_REMOVE),
    Endpoint("DELETE", "/accounts/{a}/members/{me}", Action.MEMBER_LEAVE),
    Endpoint(
        "POST", "/accounts/{a}/members/{t}/permissions", Action.MEMBER_GRANTS, {"name": "quotes"}
    ),
    Endpoint("DELETE", "/accounts/{a}/members/{t}/permissions/tickets", Action.MEMBER_GRANTS),
    Endpoint("POST", "/accounts/{a}/members/{t}/roles", Action.MEMBER_GRANTS, {"role_id": "{r}"}),
    Endpoint("DELETE", "/accounts/{a}/members/{t}/roles/{r}", Action.MEMBER_GRANTS),
    Endpoint("GET", "/accounts/{a}/invitations", Action.INVITATION_READ),
    Endpoint("GET", "/accounts/{a}/invitations/{i}", Action.INVITATION_READ),
    Endpoint("POST", "/accounts/{a}/invitations", Action.INVITATION_WRITE, {"email": "{fresh}"}),
    Endpoint("POST", "/accounts/{a}/invitations/{i}/resend", Action.INVITATION_WRITE),
    Endpoint("DELETE", "/accounts/{a}/invitations/{i}", Action.INVITATION_WRITE),
    Endpoint("GET", "/accounts/{a}/roles", Action.ACCOUNT_ROLE_READ),
    Endpoint(
        "POST",
        "/accounts/{a}/roles",
        Action.ACCOUNT_ROLE_WRITE,
        {"name": "New", "permissions": ["tickets"]},
    ),
    Endpoint("GET", "/accounts/{a}/roles/{r}", Action.ACCOUNT_ROLE_READ),
    Endpoint("PATCH", "/accounts/{a}/roles/{r}", Action.ACCOUNT_ROLE_WRITE, {"name": "Other"}),
    Endpoint("DELETE", "/accounts/{a}/roles/{r}", Action.ACCOUNT_ROLE_WRITE),
    Endpoint("GET", "/accounts/{a}/audit", Action.ACCOUNT_AUDIT_READ),
    Endpoint("GET", "/roles", Action.TEMPLATE_READ),
    Endpoint("POST", "/roles", Action.TEMPLATE_WRITE, {"name": "T2", "permissions": []}),
    Endpoint("GET", "/roles/{tr}", Action.TEMPLATE_READ),
    Endpoint("PATCH", "/roles/{tr}", Action.TEMPLATE_WRITE, {"name": "T3"}),
    Endpoint("DELETE", "/roles/{tr}", Action.TEMPLATE_WRITE),
    Endpoint("GET", "/permissions", Action.PERMISSION_READ),
    Endpoint(
        "POST",
        "/permissions",
        Action.PERMISSION_REGISTER,
        {"name": "{perm}", "label": {"en": "E", "es": "S"}},
    ),
    Endpoint("GET", "/users", Action.USER_READ),
    Endpoint("POST", "/users", Action.USER_WRITE, {"email": "{fresh}"}),
    Endpoint("GET", "/users/{u}", Action.USER_READ),
    Endpoint("PATCH", "/users/{u}", Action.USER_WRITE, {"name": "Renamed"}),
    Endpoint("POST", "/users/{u}/email", Action.USER_RECOVER, {"email": "{fresh}", "reason": "R"}),
    Endpoint("POST", "/users/{u}/disable", Action.USER_RECOVER, {"reason": "Left the company"}),
    Endpoint("POST", "/users/{u}/enable", Action.USER_RECOVER, {"reason": "Back"}),
    Endpoint(
        "POST", "/users/{u}/second-factor/reset", Action.USER_RECOVER, {"reason": "Lost phone"}
    ),
    Endpoint("GET", "/audit", Action.AUDIT_READ_ALL),
    Endpoint(
        "POST",
        "/authz/check",
        Action.AUTHZ_CHECK,
        {"checks": [{"user_id": "{t}", "account_id": "{a}", "permission": "tickets"}]},
    ),
    Endpoint(
        "POST",
        "/webhooks",
        Action.WEBHOOK_MANAGE,
        {"url": "https://billing.example.com/new/{a}", "event_types": ["member.removed"]},
    ),
    Endpoint("GET", "/webhooks", Action.WEBHOOK_MANAGE),
    Endpoint("GET", "/webhooks/{w}", Action.WEBHOOK_MANAGE),
    Endpoint("DELETE", "/webhooks/{w}", Action.WEBHOOK_MANAGE),
    Endpoint("GET", "/webhooks/{w}/deliveries", Action.WEBHOOK_MANAGE),
    Endpoint("POST", "/webhooks/{w}/deliveries/{d}/resend", Action.WEBHOOK_MANAGE),
    Endpoint(
        "POST",
        "/clients",
        Action.CLIENT_MANAGE,
        {"name": "App", "redirect_uris": ["https://app.example.com/cb"]},
    ),
    Endpoint("GET", "/clients", Action.CLIENT_MANAGE),
    Endpoint("GET", "/clients/{c}", Action.CLIENT_MANAGE),
    Endpoint("PATCH", "/clients/{c}", Action.CLIENT_MANAGE, {"disabled": True}),
    Endpoint("POST", "/clients/{c}/secret", Action.CLIENT_MANAGE),
    Endpoint("DELETE", "/clients/{c}", Action.CLIENT_MANAGE),
]


def _label(endpoint: Endpoint) -> str:
    return f"{endpoint.method} {endpoint.path} ({endpoint.action})"


def test_every_route_of_the_api_is_in_the_table(app: Any) -> None:
    listed = {(e.method, "/api/v1" + e.path) for e in ENDPOINTS}
    for route in app.routes:
        if not route.path.startswith("/api/v1") or route.path.startswith("/api/v1/password"):
            continue
        path = route.path
        for name, short in (
            ("account_id", "a"),
            ("user_id", "t"),
            ("role_id", "r"),
            ("invitation_id", "i"),
            ("subscription_id", "w"),
            ("delivery_id", "d"),
        ):
            path = path.replace("{" + name + ":uuid}", "{" + short + "}")
        path = path.replace("{client_id:str}", "{c}")
        path = path.replace("/roles/{r}", "/roles/{tr}") if "/accounts/" not in path else path
        path = path.replace("{name:str}", "tickets").replace("/users/{t}", "/users/{u}")
        for method in route.methods - {"HEAD", "OPTIONS"}:
            assert (method, path) in listed, f"{method} {path} has no row in ENDPOINTS"


def _expected(endpoint: Endpoint, relation: Relation) -> int | None:
    """None: allowed (any 2xx); else the refusal status."""
    about_an_account = "{a}" in endpoint.path
    if not about_an_account and relation in (Relation.OWNER, Relation.MANAGER, Relation.MEMBER):
        # About no account, members of one are signed-in users like any other.
        relation = Relation.OTHER_USER
    if relation in MATRIX[endpoint.action]:
        return None
    if about_an_account and relation in (Relation.OTHER_USER, Relation.SERVICE):
        return 404
    return 403


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=_label)
async def test_each_relation_gets_what_the_matrix_says(
    client: httpx.AsyncClient, runtime: Runtime, endpoint: Endpoint
) -> None:
    outcomes = {}
    for relation in Relation:
        world = await _world(runtime)
        method, path, body = endpoint.request(world, me=world.me[relation])
        response = await client.request(method, path, json=body, headers=world.headers[relation])
        expected = _expected(endpoint, relation)
        ok = (
            200 <= response.status_code < 300
            if expected is None
            else response.status_code == expected
        )
        outcomes[relation] = (ok, response.status_code, response.text[:200])
    failures = {r: o for r, o in outcomes.items() if not o[0]}
    assert not failures, failures


ACCOUNT_ENDPOINTS = [e for e in ENDPOINTS if "{a}" in e.path]


@pytest.mark.parametrize("endpoint", ACCOUNT_ENDPOINTS, ids=_label)
async def test_another_accounts_ids_are_not_found_even_for_its_own_members_elsewhere(
    client: httpx.AsyncClient, runtime: Runtime, endpoint: Endpoint
) -> None:
    """The owner of one account, with another account's id in the path or another account's
    member, role or invitation under their own account: always 404, never a change."""
    world = await _world(runtime)
    owner = world.headers[Relation.OWNER]
    swaps = [
        {"a": world.ids["x"], "t": world.ids["xt"], "r": world.ids["xr"], "i": world.ids["xi"]}
    ]
    for name in ("t", "r", "i"):
        if "{" + name + "}" in endpoint.path:
            swaps.append({name: world.ids["x" + name]})
    for swap in swaps:
        method, path, body = endpoint.request(world, **swap)
        response = await client.request(method, path, json=body, headers=owner)
        assert response.status_code == 404, (swap, response.text)
    audit = await client.get(
        f"/api/v1/accounts/{world.ids['x']}/audit", headers=world.headers[Relation.STAFF]
    )
    assert {e["actor_client_id"] for e in audit.json()["events"]} == {"tests"}


@pytest.mark.parametrize("endpoint", ACCOUNT_ENDPOINTS, ids=_label)
async def test_staff_naming_an_account_that_does_not_exist_get_404(
    client: httpx.AsyncClient, runtime: Runtime, endpoint: Endpoint
) -> None:
    """Staff relate to every account without a membership to read, so nothing looked the
    account up: its members, invitations, roles and audit log listed empty (200), and adding
    a member or a role answered 409 "already a member" or "name exists" (the foreign key's
    refusal read as a duplicate)."""
    user = await make_user(runtime)
    ids = {name: str(uuid.uuid4()) for name in ("a", "t", "r", "i")}
    staff = await make_user(runtime, is_admin=True)
    world = World(
        ids | {"u": str(user.id), "fresh": f"{uuid.uuid4().hex[:8]}@example.com"},
        {Relation.STAFF: await staff_headers(runtime, staff)},
        {Relation.STAFF: str(staff.id)},
    )
    method, path, body = endpoint.request(world, me=world.me[Relation.STAFF])
    response = await client.request(method, path, json=body, headers=world.headers[Relation.STAFF])
    assert response.status_code == 404, response.text
    assert response.json()["detail"] == "No such account.", response.text


async def test_a_request_without_a_token_is_401_with_a_bearer_challenge(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/me/accounts")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("authorization", ["Bearer", "Bearer ", "bearer    "])
async def test_the_bearer_scheme_without_a_token_is_a_400_invalid_request(
    client: httpx.AsyncClient, authorization: str
) -> None:
    # RFC 6750 §3.1: a malformed request, not one that carried no credentials.
    response = await client.get("/api/v1/me/accounts", headers={"Authorization": authorization})
    assert response.status_code == 400, response.text
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_request"')
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "urn:identity:problem:invalid-request"
