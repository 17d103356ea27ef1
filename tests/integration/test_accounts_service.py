"""Creating users, authenticating them and hashing passwords, against a real database."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import select

from identity.accounts import repository
from identity.accounts.models import PasswordCredential, User
from identity.accounts.passwords import Passwords
from identity.accounts.service import authenticate, create_user, hash_password, prepare_user
from identity.errors import Conflict, InvalidInput, PolicyViolation
from identity.runtime import Runtime

STRONG = "Kx7#mQ9!vB2$"


async def _create(runtime: Runtime, email: str = "ana@example.com", name: str = "") -> User:
    new = await prepare_user(runtime.passwords, email=email, password=STRONG, name=name)
    async with runtime.db.transaction() as session:
        return await create_user(session, new)


async def test_created_user_is_stored_normalised_and_authenticates(runtime: Runtime) -> None:
    user = await _create(runtime, "  Maria@Example.COM ", name="María")
    assert user.email == "maria@example.com"
    assert user.email_verified and not user.is_admin
    proved = await authenticate(runtime.db, runtime.passwords, "MARIA@example.com", STRONG)
    assert proved is not None and proved.user_id == user.id


async def test_email_is_taken_whatever_its_case(runtime: Runtime) -> None:
    await _create(runtime)
    with pytest.raises(Conflict):
        await _create(runtime, "ANA@example.com")


async def test_weak_password_is_a_policy_violation_listing_reasons(runtime: Runtime) -> None:
    with pytest.raises(PolicyViolation) as error:
        await prepare_user(runtime.passwords, email="ana@example.com", password="Verano2025#")
    assert [r["id"] for r in error.value.extra["reasons"]] == ["password.dictionary_word"]
    assert set(error.value.extra["reasons"][0]["messages"]) == {"en", "es"}


async def test_invalid_email_is_invalid_input(runtime: Runtime) -> None:
    with pytest.raises(InvalidInput, match="exactly one @"):
        await prepare_user(runtime.passwords, email="ana.example.com", password=STRONG)


@pytest.mark.parametrize(
    ("email", "password"),
    [("ana@example.com", "wrong#Pass99"), ("nobody@example.com", STRONG), ("not an email", STRONG)],
)
async def test_wrong_password_and_unknown_email_both_fail(
    runtime: Runtime, email: str, password: str
) -> None:
    await _create(runtime)
    assert await authenticate(runtime.db, runtime.passwords, email, password) is None


async def test_disabled_user_does_not_authenticate(runtime: Runtime) -> None:
    new = await prepare_user(runtime.passwords, email="ana@example.com", password=STRONG)
    async with runtime.db.transaction() as session:
        user = await create_user(session, new)
        user.disabled = True
    assert await authenticate(runtime.db, runtime.passwords, "ana@example.com", STRONG) is None


async def _credential(runtime: Runtime) -> PasswordCredential:
    async with runtime.db.transaction() as session:
        return (await session.scalars(select(PasswordCredential))).one()


async def test_login_upgrades_a_hash_made_with_old_parameters(runtime: Runtime) -> None:
    await _create(runtime)
    before = await _credential(runtime)
    policy = runtime.passwords.policy
    stronger_policy = dataclasses.replace(
        policy, argon2=dataclasses.replace(policy.argon2, memory_kib=128)
    )
    stronger = Passwords.from_policy(stronger_policy, "Identity")
    assert stronger.needs_rehash(before.hash)

    assert await authenticate(runtime.db, stronger, "ana@example.com", STRONG) is not None
    after = await _credential(runtime)
    assert after.hash != before.hash and not stronger.needs_rehash(after.hash)
    assert after.changed_at == before.changed_at  # same password, only stored anew
    assert await authenticate(runtime.db, stronger, "ana@example.com", STRONG) is not None


async def test_wrong_password_leaves_an_old_hash_alone(runtime: Runtime) -> None:
    await _create(runtime)
    before = await _credential(runtime)
    policy = runtime.passwords.policy
    stronger = Passwords.from_policy(
        dataclasses.replace(policy, argon2=dataclasses.replace(policy.argon2, memory_kib=128)),
        "Identity",
    )
    assert await authenticate(runtime.db, stronger, "ana@example.com", "nope#Nope99") is None
    assert (await _credential(runtime)).hash == before.hash


async def test_a_password_is_checked_against_the_users_details(runtime: Runtime) -> None:
    details = {"email": "ana@example.com", "name": "Ana Qorvex"}
    with pytest.raises(PolicyViolation) as error:
        await hash_password(runtime.passwords, "Qorvex#Kz97w", **details)
    assert [r["id"] for r in error.value.extra["reasons"]] == ["password.personal_info"]
    stored = await hash_password(runtime.passwords, "Zq#8vK!m2Rx", **details)
    assert await runtime.passwords.verify(stored, "Zq#8vK!m2Rx")


async def test_a_password_changed_on_a_clock_behind_ends_what_the_old_one_proved(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sign-in's proof is the password set at its changed_at. A change stamped by a server
    # whose clock is behind the one that set the old password has an earlier changed_at:
    # it is still another password, and the old one's proof must not open a session.
    user = await _create(runtime)
    proved = await authenticate(runtime.db, runtime.passwords, user.email, STRONG)
    assert proved is not None
    behind = proved.password_set_at - timedelta(minutes=1)
    monkeypatch.setattr(repository, "utcnow", lambda: behind)
    new_hash = await runtime.passwords.hash("Hj4%kT8@mW2!")
    async with runtime.db.transaction() as session:
        stored = await repository.stored_password(session, user.id)
        assert stored is not None
        assert await repository.swap_hash(
            session, user.id, stored.hash, new_hash, new_password=True
        )
    async with runtime.db.transaction() as session:
        with pytest.raises(repository.PasswordChanged):
            await repository.check_password_unchanged_since(
                session, user.id, proved.password_set_at
            )
