"""Creating users, authenticating them and setting passwords, against a real database."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from identity.accounts.models import PasswordCredential, User
from identity.accounts.passwords import Passwords
from identity.accounts.service import authenticate, create_user, set_password
from identity.errors import Conflict, InvalidInput, PolicyViolation
from identity.runtime import Runtime

STRONG = "Kx7#mQ9!vB2$"


async def test_created_user_is_stored_normalised_and_authenticates(runtime: Runtime) -> None:
    async with runtime.db.transaction() as session:
        user = await create_user(
            session, runtime.passwords, email="  Maria@Example.COM ", password=STRONG, name="María"
        )
    assert user.email == "maria@example.com"
    assert user.email_verified and not user.is_admin
    found = await authenticate(runtime.db, runtime.passwords, "MARIA@example.com", STRONG)
    assert found is not None and found.id == user.id


async def test_email_is_taken_whatever_its_case(runtime: Runtime) -> None:
    async with runtime.db.transaction() as session:
        await create_user(session, runtime.passwords, email="ana@example.com", password=STRONG)
    with pytest.raises(Conflict):
        async with runtime.db.transaction() as session:
            await create_user(session, runtime.passwords, email="ANA@example.com", password=STRONG)


async def test_weak_password_is_a_policy_violation_listing_reasons(runtime: Runtime) -> None:
    with pytest.raises(PolicyViolation) as error:
        async with runtime.db.transaction() as session:
            await create_user(
                session, runtime.passwords, email="ana@example.com", password="Verano2025#"
            )
    assert [r["id"] for r in error.value.extra["reasons"]] == ["password.dictionary_word"]
    assert set(error.value.extra["reasons"][0]["messages"]) == {"en", "es"}


async def test_invalid_email_is_invalid_input(runtime: Runtime) -> None:
    with pytest.raises(InvalidInput, match="exactly one @"):
        async with runtime.db.transaction() as session:
            await create_user(session, runtime.passwords, email="ana.example.com", password=STRONG)


@pytest.mark.parametrize(
    ("email", "password"),
    [("ana@example.com", "wrong#Pass99"), ("nobody@example.com", STRONG), ("not an email", STRONG)],
)
async def test_wrong_password_and_unknown_email_both_fail(
    runtime: Runtime, email: str, password: str
) -> None:
    async with runtime.db.transaction() as session:
        await create_user(session, runtime.passwords, email="ana@example.com", password=STRONG)
    assert await authenticate(runtime.db, runtime.passwords, email, password) is None


async def test_disabled_user_does_not_authenticate(runtime: Runtime) -> None:
    async with runtime.db.transaction() as session:
        user = await create_user(
            session, runtime.passwords, email="ana@example.com", password=STRONG
        )
        user.disabled = True
    assert await authenticate(runtime.db, runtime.passwords, "ana@example.com", STRONG) is None


async def _credential(runtime: Runtime) -> PasswordCredential:
    async with runtime.db.transaction() as session:
        return (await session.scalars(select(PasswordCredential))).one()


async def test_login_upgrades_a_hash_made_with_old_parameters(runtime: Runtime) -> None:
    async with runtime.db.transaction() as session:
        await create_user(session, runtime.passwords, email="ana@example.com", password=STRONG)
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
    async with runtime.db.transaction() as session:
        await create_user(session, runtime.passwords, email="ana@example.com", password=STRONG)
    before = await _credential(runtime)
    policy = runtime.passwords.policy
    stronger = Passwords.from_policy(
        dataclasses.replace(policy, argon2=dataclasses.replace(policy.argon2, memory_kib=128)),
        "Identity",
    )
    assert await authenticate(runtime.db, stronger, "ana@example.com", "nope#Nope99") is None
    assert (await _credential(runtime)).hash == before.hash


async def test_set_password_checks_the_policy_and_records_the_change(runtime: Runtime) -> None:
    async with runtime.db.transaction() as session:
        user = await create_user(
            session, runtime.passwords, email="ana@example.com", password=STRONG, name="Ana Qorvex"
        )
    before = await _credential(runtime)
    with pytest.raises(PolicyViolation) as error:
        async with runtime.db.transaction() as session:
            await set_password(session, runtime.passwords, user, "Qorvex#Kz97w")
    assert [r["id"] for r in error.value.extra["reasons"]] == ["password.personal_info"]

    async with runtime.db.transaction() as session:
        await set_password(session, runtime.passwords, user, "Zq#8vK!m2Rx")
    after = await _credential(runtime)
    assert after.changed_at > before.changed_at
    async with runtime.db.transaction() as session:
        assert await authenticate(runtime.db, runtime.passwords, user.email, STRONG) is None
        assert await authenticate(runtime.db, runtime.passwords, user.email, "Zq#8vK!m2Rx")
        assert (await session.get(User, user.id)) is not None


async def test_no_database_connection_is_held_while_argon2_runs(runtime: Runtime) -> None:
    async with runtime.db.transaction() as session:
        await create_user(session, runtime.passwords, email="ana@example.com", password=STRONG)
    held_during_verify: list[int] = []

    class Watched(Passwords):
        async def verify(self, stored_hash: str | None, password: str) -> bool:
            held_during_verify.append(runtime.db.engine.pool.checkedout())
            return await super().verify(stored_hash, password)

    watched = Watched(*(getattr(runtime.passwords, f.name) for f in dataclasses.fields(Passwords)))
    assert await authenticate(runtime.db, watched, "ana@example.com", STRONG) is not None
    assert await authenticate(runtime.db, watched, "nobody@example.com", STRONG) is None
    assert held_during_verify == [0, 0]
