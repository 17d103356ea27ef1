"""Removing a member on the Users page takes two posts: the row's "Remove" asks, naming the
person and the account, and only the confirmation's own post removes. A slip of the mouse
then costs a click on "Cancel", not a colleague's access."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import update

from identity.accounts.models import User
from identity.audit.repository import EventFilter, list_events
from identity.clock import utcnow
from identity.permissions import members
from identity.runtime import Runtime
from identity.web.pages_account import PATH as SECURITY_PATH
from tests.browser import PASSWORD, add_user, form_fields
from tests.integration.account_helpers import (
    SYSTEM,
    add_member,
    give_refresh_token,
    refresh_token_revoked,
)
from tests.integration.test_pages_users import (
    Team,
    confirming,
    is_member,
    sign_in_at,
    team,
    users_path,
)

__all__ = ["team"]  # the fixture, shared with the page's other tests


def remove_path(team: Team, user_id: uuid.UUID) -> str:
    return f"{users_path(team.account)}/{user_id}/remove"


async def removals(runtime: Runtime, team: Team, user: User) -> int:
    """How many times the audit log says ``user`` was taken out of the team's account."""
    where = EventFilter(account_id=team.account.id, action="member.removed", target_id=str(user.id))
    async with runtime.db.transaction() as session:
        return len(await list_events(session, where, None, 10))


