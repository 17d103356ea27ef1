"""Key rotation: the new key signs, old keys stay published, old tokens still verify, and
another process sees the change within the keyset refresh interval.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from datetime import timedelta
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import text, update

from identity.app import create_app
from identity.cli import main
from identity.clock import utcnow
from identity.commands import StartupError, prepare, retire_signing_key, rotate_signing_key
from identity.crypto import Encryptor
from identity.db import migrate
from identity.db.engine import Database
from identity.errors import InvalidInput
from identity.keys.models import SigningKey
from identity.keys.repository import FIRST_KEY_LOCK, active_keys, hold_first_key
from identity.keys.service import RELYING_PARTY_REFETCH, create_key, ensure_key, retire_key
from identity.runtime import Runtime
from identity.settings import Settings
from tests.backends import TEST_DATABASE_URL, TEST_SECRET_KEY
from tests.conftest import serving
from tests.integration.oauth_helpers import (
    make_client,
    service_client,
    service_token,
    verify_with_jwks,
)


def _quiet(_: dict[str, Any]) -> None:
    """What the commands show: these tests read what they return instead."""


async def client_token(http: httpx.AsyncClient, runtime: Runtime) -> str:
    return await service_token(http, await service_client(runtime))


async def _rotated_seconds_ago(runtime: Runtime, settings: Settings, seconds: float) -> str:
    """Rotate, as if that was ``seconds`` ago and the first key long before it; the new kid."""
    new_kid = await rotate_signing_key(settings, "ES256", show=_quiet)
    rotated_at = utcnow() - timedelta(seconds=seconds)
    async with runtime.db.transaction() as session:
        await session.execute(update(SigningKey).values(created_at=rotated_at - timedelta(days=1)))
        await session.execute(
            update(SigningKey).where(SigningKey.kid == new_kid).values(created_at=rotated_at)
        )
    await runtime.keyset(refresh=True)
    return new_kid


async def test_rotation_makes_the_new_key_current_and_keeps_the_old_one_published(
    client: httpx.AsyncClient, runtime: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_token = await client_token(client, runtime)
    old_jwks = await client.get("/jwks.json")
    old_kid = (await verify_with_jwks(client, old_token)).header["kid"]

    # This process rereads keys only every IDENTITY_KEYS_REFRESH: let that time pass, and
    # relying parties' time to fetch the new key.
    monkeypatch.setattr(runtime, "settings", dataclasses.replace(runtime.settings, keys_refresh=0))
    new_kid = await _rotated_seconds_ago(runtime, settings, RELYING_PARTY_REFETCH.total_seconds())

    new_jwks = await client.get("/jwks.json", headers={"If-None-Match": old_jwks.headers["etag"]})
    assert new_jwks.status_code == 200
    assert {k["kid"] for k in new_jwks.json()["keys"]} == {old_kid, new_kid}
    new_token = await client_token(client, runtime)
    verified_new = await verify_with_jwks(client, new_token)
    assert verified_new.header == {"typ": "at+jwt", "alg": "ES256", "kid": new_kid}
    assert (await verify_with_jwks(client, old_token)).header["kid"] == old_kid
    introspected = await client.post(
        "/introspect", data={"token": old_token}, headers=(await make_client(runtime)).basic
    )
    assert introspected.json()["active"] is True


async def test_rotation_waits_for_the_refresh_interval_in_a_running_process(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    before = (await client.get("/jwks.json")).json()

    await rotate_signing_key(settings, "RS256", show=_quiet)

    assert (await client.get("/jwks.json")).json() == before


async def test_a_rotated_key_signs_only_once_every_process_publishes_it(
    client: httpx.AsyncClient, runtime: Runtime, settings: Settings
) -> None:
    """Two processes on one database: the first loaded its keys before the rotation and
    rereads them only after IDENTITY_KEYS_REFRESH; the second starts after it. A token the
    second signs must verify with the first's JWKS and at its introspection meanwhile."""
    old_kid = (await verify_with_jwks(client, await client_token(client, runtime))).header["kid"]
    new_kid = await rotate_signing_key(settings, "RS256", show=_quiet)
    second_app = create_app(settings)
    async with serving(second_app) as second:
        token = await client_token(second, second_app.state.runtime)
        assert new_kid in {k["kid"] for k in (await second.get("/jwks.json")).json()["keys"]}

    assert (await verify_with_jwks(client, token)).header["kid"] == old_kid
    introspected = await client.post(
        "/introspect", data={"token": token}, headers=(await make_client(runtime)).basic
    )
    assert introspected.json()["active"] is True


