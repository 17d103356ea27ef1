"""The hosted Users page of an account: who sees it, what each form does, in both languages,
with the same authorization rules as the management API."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from identity.accounts.models import User
from identity.accounts.service import disable_user
from identity.audit.models import AuditEvent
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.permissions import account_roles, invitations, members, repository
from identity.permissions.grants import Grant
from identity.permissions.invitations import InvitationRequest
from identity.permissions.models import Account, Invitation, MembershipPermission
from identity.runtime import Runtime
from tests.browser import PASSWORD, add_user, form_fields
from tests.integration.account_helpers import SYSTEM, add_member, effective, grant, make_account
from tests.integration.page_helpers import invalid_fields, mail_to, other_session, waits_out


def users_path(account: Account) -> str:
    return f"/accounts/{account.id}/users"


async def sign_in_at(
    http: httpx.AsyncClient, path: str, email: str, **headers: str
) -> dict[str, str]:
    """Open ``path`` signed out, sign in on the login page it sends to, land back on it.

    Returns the hidden fields every form of the page carries: the browser's CSRF token and,
    where the page opens, the signed-in user it was shown to.
    """
    sent = await http.get(path, headers=headers)
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"].startswith("/login?flow="), sent.headers["location"]
    login = await http.get(sent.headers["location"], headers=headers)
    fields = form_fields(login.text)
    back = await http.post(
        "/login", data=fields | {"email": email, "password": PASSWORD}, headers=headers
    )
    assert back.status_code == 303, back.text
    assert urlsplit(back.headers["location"]).path == path
    shown = form_fields((await http.get(back.headers["location"], headers=headers)).text)
    return {"csrf_token": fields["csrf_token"]} | {
        name: shown[name] for name in ("signed_in_user",) if name in shown
    }


async def invite(runtime: Runtime, account: Account, email: str) -> uuid.UUID:
    async with runtime.db.transaction() as session:
        invitation = await invitations.invite(
            session,
            SYSTEM,
            account.id,
            InvitationRequest(email=email, permissions=[Grant("tickets")]),
            catalogue=runtime.catalogue,
            limiter=runtime.limiter,
            settings=runtime.settings,
            now=utcnow(),
        )
    return invitation.id


async def pending_emails(runtime: Runtime, account: Account) -> list[str]:
    async with runtime.db.transaction() as session:
        return [i.email for i in await invitations.pending(session, account.id, utcnow())]


async def is_member(runtime: Runtime, account: Account, user: User) -> bool:
    async with runtime.db.transaction() as session:
        return await repository.get_membership(session, account.id, user.id) is not None


async def confirming(runtime: Runtime, account: Account, user: User) -> dict[str, str]:
    """The field a removal's confirming post adds (the Remove button's first post only asks):
    the membership the question was about."""
    async with runtime.db.transaction() as session:
        found = await repository.get_membership(session, account.id, user.id)
    assert found is not None
    return {"confirm": str(found.id)}


@dataclass
class Team:
    account: Account
    owner: User
    manager: User  # holds `users`, and `tickets` and `domains` to hand out
    member: User  # holds `invoices` only
    target: User  # a plain member the forms act on
    outsider: User  # owns another account
    other: Account
    invitation_id: uuid.UUID
    invited_at: float  # time.monotonic() before the invitation's email was counted


@pytest.fixture
async def team(runtime: Runtime) -> Team:
    owner = await add_user(runtime, "owner@example.com")
    manager = await add_user(runtime, "manager@example.com")
    member = await add_user(runtime, "member@example.com")
    target = await add_user(runtime, "target@example.com")
    outsider = await add_user(runtime, "outsider@example.com")
    account = await make_account(runtime, owner, "Acme")
    # What the actions below hand out: a manager grants only what they hold.
    await add_member(runtime, account, manager, ["users", "tickets", "domains"])
    await add_member(runtime, account, member, ["invoices"])
    await add_member(runtime, account, target, ["invoices"])
    other = await make_account(runtime, outsider, "Globex")
    invited_at = time.monotonic()
    invitation_id = await invite(runtime, account, "pending@example.com")
    return Team(account, owner, manager, member, target, outsider, other, invitation_id, invited_at)


# --- signing in and reading ------------------------------------------------------------------


async def test_signed_out_the_page_sends_to_login_and_back(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    await sign_in_at(client, users_path(team.account), "owner@example.com")

    page = await client.get(users_path(team.account))

    assert page.status_code == 200
    assert "Users of Acme" in page.text
    for email in ("owner@example.com", "manager@example.com", "target@example.com"):
        assert email in page.text
    assert "pending@example.com" in page.text
    assert "Invoices" in page.text and "Send invitation" in page.text
    assert page.headers["cache-control"] == "no-store"


class _RowControls(HTMLParser):
    """The accessible name of each per-row control: its aria-label, else its text."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self._open: dict[str, str | None] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("button", "summary") and self._open is None:
            self._open, self._text = dict(attrs), ""

    def handle_data(self, data: str) -> None:
        self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("button", "summary") and self._open is not None:
            self.names.append(self._open.get("aria-label") or " ".join(self._text.split()))
            self._open = None


