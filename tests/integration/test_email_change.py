"""A signed-in user changes their sign-in email, confirmed by a link sent to the new address."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest

from identity.accounts import repository as accounts_repository
from identity.accounts import self_service
from identity.accounts.models import User
from identity.accounts.service import authenticate, disable_user, enable_user
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.crypto import digest
from identity.errors import Conflict, InvalidInput
from identity.permissions import invitations
from identity.permissions import repository as permissions_repository
from identity.recovery import email_change
from identity.recovery import repository as email_change_repository
from identity.recovery import service as recovery_service
from identity.recovery.email_change import (
    InvalidConfirmationLink,
    confirm_email_change,
)
from identity.recovery.service import assisted_email_change
from identity.runtime import Runtime
from identity.web.api import users as users_api
from tests.integration.account_helpers import make_account, make_user, staff_headers, user_headers
from tests.integration.page_helpers import (
    SECURITY,
    ask_email_change,
    link_in,
    mail_to,
    post_form,
    sign_in_to_security_page,
    token_of,
)
from tests.integration.recovery_helpers import (
    PASSWORD,
    forgot,
    held_after,
    new_user,
    reset,
    told_after,
    until_waiting_or_done,
)

NEW = "ana.new@example.org"
INTRUDER = "intruder@example.net"
_LINK = re.compile(r"http://testserver\.local/confirm-email\?token=([A-Za-z0-9_-]+)")


async def _ask(runtime: Runtime, user: User, new_email: str = NEW) -> str:
    """Ask for the change; returns the token of the link mailed to the new address."""
    await ask_email_change(runtime, user, new_email)
    subject = "Confirm your new Identity email address"
    (message,) = [m for m in await mail_to(runtime, new_email.lower()) if m.subject == subject]
    match = _LINK.search(message.text_body)
    assert match and message.html_body and match.group(0) in message.html_body
    return match.group(1)


async def _confirm(runtime: Runtime, token: str) -> User:
    async with runtime.db.transaction() as session:
        return await confirm_email_change(
            session, runtime.store, runtime.settings, Actor(), token, "en", utcnow()
        )


async def test_the_confirmed_address_becomes_the_sign_in_email_and_the_old_one_is_told(
    runtime: Runtime,
) -> None:
    user = await new_user(runtime, "ana@example.com")
    token = await _ask(runtime, user, "Ana.New@Example.org")
    assert await mail_to(runtime, "ana@example.com") == []  # nothing changed yet
    changed = await _confirm(runtime, token)
    assert changed.email == NEW and changed.email_verified
    (notice,) = await mail_to(runtime, "ana@example.com")
    assert "from ana@example.com to ana.new@example.org" in notice.text_body
    assert await authenticate(runtime.db, runtime.passwords, NEW, PASSWORD) is not None
    assert await authenticate(runtime.db, runtime.passwords, "ana@example.com", PASSWORD) is None


async def test_reset_links_mailed_before_a_confirmed_email_change_no_longer_work(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await new_user(runtime, "ana@example.com")
    await forgot(client, "ana@example.com")
    (message,) = await mail_to(runtime, "ana@example.com")
    link = link_in(message, "/reset-password")
    assert (await client.get(link)).status_code == 200  # usable until the change
    await _confirm(runtime, await _ask(runtime, user))
    refused = await reset(client, token_of(link))
    assert refused.status_code == 400
    assert refused.json()["type"] == "urn:identity:problem:invalid-reset-token"
    assert await authenticate(runtime.db, runtime.passwords, NEW, PASSWORD) is not None


@pytest.mark.parametrize(("chosen", "page"), [("es", "en"), (None, "es")], ids=["chosen", "page's"])
async def test_the_link_is_mailed_in_the_user_s_language_else_the_page_s(
    runtime: Runtime, chosen: str | None, page: str
) -> None:
    user = await new_user(runtime, "ana@example.com", locale=chosen)
    await ask_email_change(runtime, user, NEW, locale=page)
    (message,) = await mail_to(runtime, NEW)
    assert message.subject == "Confirma tu nuevo correo electrónico de Identity"


async def test_a_confirmation_link_works_once(runtime: Runtime) -> None:
    user = await new_user(runtime, "ana@example.com")
    token = await _ask(runtime, user)
    await _confirm(runtime, token)
    with pytest.raises(InvalidConfirmationLink):
        await _confirm(runtime, token)


async def test_a_tampered_confirmation_link_is_refused(runtime: Runtime) -> None:
    user = await new_user(runtime, "ana@example.com")
    token = await _ask(runtime, user)
    with pytest.raises(InvalidConfirmationLink):
        await _confirm(runtime, token[:-1] + ("A" if token[-1] != "A" else "B"))


async def test_asking_for_a_taken_address_reveals_nothing_but_confirming_is_a_conflict(
    runtime: Runtime,
) -> None:
    user = await new_user(runtime, "ana@example.com")
    await new_user(runtime, "bea@example.com")
    token = await _ask(runtime, user, "bea@example.com")
    with pytest.raises(Conflict):
        await _confirm(runtime, token)
    async with runtime.db.transaction() as session:
        assert (await session.get(User, user.id)).email == "ana@example.com"  # type: ignore[union-attr]


async def test_the_current_address_is_not_a_change(runtime: Runtime) -> None:
    user = await new_user(runtime, "ana@example.com")
    with pytest.raises(InvalidInput):
        await ask_email_change(runtime, user, "ANA@example.com")


async def test_a_password_reset_ends_the_confirmation_links_asked_for_before_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Whoever held a stolen session asked for their own address; the owner then takes the
    # account back with a reset, which signs everybody out: the pending change goes too.
    user = await new_user(runtime, "ana@example.com")
    token = await _ask(runtime, user, "intruder@example.net")
    await forgot(client, "ana@example.com")
    (message,) = await mail_to(runtime, "ana@example.com")
    assert (await reset(client, token_of(link_in(message, "/reset-password")))).status_code == 204
    with pytest.raises(InvalidConfirmationLink):
        await _confirm(runtime, token)
    async with runtime.db.transaction() as session:
        assert (await session.get(User, user.id)).email == "ana@example.com"  # type: ignore[union-attr]


async def test_a_move_by_staff_ends_the_confirmation_links_asked_for_before_it(
    runtime: Runtime,
) -> None:
    user = await new_user(runtime, "ana@example.com")
    token = await _ask(runtime, user, "intruder@example.net")
    async with runtime.db.transaction() as session:
        await assisted_email_change(
            session,
            runtime.settings,
            Actor(client_id="support"),
            user.id,
            "ana@example.org",
            "Lost her mailbox; identity checked by phone.",
            utcnow(),
        )
    with pytest.raises(InvalidConfirmationLink):
        await _confirm(runtime, token)
    async with runtime.db.transaction() as session:
        assert (await session.get(User, user.id)).email == "ana@example.org"  # type: ignore[union-attr]


async def test_a_move_by_staff_ends_those_links_also_once_the_user_is_moved_back(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # A link was refused only while the sign-in email differed from the one it was asked
    # from: staff moving the customer back (their mailbox recovered, or a move undone) within
    # the hour revived the link an intruder holding the session had sent to their own address.
    user = await new_user(runtime, "ana@example.com")
    token = await _ask(runtime, user, "intruder@example.net")
    headers = await staff_headers(runtime)
    for address in ("ana@example.org", "ana@example.com"):
        moved = await client.post(
            f"/api/v1/users/{user.id}/email",
            json={"email": address, "reason": "Lost her mailbox; identity checked by phone."},
            headers=headers,
        )
        assert moved.status_code == 200, moved.text
    with pytest.raises(InvalidConfirmationLink):
        await _confirm(runtime, token)
    async with runtime.db.transaction() as session:
        assert (await session.get(User, user.id)).email == "ana@example.com"  # type: ignore[union-attr]


async def test_a_disable_ends_the_confirmation_links_asked_for_before_it_for_good(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Staff disable a user whose session was taken, and enable them once the owner is
    # reached: the link the intruder asked for, to their own address, must stay dead, as
    # the sessions and reset links the disable ended do.
    user = await new_user(runtime, "ana@example.com")
    token = await _ask(runtime, user, "intruder@example.net")
    headers = await staff_headers(runtime)
    for action in ("disable", "enable"):
        answer = await client.post(
            f"/api/v1/users/{user.id}/{action}", json={"reason": "session taken"}, headers=headers
        )
        assert answer.status_code == 200, answer.text
    with pytest.raises(InvalidConfirmationLink):
        await _confirm(runtime, token)
    async with runtime.db.transaction() as session:
        assert (await session.get(User, user.id)).email == "ana@example.com"  # type: ignore[union-attr]
    # A link asked for after the enable works.
    later = await _ask(runtime, user, "ana@example.org")
    assert (await _confirm(runtime, later)).email == "ana@example.org"


async def test_a_confirmed_change_ends_the_other_links_for_good_even_once_moved_back(
    runtime: Runtime,
) -> None:
    # A link was refused only while the sign-in email differed from the one it was asked
    # from: a user who moved away and back within the hour revived every link asked for
    # before, such as one to an address they had mistyped or no longer hold.
    user = await new_user(runtime, "ana@example.com")
    stale = await _ask(runtime, user, "ana@example.net")
    moved = await _confirm(runtime, await _ask(runtime, user))
    back = await _ask(runtime, moved, "ana@example.com")
    assert (await _confirm(runtime, back)).email == "ana@example.com"
    with pytest.raises(InvalidConfirmationLink):
        await _confirm(runtime, stale)
    async with runtime.db.transaction() as session:
        assert (await session.get(User, user.id)).email == "ana@example.com"  # type: ignore[union-attr]


async def test_a_link_asked_for_with_the_old_password_while_a_reset_commits_does_not_work(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner's reset has written the new password (and its time) and signed everybody
    out, and has yet to commit, when the intruder's session proves the old password and
    asks for their own address. The link was judged by the time it was asked, later than
    the reset's stamp, and so outlived the reset that took the account back."""
    user = await new_user(runtime, "ana@example.com")
    page = await sign_in_to_security_page(client, "ana@example.com", PASSWORD)
    await forgot(client, "ana@example.com")
    await runtime.background.drain()
    (message,) = await mail_to(runtime, "ana@example.com")
    # The reset's transaction stays open once it has written the new password.
    resetting, go = held_after(monkeypatch, recovery_service, "revoke_all_for_user")
    proved = told_after(monkeypatch, self_service, "prove_password")
    owner = asyncio.create_task(reset(client, token_of(link_in(message, "/reset-password"))))
    await resetting.wait()
    intruder = asyncio.create_task(
        post_form(client, page, f"{SECURITY}/email", current_password=PASSWORD, email=INTRUDER)
    )
    await proved.wait()  # the old password proved, with the old hash
    go.set()
    assert (await owner).status_code == 204
    await intruder
    # Mailed if asked before the reset committed; if after, refused as signed out.
    for confirmation in await mail_to(runtime, INTRUDER):
        with pytest.raises(InvalidConfirmationLink):
            await _confirm(runtime, token_of(link_in(confirmation, "/confirm-email")))
    async with runtime.db.transaction() as session:
        assert (await session.get(User, user.id)).email == "ana@example.com"  # type: ignore[union-attr]