async def test_the_rows_remove_asks_first_and_the_confirmation_removes(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    async with runtime.db.transaction() as session:
        await session.execute(
            update(User).where(User.id == team.target.id).values(name="Ana García")
        )
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")

    asked = await client.post(remove_path(team, team.target.id), data=csrf)

    assert asked.status_code == 200, asked.text
    assert await is_member(runtime, team.account, team.target)
    assert (
        "Remove Ana García (target@example.com) from Acme? They lose access at once." in asked.text
    )
    assert f'action="{remove_path(team, team.target.id)}?ui_locales=en"' in asked.text
    assert f'href="{users_path(team.account)}?ui_locales=en"' in asked.text  # "Cancel"
    confirmation = form_fields(asked.text)
    assert confirmation["csrf_token"] == csrf["csrf_token"]

    removed = await client.post(remove_path(team, team.target.id), data=confirmation)

    assert removed.status_code == 303, removed.text
    assert removed.headers["location"].startswith(f"{users_path(team.account)}?done=removed")
    assert not await is_member(runtime, team.account, team.target)


async def test_the_question_in_spanish(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    spanish = {"Accept-Language": "es"}
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com", **spanish)

    asked = await client.post(remove_path(team, team.target.id), data=csrf, headers=spanish)

    assert asked.status_code == 200, asked.text
    assert "¿Quitar a target@example.com de Acme? Pierde el acceso de inmediato." in asked.text
    assert ">Cancelar</a>" in asked.text
    assert await is_member(runtime, team.account, team.target)


async def test_removing_oneself_asks_in_the_first_person_and_says_one_has_left(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    await add_member(runtime, team.account, team.outsider, owner=True)
    csrf = await sign_in_at(client, users_path(team.account), "outsider@example.com")

    asked = await client.post(remove_path(team, team.outsider.id), data=csrf)
    left = await client.post(remove_path(team, team.outsider.id), data=form_fields(asked.text))

    assert "<h1>Leave Acme?</h1>" in asked.text
    assert "You lose access to Acme at once" in asked.text
    assert re.search(r'<button type="submit"[^>]*>Leave</button>', asked.text)
    # Not the Users page: that one is for members, which the person no longer is.
    assert left.status_code == 200, left.text
    assert "You have left Acme." in left.text
    assert 'href="/account/security?ui_locales=en"' in left.text
    assert not await is_member(runtime, team.account, team.outsider)


async def test_leaving_posted_twice_says_so_twice_in_spanish(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    spanish = {"Accept-Language": "es"}
    await add_member(runtime, team.account, team.outsider, owner=True)
    csrf = await sign_in_at(client, users_path(team.account), "outsider@example.com", **spanish)
    asked = await client.post(remove_path(team, team.outsider.id), data=csrf, headers=spanish)
    confirmation = form_fields(asked.text)

    first = await client.post(remove_path(team, team.outsider.id), data=confirmation)
    second = await client.post(remove_path(team, team.outsider.id), data=confirmation)

    for answer in (first, second):
        assert answer.status_code == 200, answer.text
        assert "Has salido de Acme." in answer.text
        assert 'href="/account/security?ui_locales=es"' in answer.text
    assert await removals(runtime, team, team.outsider) == 1


async def test_a_leave_confirmation_from_someone_who_never_was_a_member_names_nothing(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    # Posted by hand, with a made-up membership: the account's name stays with its members.
    csrf = await sign_in_at(client, users_path(team.account), "outsider@example.com")

    probe = await client.post(
        remove_path(team, team.outsider.id), data=csrf | {"confirm": str(uuid.uuid4())}
    )

    assert probe.status_code == 404, probe.text
    assert "Acme" not in probe.text


async def test_a_leave_confirmation_after_being_removed_by_someone_else_is_no_leaving(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    await add_member(runtime, team.account, team.outsider)
    csrf = await sign_in_at(client, users_path(team.account), "outsider@example.com")
    asked = await client.post(remove_path(team, team.outsider.id), data=csrf)
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, team.account.id, team.outsider.id, utcnow())

    stale = await client.post(remove_path(team, team.outsider.id), data=form_fields(asked.text))

    assert stale.status_code == 404, stale.text
    assert "You have left" not in stale.text


async def test_a_confirmation_posted_twice_answers_as_the_first(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    # A double click, or a reload that resubmits: the browser shows the second answer only.
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")
    asked = await client.post(remove_path(team, team.target.id), data=csrf)
    confirmation = form_fields(asked.text)

    first = await client.post(remove_path(team, team.target.id), data=confirmation)
    second = await client.post(remove_path(team, team.target.id), data=confirmation)

    assert first.status_code == second.status_code == 303, second.text
    assert second.headers["location"] == first.headers["location"]
    assert first.headers["location"].startswith(f"{users_path(team.account)}?done=removed")
    assert await removals(runtime, team, team.target) == 1  # recorded (and announced) once


async def test_a_confirmation_for_a_member_already_gone_answers_as_done(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")
    asked = await client.post(remove_path(team, team.target.id), data=csrf)
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, team.account.id, team.target.id, utcnow())

    again = await client.post(remove_path(team, team.target.id), data=form_fields(asked.text))

    assert again.status_code == 303, again.text
    assert again.headers["location"].startswith(f"{users_path(team.account)}?done=removed")
    assert await removals(runtime, team, team.target) == 1


async def test_a_confirmation_does_not_remove_someone_who_left_and_came_back(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    # Removed in another tab and invited back since: this old question was about the
    # membership that ended, not the one given again.
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")
    asked = await client.post(remove_path(team, team.target.id), data=csrf)
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, team.account.id, team.target.id, utcnow())
    await add_member(runtime, team.account, team.target, ["invoices"])

    stale = await client.post(remove_path(team, team.target.id), data=form_fields(asked.text))

    assert stale.status_code == 409
    assert "left the account and joined it again" in stale.text
    assert await is_member(runtime, team.account, team.target)


@pytest.mark.parametrize("confirm", ["", "not-a-uuid", "x" * 5000])
async def test_a_hand_made_confirmation_is_refused_readably(
    client: httpx.AsyncClient, runtime: Runtime, team: Team, confirm: str
) -> None:
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")

    response = await client.post(
        remove_path(team, team.target.id), data=csrf | {"confirm": confirm}
    )

    # Not a membership's id: nothing to confirm, so the question again.
    assert response.status_code == 200, response.text
    assert "They lose access at once." in response.text
    assert await is_member(runtime, team.account, team.target)


async def test_asking_needs_the_csrf_token_and_the_right_to_remove(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    csrf = await sign_in_at(client, users_path(team.account), "manager@example.com")

    forged = await client.post(remove_path(team, team.target.id), data={"csrf_token": "forged"})
    owner = await client.post(remove_path(team, team.owner.id), data=csrf)
    stranger = await add_user(runtime, "stranger@example.com")
    unknown = await client.post(remove_path(team, stranger.id), data=csrf)

    assert forged.status_code == 400 and "This form has expired" in forged.text
    assert owner.status_code == 403 and "only an owner can" in owner.text
    assert unknown.status_code == 404
    for response in (forged, owner, unknown):
        assert "lose access" not in response.text


# --- leaving from the security page, which lists every account the user belongs to --------


async def test_a_plain_member_leaves_from_the_security_page(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    # Not allowed the Users page (no `users`), yet free to leave.
    token_id = await give_refresh_token(runtime, team.member, team.account)
    csrf = await sign_in_at(client, SECURITY_PATH, "member@example.com")
    security = await client.get(SECURITY_PATH)
    leave = remove_path(team, team.member.id)
    assert security.status_code == 200, security.text
    assert "Your accounts" in security.text and "Acme" in security.text
    assert f'action="{leave}?ui_locales=en"' in security.text
    assert 'aria-label="Leave Acme"' in security.text

    asked = await client.post(leave, data=csrf)

    assert asked.status_code == 200, asked.text
    assert "<h1>Leave Acme?</h1>" in asked.text
    # "Cancel" goes back where they came from: the Users page is not theirs to see.
    assert f'href="{SECURITY_PATH}?ui_locales=en"' in asked.text
    assert await is_member(runtime, team.account, team.member)
    confirmation = form_fields(asked.text)

    first = await client.post(leave, data=confirmation)
    second = await client.post(leave, data=confirmation)

    for answer in (first, second):
        assert answer.status_code == 200, answer.text
        assert "You have left Acme." in answer.text
    assert not await is_member(runtime, team.account, team.member)
    assert await refresh_token_revoked(runtime, token_id)
    assert await removals(runtime, team, team.member) == 1
    async with runtime.db.transaction() as session:
        assert await members.left_on_their_own(session, team.account.id, team.member.id)
    assert "Acme" not in (await client.get(SECURITY_PATH)).text


async def test_the_security_pages_accounts_in_spanish(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    spanish = {"Accept-Language": "es"}
    await sign_in_at(client, SECURITY_PATH, "member@example.com", **spanish)

    security = await client.get(SECURITY_PATH, headers=spanish)

    assert "Tus cuentas" in security.text
    assert 'aria-label="Salir de Acme"' in security.text and ">Salir</button>" in security.text


async def test_a_plain_member_may_not_remove_anyone_else(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    csrf = await sign_in_at(client, SECURITY_PATH, "member@example.com")

    asked = await client.post(remove_path(team, team.target.id), data=csrf)
    confirmed = await client.post(
        remove_path(team, team.target.id),
        data=csrf | await confirming(runtime, team.account, team.target),
    )

    assert (asked.status_code, confirmed.status_code) == (403, 403)
    assert await is_member(runtime, team.account, team.target)


async def test_a_plain_members_refused_leave_is_told_on_the_security_page(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    # Removed in another tab and added back since: the question was about the membership
    # that ended. The Users page, where a refusal is told, is not theirs to see.
    csrf = await sign_in_at(client, SECURITY_PATH, "member@example.com")
    asked = await client.post(remove_path(team, team.member.id), data=csrf)
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, team.account.id, team.member.id, utcnow())
    await add_member(runtime, team.account, team.member, ["invoices"])

    stale = await client.post(remove_path(team, team.member.id), data=form_fields(asked.text))

    assert stale.status_code == 409, stale.text
    assert "left the account and joined it again" in stale.text
    assert "<h1>Security</h1>" in stale.text
    assert await is_member(runtime, team.account, team.member)


async def test_a_leave_from_a_signed_out_browser_signs_in_back_to_the_security_page(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    # Signed out (elsewhere, or the session ran out) with the security page still open: the
    # Users page, where other posts of this kind start again, is not a plain member's to see.
    posted = await client.post(
        remove_path(team, team.member.id), data={"signed_in_user": str(team.member.id)}
    )
    assert posted.status_code == 303, posted.text
    login = await client.get(posted.headers["location"])
    back = await client.post(
        "/login",
        data=form_fields(login.text) | {"email": "member@example.com", "password": PASSWORD},
    )

    assert back.status_code == 303, back.text
    assert urlsplit(back.headers["location"]).path == SECURITY_PATH
    assert await is_member(runtime, team.account, team.member)