@pytest.mark.parametrize(
    ("language", "remove", "edit", "resend", "cancel"),
    [
        ("en", "Remove", "Edit permissions", "Resend", "Cancel invitation"),
        ("es", "Quitar", "Editar permisos", "Reenviar", "Cancelar invitación"),
    ],
)
async def test_each_row_control_says_whom_it_acts_on(
    client: httpx.AsyncClient,
    team: Team,
    language: str,
    remove: str,
    edit: str,
    resend: str,
    cancel: str,
) -> None:
    """A screen reader lists a page's buttons by name: ten "Remove" buttons say nothing of
    whom each removes. Each name starts with the visible label (WCAG 2.5.3)."""
    headers = {"Accept-Language": language}
    await sign_in_at(client, users_path(team.account), "owner@example.com", **headers)

    page = await client.get(users_path(team.account), headers=headers)

    parser = _RowControls()
    parser.feed(page.text)
    for email in ("manager@example.com", "target@example.com"):
        assert sum(name.startswith(remove) and email in name for name in parser.names) == 1
        assert sum(name.startswith(edit) and email in name for name in parser.names) == 1
    for label in (resend, cancel):
        assert sum(n.startswith(label) and "pending@example.com" in n for n in parser.names) == 1
    assert [name for name in parser.names if name in (remove, edit, resend, cancel)] == []