async def test_a_link_ends_with_a_password_changed_on_a_clock_behind(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link holds the password it was asked with, by its changed_at. A change stamped
    by a server whose clock is behind the one that set that password has an earlier
    changed_at, and is still another password: the link must not outlive it."""
    user = await new_user(runtime, "ana@example.com")
    token = await _ask(runtime, user)
    async with runtime.db.transaction() as session:
        stored = await accounts_repository.stored_password(session, user.id)
        assert stored is not None
        behind = stored.set_at - timedelta(minutes=1)
        monkeypatch.setattr(accounts_repository, "utcnow", lambda: behind)
        new_hash = await runtime.passwords.hash("Hj4%kT8@mW2!")
        swapped = await accounts_repository.swap_hash(
            session, user.id, stored.hash, new_hash, new_password=True
        )
        assert swapped
    with pytest.raises(InvalidConfirmationLink):
        await _confirm(runtime, token)


@pytest.mark.parametrize(
    "steps",
    [
        [("disable", {}), ("enable", {})],
        [("email", {"email": "ana@example.org"}), ("email", {"email": "ana@example.com"})],
    ],
    ids=["disabled-and-enabled", "moved-and-moved-back"],
)
async def test_staff_on_a_clock_behind_end_the_confirmation_links_asked_for_before(
    client: httpx.AsyncClient,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    steps: list[tuple[str, dict[str, str]]],
) -> None:
    """A link was refused when asked no later than the time staff last ended the user's
    links, two clock readings: a disable or a move on a server whose clock is behind the
    asking one's seemed earlier than the link, which outlived it once the user was enabled
    or moved back."""
    user = await new_user(runtime, "ana@example.com")
    token = await _ask(runtime, user, INTRUDER)
    behind = utcnow() - timedelta(minutes=1)
    monkeypatch.setattr(users_api, "utcnow", lambda: behind)
    headers = await staff_headers(runtime)
    for action, body in steps:
        answer = await client.post(
            f"/api/v1/users/{user.id}/{action}",
            json=body | {"reason": "Session taken; identity checked by phone."},
            headers=headers,
        )
        assert answer.status_code == 200, answer.text
    with pytest.raises(InvalidConfirmationLink):
        await _confirm(runtime, token)
    async with runtime.db.transaction() as session:
        assert (await session.get(User, user.id)).email == "ana@example.com"  # type: ignore[union-attr]


async def _disable_and_enable(runtime: Runtime, user: User) -> None:
    staff = Actor(client_id="support")
    async with runtime.db.write_transaction() as session:
        await disable_user(session, staff, user.id, "Session taken.", utcnow())
    async with runtime.db.write_transaction() as session:
        await enable_user(session, staff, user.id, "Owner reached by phone.")


async def test_an_ask_under_way_when_staff_disable_the_user_sends_nothing(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The intruder's session has proved the password when staff disable the user (ending
    its sessions) and enable them again: the ask must not go on to mail a link that holds
    the count as the disable left it, and so outlives it."""
    user = await new_user(runtime, "ana@example.com")
    page = await sign_in_to_security_page(client, "ana@example.com", PASSWORD)
    proved, go = held_after(monkeypatch, self_service, "prove_password")
    intruder = asyncio.create_task(
        post_form(client, page, f"{SECURITY}/email", current_password=PASSWORD, email=INTRUDER)
    )
    await proved.wait()
    await _disable_and_enable(runtime, user)
    go.set()
    answer = await intruder
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?flow=")
    assert await mail_to(runtime, INTRUDER) == []


async def test_a_disable_started_while_a_link_is_stored_ends_it(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ask has read the user's count when staff disable the user: the disable waits for
    the link to be stored, then raises the count, and the link is refused once the user is
    enabled again."""
    user = await new_user(runtime, "ana@example.com")
    read, go = held_after(monkeypatch, email_change_repository, "asking_as")
    asking = asyncio.create_task(_ask(runtime, user, INTRUDER))
    await read.wait()
    staff = asyncio.create_task(_disable_and_enable(runtime, user))
    await asyncio.sleep(0.2)
    assert not staff.done()  # it waits for the ask
    go.set()
    token = await asking
    await staff
    with pytest.raises(InvalidConfirmationLink):
        await _confirm(runtime, token)
    async with runtime.db.transaction() as session:
        assert (await session.get(User, user.id)).email == "ana@example.com"  # type: ignore[union-attr]


async def test_a_link_asked_for_before_the_upgrade_is_refused(runtime: Runtime) -> None:
    """A link stored before the count existed holds none: it is refused (it lives an hour)."""
    user = await new_user(runtime, "ana@example.com")
    token = await _ask(runtime, user)
    key = "email-change:" + digest(token)
    pending = json.loads(await runtime.store.get(key) or b"{}")
    del pending["epoch"]
    await runtime.store.set(key, json.dumps(pending).encode(), 3600)
    with pytest.raises(InvalidConfirmationLink):
        await _confirm(runtime, token)


async def test_a_confirmed_move_and_an_invitation_to_the_old_address_accepted_both_complete(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Accepting claims the invitation, then adds the membership, whose foreign key waits for
    # a change of the user's email under way; the confirmation, holding the user's row, then
    # cancels the invitations to the address left and waited for the claim: PostgreSQL
    # aborted one of the two. Each is held at its point (the accept just after its claim,
    # the confirmation just before it cancels) to meet the other there.
    owner, invitee = await make_user(runtime), await new_user(runtime, "ana@example.com")
    account = await make_account(runtime, owner)
    invited = await client.post(
        f"/api/v1/accounts/{account.id}/invitations",
        json={"email": invitee.email},
        headers=await user_headers(runtime, owner),
    )
    assert invited.status_code == 201, invited.text
    (invitation,) = await mail_to(runtime, invitee.email)
    match = re.search(r"/invitations/accept\?token=([A-Za-z0-9_-]+)", invitation.text_body)
    assert match
    confirmation = await _ask(runtime, invitee)
    claimed, moved, go_on = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def claim_then_wait(*args: Any) -> None:
        await real_claim(*args)
        claimed.set()
        await go_on.wait()

    async def wait_then_cancel(*args: Any) -> None:
        moved.set()
        await go_on.wait()
        await real_cancel(*args)

    real_claim, real_cancel = invitations._claim, email_change.end_for_left_address
    monkeypatch.setattr(invitations, "_claim", claim_then_wait)
    monkeypatch.setattr(email_change, "end_for_left_address", wait_then_cancel)

    async def accept() -> None:
        async with runtime.db.transaction() as session:
            await invitations.accept_invitation_as_existing_user(session, match[1], invitee)

    accepting = asyncio.create_task(accept())
    await claimed.wait()
    confirming = asyncio.create_task(_confirm(runtime, confirmation))
    # Held before its cancel, or waiting for the accept on the user's row.
    at_cancel = asyncio.create_task(moved.wait())
    waiting = asyncio.create_task(until_waiting_or_done(runtime, confirming))
    await asyncio.wait({at_cancel, waiting}, return_when=asyncio.FIRST_COMPLETED)
    at_cancel.cancel()
    waiting.cancel()
    go_on.set()
    await asyncio.gather(accepting, confirming)
    async with runtime.db.transaction() as session:
        assert await permissions_repository.get_membership(session, account.id, invitee.id)
        moved_user = await permissions_repository.get_user(session, invitee.id)
    assert moved_user is not None and moved_user.email == NEW