async def test_a_rotated_key_signs_once_relying_parties_may_have_fetched_it(
    client: httpx.AsyncClient, runtime: Runtime, settings: Settings
) -> None:
    waited = settings.keys_refresh + RELYING_PARTY_REFETCH.total_seconds() + 1
    new_kid = await _rotated_seconds_ago(runtime, settings, waited)

    token = await client_token(client, runtime)

    assert (await verify_with_jwks(client, token)).header["kid"] == new_kid


async def test_a_rotated_key_does_not_sign_as_soon_as_every_process_publishes_it(
    client: httpx.AsyncClient, runtime: Runtime, settings: Settings
) -> None:
    # A relying party that fetched the JWKS a moment before the last process published the
    # key holds a set without it, and fetches again on an unknown kid only after a cooldown
    # (the kit: 10 s): a key signing right then had its tokens refused that long.
    new_kid = await _rotated_seconds_ago(runtime, settings, settings.keys_refresh + 1)

    token = await client_token(client, runtime)

    assert (await verify_with_jwks(client, token)).header["kid"] != new_kid


async def test_a_reread_opens_only_the_keys_it_does_not_hold_and_off_the_event_loop(
    runtime: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening an RSA private key checks it (~30 ms of CPU): done for every key at every
    reread, on the event loop, it stalled each process every IDENTITY_KEYS_REFRESH."""
    held = await runtime.keyset()
    opened_on: list[tuple[str, threading.Thread]] = []
    for key_type in (RSAKey, ECKey):
        import_key = key_type.import_key

        def recorded(value: Any, *args: Any, _import: Any = import_key, **kwargs: Any) -> Any:
            key = _import(value, *args, **kwargs)
            opened_on.append((key.kid, threading.current_thread()))
            return key

        monkeypatch.setattr(key_type, "import_key", recorded)

    reread = await runtime.keyset(refresh=True)
    assert reread is not held and reread.by_kid == held.by_kid
    assert opened_on == []

    new_kid = await rotate_signing_key(settings, "RS256", show=_quiet)
    opened_on.clear()  # the command checks the stored keys open with the secret key
    rotated = await runtime.keyset(refresh=True)

    assert all(rotated.by_kid[kid] is key for kid, key in held.by_kid.items())
    assert [kid for kid, _ in opened_on] == [new_kid]
    assert opened_on[0][1] is not threading.main_thread()


def test_keys_rotate_command_prints_the_new_kid(
    settings: Settings,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["migrate"]) == 0
    capsys.readouterr()

    assert main(["keys", "rotate", "--alg", "ES256"]) == 0

    out = capsys.readouterr().out
    assert '"alg": "ES256"' in out and '"kid": ' in out


async def test_retired_key_leaves_the_jwks_and_its_tokens_stop_verifying(
    client: httpx.AsyncClient, runtime: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_token = await client_token(client, runtime)
    old_kid = (await verify_with_jwks(client, old_token)).header["kid"]
    await rotate_signing_key(settings, "RS256", show=_quiet)

    await retire_signing_key(settings, old_kid, show=_quiet)
    monkeypatch.setattr(runtime, "settings", dataclasses.replace(runtime.settings, keys_refresh=0))

    assert old_kid not in {k["kid"] for k in (await client.get("/jwks.json")).json()["keys"]}
    introspected = await client.post(
        "/introspect", data={"token": old_token}, headers=(await make_client(runtime)).basic
    )
    assert introspected.json() == {"active": False}


async def test_the_last_active_key_cannot_be_retired(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    only_kid = (await client.get("/jwks.json")).json()["keys"][0]["kid"]

    with pytest.raises(StartupError, match="only active signing key"):
        await retire_signing_key(settings, only_kid, show=_quiet)

    with pytest.raises(StartupError, match="no active signing key"):
        await retire_signing_key(settings, "no-such-kid", show=_quiet)


def test_keys_retire_command_reports_an_unknown_kid_in_one_line(
    settings: Settings,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    main(["migrate"])
    capsys.readouterr()

    with pytest.raises(SystemExit) as exit_info:
        main(["keys", "retire", "--kid", "nope"])

    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == (
        "identity: There is no active signing key with kid 'nope'."
    )


async def test_retiring_the_last_two_keys_at_once_keeps_one(
    client: httpx.AsyncClient, runtime: Runtime, settings: Settings
) -> None:
    """Two operators (two processes) retire one key each of the last two: one is refused."""
    first = (await client.get("/jwks.json")).json()["keys"][0]["kid"]
    second = await rotate_signing_key(settings, "RS256", show=_quiet)
    processes = [Database.from_settings(settings) for _ in range(2)]
    both_started = asyncio.Barrier(2)

    async def retire(db: Database, kid: str) -> None:
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
            await both_started.wait()
            await retire_key(session, kid)

    try:
        results = await asyncio.gather(
            retire(processes[0], first), retire(processes[1], second), return_exceptions=True
        )
    finally:
        await asyncio.gather(*(db.dispose() for db in processes))

    assert sum(isinstance(r, InvalidInput) for r in results) == 1, results
    assert await runtime.keyset(refresh=True)


async def test_processes_starting_at_once_on_an_empty_database_make_one_first_key(
    database: Settings,
) -> None:
    """Several `identity serve` started together (behind one load balancer) each found no key
    and each made one: with clocks apart, one process signed with a key another did not
    publish until its next reread."""
    encryptor = Encryptor(TEST_SECRET_KEY, "signing-keys")
    processes = [Database.from_settings(database) for _ in range(2)]
    both_started = asyncio.Barrier(2)

    async def start(db: Database) -> None:
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
            await both_started.wait()
            await ensure_key(session, encryptor, "ES256")

    try:
        await asyncio.gather(*(start(db) for db in processes))
        async with processes[0].transaction() as session:
            keys = await active_keys(session)
    finally:
        await asyncio.gather(*(db.dispose() for db in processes))
    assert len(keys) == 1


async def _waits_for_first_key_lock(db: Database) -> bool:
    async with db.engine.connect() as connection:
        waiting = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND objid = :key"
            ),
            {"key": FIRST_KEY_LOCK},
        )
    return bool(waiting)


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="watches PostgreSQL's locks (.ci/run)")
async def test_a_server_whose_secret_key_differs_is_refused_though_it_started_with_the_first(
    env: dict[str, str], settings: Settings
) -> None:
    """Two machines started together on an empty database, one without the shared
    IDENTITY_SECRET_KEY: it checked that the keys open with its secret while there were none,
    then found the other's first key and served it, answering 500 to every token request."""
    await asyncio.to_thread(migrate.upgrade, settings)
    other = Settings.from_env(env | {"IDENTITY_SECRET_KEY": "another-secret-key-" + "x" * 32})
    db = Database.from_settings(settings)
    try:
        async with db.transaction() as session:
            await hold_first_key(session)
            await create_key(session, Encryptor(TEST_SECRET_KEY, "signing-keys"), "ES256")
            racing = asyncio.ensure_future(asyncio.to_thread(prepare, other))
            while not await _waits_for_first_key_lock(db):
                assert not racing.done(), racing.result()
                await asyncio.sleep(0.05)
        with pytest.raises(StartupError, match="do not open with this secret key"):
            await racing
    finally:
        await db.dispose()