async def test_international_addresses_are_shown_as_people_write_them(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    """Stored as mail servers name them (xn--), shown as every other page shows them."""
    jan = await add_user(runtime, "jan@xn--strae-oqa.de")
    await add_member(runtime, team.account, jan, ["users"])
    await invite(runtime, team.account, "nina@bücher.de")
    await sign_in_at(client, users_path(team.account), "jan@straße.de")

    page = await client.get(users_path(team.account))

    assert '<span class="hint">jan@straße.de</span>' in page.text
    assert "<td>nina@bücher.de</td>" in page.text
    assert "jan@straße.de" in page.text.split("<table")[0]  # "signed in as"
    assert "xn--" not in page.text


def member_row(page: httpx.Response, user: User) -> str:
    """The Users page's table row of one member."""
    return page.text.split(f'<tr id="member-{user.id}">')[1].split("</tr>")[0]


@pytest.mark.parametrize(
    ("language", "marker"), [("en", "Disabled"), ("es", "Desactivado")], ids=["en", "es"]
)
async def test_a_member_staff_disabled_is_marked_disabled(
    client: httpx.AsyncClient, runtime: Runtime, team: Team, language: str, marker: str
) -> None:
    async with runtime.db.transaction() as session:
        await disable_user(session, SYSTEM, team.target.id, "Left the company", utcnow())
    headers = {"Accept-Language": language}
    await sign_in_at(client, users_path(team.account), "owner@example.com", **headers)

    page = await client.get(users_path(team.account), headers=headers)

    assert page.status_code == 200, page.text
    assert f'<span class="badge">{marker}</span>' in member_row(page, team.target)
    assert marker not in member_row(page, team.member)


async def test_the_page_speaks_spanish_with_the_catalogue_labels(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    spanish = {"Accept-Language": "es"}
    await sign_in_at(client, users_path(team.account), "owner@example.com", **spanish)

    page = await client.get(users_path(team.account), headers=spanish)

    assert '<html lang="es">' in page.text
    assert "Usuarios de Acme" in page.text
    assert "Facturas" in page.text and "Enviar invitación" in page.text
    assert "Invoices" not in page.text


async def test_a_link_in_spanish_keeps_the_page_spanish_through_sign_in_and_its_forms(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    client.headers["Accept-Language"] = "en"
    path = users_path(team.account)
    sent = await client.get(path, params={"ui_locales": "es"})
    login = await client.get(sent.headers["location"])
    back = await client.post(
        "/login",
        data=form_fields(login.text) | {"email": "owner@example.com", "password": PASSWORD},
    )
    page = await client.get(back.headers["location"])
    fields = form_fields(page.text)
    form = {name: fields[name] for name in ("csrf_token", "ui_locales", "signed_in_user")}
    cancel = f"{path}/invitations/{team.invitation_id}/cancel"

    done = await client.post(cancel, data=form)
    shown = await client.get(done.headers["location"])
    again = await client.post(cancel, data=form)

    assert "Iniciar sesión" in login.text
    assert "Usuarios de Acme" in page.text
    assert "Se ha cancelado la invitación." in shown.text
    assert again.headers["location"] == done.headers["location"]  # a double click: as done


async def test_only_an_owner_is_offered_all_permissions(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    await sign_in_at(client, users_path(team.account), "manager@example.com")

    page = await client.get(users_path(team.account))

    assert page.status_code == 200
    assert 'name="all_permissions"' not in page.text
    # A manager cannot edit or remove the owner, so no form for it is shown.
    assert f"/users/{team.owner.id}/remove" not in page.text
    assert f"/users/{team.target.id}/remove" in page.text


# --- every cell: (relation, action) -> outcome -------------------------------------------------

RELATIONS = {
    "owner": "owner@example.com",
    "manager": "manager@example.com",
    "member": "member@example.com",
    "outsider": "outsider@example.com",
}
# What each may do, as in identity.permissions.access.MATRIX: owners and managers act,
# plain members are refused (403), anyone outside the account learns nothing (404).
OUTCOME = {"owner": 303, "manager": 303, "member": 403, "outsider": 404}
ACTIONS = ["invite", "grants", "remove", "resend", "cancel"]


async def action_request(
    runtime: Runtime, team: Team, action: str
) -> tuple[str, dict[str, str | list[str]]]:
    base = users_path(team.account)
    # Removal as confirmed; the question before it: test_pages_users_remove.py.
    confirmed = await confirming(runtime, team.account, team.target)
    return {
        "invite": (f"{base}/invite", {"email": "new@example.com", "permission": ["tickets"]}),
        "grants": (f"{base}/{team.target.id}/grants", {"permission": ["domains"]}),
        "remove": (f"{base}/{team.target.id}/remove", {**confirmed}),
        "resend": (f"{base}/invitations/{team.invitation_id}/resend", {}),
        "cancel": (f"{base}/invitations/{team.invitation_id}/cancel", {}),
    }[action]


async def happened(runtime: Runtime, team: Team, action: str) -> bool:
    pending = await pending_emails(runtime, team.account)
    if action == "invite":
        return "new@example.com" in pending
    if action == "grants":
        return await effective(runtime, team.target, team.account) == {"domains"}
    if action == "remove":
        return not await is_member(runtime, team.account, team.target)
    if action == "cancel":
        return "pending@example.com" not in pending
    async with runtime.db.transaction() as session:  # resend: a new expiry and a new email
        found = await repository.get_invitation(session, team.account.id, team.invitation_id)
    assert found is not None
    return found.expires_at > found.created_at + invitations.INVITATION_TTL


@pytest.mark.parametrize("relation", list(RELATIONS))
async def test_who_may_see_the_page(
    client: httpx.AsyncClient, runtime: Runtime, team: Team, relation: str
) -> None:
    await sign_in_at(client, users_path(team.account), RELATIONS[relation])

    page = await client.get(users_path(team.account))

    assert (
        page.status_code == {"owner": 200, "manager": 200, "member": 403, "outsider": 404}[relation]
    )
    if page.status_code != 200:
        assert "pending@example.com" not in page.text
        assert "target@example.com" not in page.text


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("relation", list(RELATIONS))
async def test_every_cell_of_the_page_actions(
    client: httpx.AsyncClient, runtime: Runtime, team: Team, relation: str, action: str
) -> None:
    csrf = await sign_in_at(client, users_path(team.account), RELATIONS[relation])
    path, data = await action_request(runtime, team, action)

    response = await client.post(path, data=csrf | data)

    assert response.status_code == OUTCOME[relation], response.text
    assert await happened(runtime, team, action) is (OUTCOME[relation] == 303)
    if response.status_code == 303:
        assert response.headers["location"].startswith(f"{users_path(team.account)}?done=")
        done = await client.get(response.headers["location"])
        assert 'role="status"' in done.text


@pytest.mark.parametrize("action", ACTIONS)
async def test_every_action_needs_a_signed_in_browser(
    client: httpx.AsyncClient, runtime: Runtime, team: Team, action: str
) -> None:
    path, data = await action_request(runtime, team, action)

    response = await client.post(path, data=data)

    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?flow=")
    assert await happened(runtime, team, action) is False


@pytest.mark.parametrize("action", ACTIONS)
async def test_every_action_needs_its_csrf_token(
    client: httpx.AsyncClient, runtime: Runtime, team: Team, action: str
) -> None:
    await sign_in_at(client, users_path(team.account), "owner@example.com")
    path, data = await action_request(runtime, team, action)

    response = await client.post(path, data=data | {"csrf_token": "forged"})

    assert response.status_code == 400
    assert "This form has expired" in response.text
    assert await happened(runtime, team, action) is False


# --- other accounts' ids ---------------------------------------------------------------------


async def test_an_owner_cannot_reach_another_accounts_members_or_invitations(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    stranger = await add_user(runtime, "stranger@example.com")
    await add_member(runtime, team.other, stranger, ["invoices"])
    foreign_invitation = await invite(runtime, team.other, "foreign@example.com")
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")
    base = users_path(team.account)

    their_page = await client.get(users_path(team.other))
    their_invite = await client.post(
        f"{users_path(team.other)}/invite", data=csrf | {"email": "x@example.com"}
    )
    edit = await client.post(f"{base}/{stranger.id}/grants", data=csrf | {"permission": "users"})
    remove = await client.post(f"{base}/{stranger.id}/remove", data=csrf)
    cancel = await client.post(f"{base}/invitations/{foreign_invitation}/cancel", data=csrf)
    resend = await client.post(f"{base}/invitations/{foreign_invitation}/resend", data=csrf)

    assert their_page.status_code == 404 and "Globex" not in their_page.text
    assert their_invite.status_code == 404
    for response in (edit, remove, cancel, resend):
        assert response.status_code == 404
        assert "does not exist in this account" in response.text
    assert await effective(runtime, stranger, team.other) == {"invoices"}
    assert "foreign@example.com" in await pending_emails(runtime, team.other)


# --- what the forms do, and their refusals -----------------------------------------------------


async def test_the_owner_invites_with_chosen_permissions_and_a_role(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    await runtime.catalogue.ensure_templates(runtime.db)
    async with runtime.db.transaction() as session:
        role = (await account_roles.list_roles(session, None))[0].role
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")

    sent = await client.post(
        f"{users_path(team.account)}/invite",
        data=csrf
        | {
            "email": "Carol@Example.com",
            "locale": "es",
            "permission": ["invoices", "tickets"],
            "role": [str(role.id)],
        },
    )

    assert sent.status_code == 303
    async with runtime.db.transaction() as session:
        found = [
            i
            for i in await invitations.pending(session, team.account.id, utcnow())
            if i.email == "carol@example.com"
        ]
    assert len(found) == 1
    assert found[0].locale == "es" and found[0].all_permissions is False
    assert [g["name"] for g in found[0].grants["permissions"]] == ["invoices", "tickets"]
    assert [g["role_id"] for g in found[0].grants["roles"]] == [str(role.id)]


async def test_the_owner_invites_with_all_permissions(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")

    sent = await client.post(
        f"{users_path(team.account)}/invite",
        data=csrf | {"email": "all@example.com", "all_permissions": "yes", "permission": "tickets"},
    )

    assert sent.status_code == 303
    async with runtime.db.transaction() as session:
        found = [
            i
            for i in await invitations.pending(session, team.account.id, utcnow())
            if i.email == "all@example.com"
        ]
    assert found[0].all_permissions is True
    assert found[0].grants["permissions"] == []


async def test_a_manager_cannot_invite_or_grant_with_all_permissions(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    csrf = await sign_in_at(client, users_path(team.account), "manager@example.com")

    invited = await client.post(
        f"{users_path(team.account)}/invite",
        data=csrf | {"email": "all@example.com", "all_permissions": "yes"},
    )
    granted = await client.post(
        f"{users_path(team.account)}/{team.target.id}/grants",
        data=csrf | {"all_permissions": "yes"},
    )

    for response in (invited, granted):
        assert response.status_code == 403
        assert "only an owner can grant all permissions" in response.text
    assert "all@example.com" not in await pending_emails(runtime, team.account)
    assert await effective(runtime, team.target, team.account) == {"invoices"}


async def test_a_managers_save_leaves_all_permissions_they_were_not_shown(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    # The row says "All permissions", but only owners get its box: a manager's form never
    # carries it, and saving it (to give a role, say) must not take it away unseen.
    await add_member(runtime, team.account, team.outsider, all_permissions=True)
    csrf = await sign_in_at(client, users_path(team.account), "manager@example.com")

    saved = await client.post(
        f"{users_path(team.account)}/{team.outsider.id}/grants",
        data=csrf | {"permission": ["tickets"]},
    )

    assert saved.status_code == 303
    async with runtime.db.transaction() as session:
        view = await members.member(
            session, team.account.id, team.outsider.id, utcnow(), runtime.catalogue
        )
    assert view.membership.all_permissions
    assert [g.permission for g in view.permissions] == ["tickets"]


async def test_a_manager_cannot_change_or_remove_an_owner(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    csrf = await sign_in_at(client, users_path(team.account), "manager@example.com")
    base = users_path(team.account)

    removed = await client.post(
        f"{base}/{team.owner.id}/remove",
        data=csrf | await confirming(runtime, team.account, team.owner),
    )
    edited = await client.post(f"{base}/{team.owner.id}/grants", data=csrf)

    assert removed.status_code == edited.status_code == 403
    assert await is_member(runtime, team.account, team.owner)


async def _target_grants(runtime: Runtime, team: Team) -> dict[str, datetime | None]:
    """The target member's grants as the page's service shows them: permission to expiry."""
    async with runtime.db.transaction() as session:
        view = await members.member(
            session, team.account.id, team.target.id, utcnow(), runtime.catalogue
        )
    return {g.permission: g.expires_at for g in view.permissions}


async def test_editing_keeps_unchanged_grants_and_their_expiry(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    later = utcnow().replace(microsecond=0) + timedelta(days=365)  # no 29 February next year
    await grant(runtime, team.account.id, team.target.id, Grant("tickets", later))
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")

    saved = await client.post(
        f"{users_path(team.account)}/{team.target.id}/grants",
        data=csrf | {"permission": ["tickets", "domains"]},
    )

    assert saved.status_code == 303
    assert await _target_grants(runtime, team) == {
        "tickets": later,
        "domains": None,
    }


async def test_a_lapsed_grant_shows_unticked_and_the_form_saves_as_shown(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    # The lapsed grant's box was ticked, and saving the form unchanged was refused with "An
    # expiry date must be in the future."
    async with runtime.db.transaction() as session:
        await members.grant_one(
            session,
            SYSTEM,
            team.account.id,
            team.target.id,
            Grant("tickets", utcnow() + timedelta(days=1)),
            catalogue=runtime.catalogue,
            now=utcnow(),
        )
        await session.execute(
            update(MembershipPermission)
            .where(MembershipPermission.permission == "tickets")
            .values(expires_at=utcnow() - timedelta(hours=1))
        )
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")
    page = await client.get(users_path(team.account))
    box = f'id="m-{team.target.id}-p-tickets" type="checkbox" name="permission" value="tickets"'
    assert f"{box}>" in page.text  # not ticked
    assert f'id="m-{team.target.id}-p-invoices" type="checkbox"' in page.text
    grants = f"{users_path(team.account)}/{team.target.id}/grants"

    as_shown = await client.post(grants, data=csrf | {"permission": ["invoices"]})
    assert as_shown.status_code == 303, as_shown.text
    assert await effective(runtime, team.target, team.account) == {"invoices"}

    ticked_again = await client.post(grants, data=csrf | {"permission": ["invoices", "tickets"]})
    assert ticked_again.status_code == 303, ticked_again.text
    assert await _target_grants(runtime, team) == {
        "invoices": None,
        "tickets": None,
    }


async def test_removing_the_last_owner_is_refused_with_a_message(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    spanish = {"Accept-Language": "es"}
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com", **spanish)

    refused = await client.post(
        f"{users_path(team.account)}/{team.owner.id}/remove",
        data=csrf | await confirming(runtime, team.account, team.owner),
        headers=spanish,
    )

    assert refused.status_code == 409
    assert "Una cuenta debe conservar al menos un titular" in refused.text
    assert await is_member(runtime, team.account, team.owner)


async def test_a_page_left_open_while_another_user_signed_in_changes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    await sign_in_at(client, users_path(team.account), "owner@example.com")
    page = await client.get(users_path(team.account))
    remove = f"{users_path(team.account)}/{team.target.id}/remove"
    # Another tab of this browser signs in as the manager: the CSRF token, one per browser,
    # still matches, but the owner's page must not act as (and be audited as) the manager.
    client.cookies.set("identity_session", await other_session(runtime, team.manager))

    confirmed = await confirming(runtime, team.account, team.target)
    removed = await client.post(remove, data=form_fields(page.text) | confirmed)
    invited = await client.post(
        f"{users_path(team.account)}/invite",
        data=form_fields(page.text) | {"email": "carol@example.com", "permission": "tickets"},
    )

    for response in (removed, invited):
        assert response.status_code == 409, response.text
        assert "This page was opened while someone else was signed in" in response.text
        assert "manager@example.com" in response.text
    assert 'value="carol@example.com"' in invited.text
    assert await is_member(runtime, team.account, team.target)
    assert "carol@example.com" not in await pending_emails(runtime, team.account)
    # The page it answered with is the manager's own, and works.
    again = await client.post(remove, data=form_fields(removed.text) | confirmed)
    assert again.status_code == 303 and not await is_member(runtime, team.account, team.target)


@pytest.mark.parametrize(
    ("data", "status", "english", "spanish", "at_fault"),
    [
        (
            {"email": "not an email"},
            422,
            "Enter a valid email address.",
            "Escribe una dirección de correo válida.",
            {"invite-email": "message"},
        ),
        (
            {"email": "target@example.com"},
            409,
            "already a member of the account",
            "ya es miembro de la cuenta",
            {"invite-email": "message"},
        ),
        (
            {"email": "pending@example.com"},
            409,
            "has a pending invitation",
            "tiene una invitación pendiente",
            {"invite-email": "message"},
        ),
        (
            {"email": "x@example.com", "permission": "no-such-thing"},
            422,
            "Choose permissions and roles from the lists",
            "Elige permisos y roles de las listas",
            {},
        ),
        (
            {"email": "x@example.com", "role": "not-a-uuid"},
            422,
            "Choose permissions and roles from the lists",
            "Elige permisos y roles de las listas",
            {},
        ),
    ],
)
@pytest.mark.parametrize("language", ["en", "es"])
async def test_bad_input_gets_a_readable_message_and_the_form_back(
    client: httpx.AsyncClient,
    runtime: Runtime,
    team: Team,
    data: dict[str, str],
    status: int,
    english: str,
    spanish: str,
    at_fault: dict[str, str],
    language: str,
) -> None:
    headers = {"Accept-Language": language}
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com", **headers)

    refused = await client.post(
        f"{users_path(team.account)}/invite",
        data=csrf | data,
        headers=headers,
    )

    assert refused.status_code == status
    assert (english if language == "en" else spanish) in refused.text
    assert f'value="{data["email"]}"' in refused.text  # nothing to type again
    assert invalid_fields(refused) == at_fault


async def test_a_permission_or_role_posted_twice_is_invited_once(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    # No page sends a box twice; a hand-made post that does must not store (and list on the
    # page and in the API) the same grant again and again, as the API refuses to.
    await runtime.catalogue.ensure_templates(runtime.db)
    async with runtime.db.transaction() as session:
        role = (await account_roles.list_roles(session, None))[0].role
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")

    sent = await client.post(
        f"{users_path(team.account)}/invite",
        data=csrf
        | {
            "email": "carol@example.com",
            "permission": ["tickets", "invoices", "tickets"],
            "role": [str(role.id), f"{{{role.id}}}"],
        },
    )

    assert sent.status_code == 303, sent.text
    async with runtime.db.transaction() as session:
        (found,) = [
            i
            for i in await invitations.pending(session, team.account.id, utcnow())
            if i.email == "carol@example.com"
        ]
    assert [g["name"] for g in found.grants["permissions"]] == ["tickets", "invoices"]
    assert [g["role_id"] for g in found.grants["roles"]] == [str(role.id)]


async def test_an_invitation_posted_twice_is_sent_once_and_both_say_sent(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    # A double click on "Invite": the second post said the address had a pending invitation
    # (resend it instead), though the first had just sent it.
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")
    path = f"{users_path(team.account)}/invite"
    form = csrf | {"email": "carol@example.com", "permission": ["tickets"]}

    answers = await asyncio.gather(*(client.post(path, data=form) for _ in "ab"))
    other_grants = await client.post(path, data=form | {"permission": ["invoices"]})

    assert [a.status_code for a in answers] == [303, 303]
    assert {a.headers["location"] for a in answers} == {
        f"{users_path(team.account)}?done=invited&ui_locales=en"
    }
    assert (await pending_emails(runtime, team.account)).count("carol@example.com") == 1
    assert len(await mail_to(runtime, "carol@example.com")) == 1
    # Not the same invitation: a real clash, said as before.
    assert other_grants.status_code == 409 and "has a pending invitation" in other_grants.text


async def test_cancelling_twice_answers_as_the_first_cancel_and_records_it_once(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    # A double click on Cancel: the second post finds the invitation cancelled (by itself a
    # moment ago), which is what was asked, so it says so rather than report a failure.
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")
    path = f"{users_path(team.account)}/invitations/{team.invitation_id}/cancel"

    first = await client.post(path, data=csrf)
    second = await client.post(path, data=csrf)

    assert first.status_code == second.status_code == 303
    assert second.headers["location"] == first.headers["location"]
    async with runtime.db.transaction() as session:
        recorded = await session.scalars(
            select(AuditEvent).where(AuditEvent.action == "invitation.cancelled")
        )
        assert len(recorded.all()) == 1


async def test_cancelling_an_expired_invitation_says_it_no_longer_exists(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")
    async with runtime.db.transaction() as session:
        await session.execute(
            update(Invitation)
            .where(Invitation.id == team.invitation_id)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )

    path = f"{users_path(team.account)}/invitations/{team.invitation_id}/cancel"
    refused = await client.post(path, data=csrf)

    assert refused.status_code == 404
    assert "does not exist in this account" in refused.text
    async with runtime.db.transaction() as session:
        invitation = await session.get(Invitation, team.invitation_id)
        assert invitation is not None and invitation.cancelled_at is None


async def test_resending_an_invitation_its_sender_could_no_longer_send_says_so(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    """Still listed as pending, it is refused because its sender was removed: the page says
    that, not that it was accepted or cancelled, which would leave the owner puzzled."""
    async with runtime.db.transaction() as session:
        sent = await invitations.invite(
            session,
            Actor(user_id=team.manager.id),
            team.account.id,
            InvitationRequest(email="by.manager@example.com", permissions=[Grant("tickets")]),
            catalogue=runtime.catalogue,
            limiter=runtime.limiter,
            settings=runtime.settings,
            now=utcnow(),
        )
        await members.remove_member(session, SYSTEM, team.account.id, team.manager.id, utcnow())
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")

    resent = await client.post(
        f"{users_path(team.account)}/invitations/{sent.id}/resend", data=csrf
    )

    assert resent.status_code == 409
    assert "accepted or cancelled" not in resent.text
    assert "cancel it and send a new one" in resent.text


async def test_a_manager_resending_an_owners_all_permissions_invitation_is_told_why(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    async with runtime.db.transaction() as session:
        sent = await invitations.invite(
            session,
            Actor(user_id=team.owner.id),
            team.account.id,
            InvitationRequest(email="deputy@example.com", all_permissions=True),
            catalogue=runtime.catalogue,
            limiter=runtime.limiter,
            settings=runtime.settings,
            now=utcnow(),
        )
    csrf = await sign_in_at(client, users_path(team.account), "manager@example.com")

    resent = await client.post(
        f"{users_path(team.account)}/invitations/{sent.id}/resend", data=csrf
    )

    assert resent.status_code == 403
    assert "You can resend only an invitation you could send yourself" in resent.text


async def test_too_many_invitations_are_refused_with_a_message(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")
    path = f"{users_path(team.account)}/invitations/{team.invitation_id}/resend"

    statuses = [(await client.post(path, data=csrf)).status_code for _ in range(5)]
    refused = await client.post(path, data=csrf)

    # One email was already sent at the invitation: the address gets five a day.
    assert statuses == [303] * 4 + [429]
    assert refused.status_code == 429
    assert "Too many invitations" in refused.text
    assert waits_out(refused, 86400, team.invited_at)  # five a day


async def test_a_manager_hands_out_on_the_page_only_what_they_hold(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    csrf = await sign_in_at(client, users_path(team.account), "manager@example.com")

    invited = await client.post(
        f"{users_path(team.account)}/invite",
        data=csrf | {"email": "alt@example.com", "permission": ["tickets", "quotes"]},
    )
    # The target's `invoices` may stay (the manager lacks it); `quotes` may not come.
    granted = await client.post(
        f"{users_path(team.account)}/{team.target.id}/grants",
        data=csrf | {"permission": ["invoices", "quotes"]},
    )

    for response in (invited, granted):
        assert response.status_code == 403
        assert "You can grant only permissions you hold yourself" in response.text
    assert "alt@example.com" not in await pending_emails(runtime, team.account)
    assert await effective(runtime, team.target, team.account) == {"invoices"}
