"""No request holds a database transaction open while argon2 hashes or verifies a password.

Each path that hashes or verifies runs here with ``Passwords.hash`` and ``Passwords.verify``
wrapped to note, as argon2 starts, how many ORM transactions are open (even one that has
sent no statement yet: it may hold the SQLite writers' queue) and how many connections are
checked out of the pools. Every count must be 0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.pool import Pool

from identity import commands
from identity.accounts import self_service
from identity.accounts.models import User
from identity.accounts.passwords import Passwords
from identity.accounts.service import authenticate, create_user, prepare_user
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.mfa.service import InvalidPassword, SecondFactor
from identity.recovery.service import complete_reset
from identity.runtime import Runtime
from identity.sessions import repository as sessions
from tests.browser import form_fields
from tests.integration.account_helpers import invite_and_read_link, make_account, make_user
from tests.integration.page_helpers import (
    change_password,
    followed,
    notice,
    post_form,
    sign_in_to_security_page,
)
from tests.integration.recovery_helpers import (
    NEW_PASSWORD,
    PASSWORD,
    change_password_elsewhere,
    change_password_from,
    enrolled_user,
    new_user,
    reset,
    stored_reset_token,
)

ANA = "ana@example.com"


class InUse:
    """ORM transactions open and pooled connections checked out, in the whole process (the
    runtime's engines, or one a command opens), counted from SQLAlchemy's events."""

    def __init__(self) -> None:
        self.count = 0
        self._listeners: list[tuple[Any, str, Callable[..., None]]] = [
            (Pool, "checkout", self._taken),
            (Pool, "checkin", self._returned),
            (Session, "after_transaction_create", self._begun),
            (Session, "after_transaction_end", self._ended),
        ]

    def __enter__(self) -> InUse:
        for target, name, listener in self._listeners:
            event.listen(target, name, listener)
        return self

    def __exit__(self, *_: object) -> None:
        for target, name, listener in self._listeners:
            event.remove(target, name, listener)

    def _taken(self, *_: object) -> None:
        self.count += 1

    def _returned(self, *_: object) -> None:
        self.count -= 1

    def _begun(self, _: Session, transaction: SessionTransaction) -> None:
        self.count += transaction.parent is None  # savepoints live inside one

    def _ended(self, _: Session, transaction: SessionTransaction) -> None:
        self.count -= transaction.parent is None


@pytest.fixture
async def held(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[int]]:
    """What was in use (see ``InUse``) each time argon2 started.

    The outbox workers are stopped first: their polls use the database at any moment.
    """
    await runtime.mail.stop()
    await runtime.webhooks.stop()
    assert runtime.db.engine.pool.checkedout() == 0  # the count starts from nothing in use
    noted: list[int] = []
    with InUse() as in_use:

        def noting(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def watched(self: Passwords, *args: Any) -> Any:
                noted.append(in_use.count)
                return await method(self, *args)

            return watched

        for name in ("hash", "verify"):
            monkeypatch.setattr(Passwords, name, noting(getattr(Passwords, name)))
        yield noted


async def test_sign_in(runtime: Runtime, held: list[int]) -> None:
    await new_user(runtime, ANA)
    held.clear()
    assert await authenticate(runtime.db, runtime.passwords, ANA, PASSWORD) is not None
    assert await authenticate(runtime.db, runtime.passwords, "nobody@example.com", PASSWORD) is None
    assert held == [0, 0]


async def test_creating_a_user(runtime: Runtime, held: list[int]) -> None:
    new = await prepare_user(runtime.passwords, email=ANA, password=PASSWORD)
    async with runtime.db.transaction() as session:
        await create_user(session, new)
    assert held == [0]


async def test_the_users_create_command(runtime: Runtime, held: list[int]) -> None:
    shown: list[dict[str, Any]] = []
    user = await commands.create_user(
        runtime.settings, ANA, PASSWORD, "Ana", is_admin=True, show=shown.append
    )
    assert user.is_admin and shown == [{"id": str(user.id), "email": ANA}]
    assert held == [0]


async def test_signing_up_from_an_invitation(
    client: httpx.AsyncClient, runtime: Runtime, held: list[int]
) -> None:
    owner = await make_user(runtime, email="owner@example.com")
    token = await invite_and_read_link(runtime, await make_account(runtime, owner, "Acme"), ANA)
    page = await client.get("/invitations/accept", params={"token": token})
    fields = {"name": "Ana", "password": PASSWORD, "password_confirm": PASSWORD}
    done = await client.post("/invitations/accept", data=form_fields(page.text) | fields)
    assert done.status_code == 200, done.text
    assert held == [0]


async def test_resetting_by_the_api(
    client: httpx.AsyncClient, runtime: Runtime, held: list[int]
) -> None:
    token = await stored_reset_token(runtime, await new_user(runtime, ANA))
    held.clear()
    assert (await reset(client, token)).status_code == 204
    assert held == [0]


async def test_resetting_on_the_page(
    client: httpx.AsyncClient, runtime: Runtime, held: list[int]
) -> None:
    token = await stored_reset_token(runtime, await new_user(runtime, ANA))
    page = await client.get("/reset-password", params={"token": token})
    held.clear()
    done = await post_form(
        client, page, "/reset-password", password=NEW_PASSWORD, password_confirm=NEW_PASSWORD
    )
    assert done.status_code == 200, done.text
    assert held == [0]


async def test_changing_the_password_on_the_security_page(
    client: httpx.AsyncClient, runtime: Runtime, held: list[int]
) -> None:
    await new_user(runtime, ANA)
    page = await sign_in_to_security_page(client, ANA, PASSWORD)
    held.clear()
    changed = await followed(client, await change_password(client, page, PASSWORD, NEW_PASSWORD))
    assert notice(changed).startswith("Your password was changed."), changed.text
    assert held == [0, 0]  # the current password verified, the new one hashed


async def test_turning_two_step_verification_off(runtime: Runtime, held: list[int]) -> None:
    user, generator, _ = await enrolled_user(runtime)
    held.clear()
    await SecondFactor.from_runtime(runtime).disable(
        runtime.db, runtime.passwords, Actor(user.id), user, PASSWORD, generator.now(), utcnow()
    )
    assert held == [0]


async def _another_tab_changes(runtime: Runtime, user: User) -> None:
    """The password changed in another tab of the browser a change is made from (the one
    browser ``user`` is signed in with): that browser stays signed in."""
    async with runtime.db.transaction() as session:
        [browser] = await sessions.live_for_user(session, user.id, utcnow())
    await change_password_from(runtime, user, browser.id, PASSWORD, NEW_PASSWORD)


async def _a_reset_lands(runtime: Runtime, user: User) -> None:
    """A reset by email, which signs every browser out."""
    await complete_reset(
        runtime.db,
        runtime.store,
        runtime.passwords,
        await stored_reset_token(runtime, user),
        NEW_PASSWORD,
        NEW_PASSWORD,
        origin=Actor(),
        product_name="Identity",
        locale="en",
    )


@pytest.mark.parametrize(
    ("meanwhile", "refused"),
    [
        (_another_tab_changes, InvalidPassword),
        (_a_reset_lands, self_service.SignedOutMeanwhile),
    ],
)
async def test_a_password_changed_while_a_change_hashes_is_not_overwritten(
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    meanwhile: Callable[[Runtime, User], Awaitable[None]],
    refused: type[Exception],
) -> None:
    """With no transaction held across argon2, another request can change the password
    meanwhile: the change then stores nothing (its hash replaces only the one it verified)
    and says the current password is not correct any more, or, when that request signed
    its browser out, sends it to sign in."""
    user = await new_user(runtime, ANA)
    real_hash = Passwords.hash

    async def hash_while_another_change_lands(self: Passwords, password: str) -> str:
        monkeypatch.setattr(Passwords, "hash", real_hash)  # the other change hashes too
        await meanwhile(runtime, user)
        return await real_hash(self, password)

    monkeypatch.setattr(Passwords, "hash", hash_while_another_change_lands)
    with pytest.raises(refused):
        await change_password_elsewhere(runtime, user, new="Hj4%kT8@mW2!")
    assert await authenticate(runtime.db, runtime.passwords, ANA, NEW_PASSWORD) is not None
    assert await authenticate(runtime.db, runtime.passwords, ANA, "Hj4%kT8@mW2!") is None
