"""Liveness, readiness, and what requests see while the database or Redis is away."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url

from identity.app import create_app
from identity.db import migrate
from identity.db.engine import create_engine
from identity.settings import Settings
from tests.backends import TEST_DATABASE_URL, TEST_REDIS_URL
from tests.conftest import add_signing_key, create_schema, serving
from tests.integration.account_helpers import staff_headers
from tests.integration.oauth_helpers import make_user, service_client, service_token
from tests.tcp_proxy import TcpProxy


async def test_live_answers_without_touching_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_reports_each_dependency(client: httpx.AsyncClient, settings: Settings) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    expected = {"database": "ok"} | ({"redis": "ok"} if settings.redis_url else {})
    assert response.json()["checks"] == expected


@pytest.fixture
async def proxied_postgres(settings: Settings) -> AsyncIterator[tuple[Settings, TcpProxy]]:
    url = make_url(settings.database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied = dataclasses.replace(
        settings, database_url=url.set(port=proxy.port).render_as_string(hide_password=False)
    )
    await create_schema(proxied)
    yield proxied, proxy
    await proxy.cut()


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="needs the PostgreSQL pass (.ci/run)")
async def test_database_outage_gives_503_and_recovers_without_restart(
    proxied_postgres: tuple[Settings, TcpProxy],
) -> None:
    settings, proxy = proxied_postgres
    async with serving(create_app(settings)) as client:
        assert (await client.get("/health/ready")).status_code == 200
        await proxy.cut()
        down = await client.get("/health/ready")
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert down.json()["checks"]["database"] == "unavailable"
        assert "database" in down.json()["detail"]
        await proxy.restore()
        assert (await client.get("/health/ready")).status_code == 200


@pytest.mark.skipif(TEST_REDIS_URL is None, reason="needs the Redis pass (.ci/run)")
async def test_redis_outage_shows_as_degraded_readiness_and_recovers(settings: Settings) -> None:
    from urllib.parse import urlsplit

    target = urlsplit(settings.redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    proxied = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{proxy.port}/0")
    await create_schema(proxied)
    try:
        async with serving(create_app(proxied)) as client:
            assert (await client.get("/health/ready")).json()["checks"]["redis"] == "ok"
            await proxy.cut()
            down = await client.get("/health/ready")
            # Degraded but serving: sign-in state and rate limits fall back to memory.
            assert down.status_code == 200
            assert down.json() == {
                "status": "degraded",
                "checks": {"database": "ok", "redis": "unavailable"},
            }
            await proxy.restore()
            assert (await client.get("/health/ready")).json()["status"] == "ready"
    finally:
        await proxy.cut()


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="needs the PostgreSQL pass (.ci/run)")
async def test_introspection_answers_503_while_the_database_is_away_and_recovers(
    proxied_postgres: tuple[Settings, TcpProxy],
) -> None:
    # Introspection's deny-list lookup goes through psycopg's own pool (identity.db.
    # lone_reads), not SQLAlchemy's: its outage must look the same, and heal the same.
    settings, proxy = proxied_postgres
    app = create_app(settings)
    async with serving(app) as client:
        await add_signing_key(app.state.runtime)
        caller = await service_client(app.state.runtime)
        introspection = {"token": await service_token(client, caller)}
        live = await client.post("/introspect", data=introspection, headers=caller.basic)
        assert live.json()["active"] is True
        await proxy.cut()
        down = await client.post("/introspect", data=introspection, headers=caller.basic)
        assert down.status_code == 503
        assert down.json()["error"] == "temporarily_unavailable"  # an OAuth endpoint's error
        await proxy.restore()
        again = await client.post("/introspect", data=introspection, headers=caller.basic)
        assert again.status_code == 200 and again.json()["active"] is True


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="needs the PostgreSQL pass (.ci/run)")
async def test_a_write_on_a_demoted_primary_answers_503_and_the_next_request_reconnects(
    database: Settings,
) -> None:
    # After a failover the pool's connections lead to the old primary, now a standby, and
    # writes fail there with SQLSTATE 25006: a 500 each, for as long as the process kept
    # the connection. One pooled connection: the second request gets the first one's
    # unless it was thrown away.
    app = create_app(dataclasses.replace(database, db_pool_size=1))
    async with serving(app) as client:
        runtime = app.state.runtime
        await add_signing_key(runtime)
        headers = await staff_headers(runtime)
        owner = await make_user(runtime)
        async with runtime.db.engine.connect() as connection:
            await connection.execute(text("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"))
            await connection.commit()
        account = {"name": "Acme Hosting", "owner_user_id": str(owner.id)}
        refused = await client.post("/api/v1/accounts", json=account, headers=headers)
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        again = await client.post("/api/v1/accounts", json=account, headers=headers)
        assert again.status_code == 201, again.text


@pytest.fixture
async def silent_redis() -> AsyncIterator[str]:
    """The URL of a Redis host that died dropping packets: connections open (or hang) and
    nothing answers."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"redis://127.0.0.1:{port}/0"
    server.close()


async def test_a_redis_that_stops_answering_shows_as_degraded_within_a_probe_timeout(
    settings: Settings, silent_redis: str
) -> None:
    # Readiness must still answer "degraded" within an orchestrator's probe timeout (one
    # second by default in Kubernetes), or every process is taken out at once.
    stalled = dataclasses.replace(settings, redis_url=silent_redis)
    await create_schema(stalled)
    async with serving(create_app(stalled)) as client:
        started = time.monotonic()
        ready = await client.get("/health/ready")
        assert time.monotonic() - started < 1
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "degraded",
            "checks": {"database": "ok", "redis": "unavailable"},
        }


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="needs the PostgreSQL pass (.ci/run)")
async def test_a_database_that_stops_answering_gives_503_within_a_probe_timeout(
    proxied_postgres: tuple[Settings, TcpProxy],
) -> None:
    # A hung database host accepts connections and answers nothing: its connection and
    # pool timeouts (5 s) outlast a probe's, and a readiness check that waits them out
    # reads to the orchestrator as a timed-out probe rather than as "not ready".
    settings, proxy = proxied_postgres
    async with serving(create_app(settings)) as client:
        assert (await client.get("/health/ready")).status_code == 200
        await proxy.blackhole()
        started = time.monotonic()
        down = await client.get("/health/ready")
        assert time.monotonic() - started < 1
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert down.json()["checks"]["database"] == "unavailable"
        assert "database" in down.json()["detail"]
        await proxy.heal()


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="needs the PostgreSQL pass (.ci/run)")
async def test_probes_against_a_hung_database_run_one_ping_at_a_time(
    proxied_postgres: tuple[Settings, TcpProxy],
) -> None:
    # A ping given up on after half a second went on running, holding a pooled connection
    # while it waited out the driver's timeouts, and every probe started another: probes
    # from every node of an orchestrator against a hung host piled up pings. Probes that
    # arrive while one runs, or while one given up on unwinds, start none.
    settings, proxy = proxied_postgres
    app = create_app(settings)
    async with serving(app) as client:
        # The outboxes poll the database every 2 s and housekeeping now and then: one
        # landing while the host is away would hold a connection of its own.
        runtime = app.state.runtime
        for worker in (runtime.mail, runtime.webhooks, runtime.housekeeping):
            await worker.stop()
        together = await asyncio.gather(*(client.get("/health/ready") for _ in range(3)))
        assert [answer.status_code for answer in together] == [200] * 3
        await proxy.blackhole()
        together = await asyncio.gather(*(client.get("/health/ready") for _ in range(3)))
        one_by_one = [await client.get("/health/ready") for _ in range(2)]
        for down in (*together, *one_by_one):
            assert down.status_code == 503
            assert down.json()["checks"]["database"] == "unavailable"
        assert runtime.db.engine.pool.checkedout() == 1
        await proxy.heal()


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="needs the PostgreSQL pass (.ci/run)")
async def test_both_stopping_answering_still_gives_503_within_a_probe_timeout(
    proxied_postgres: tuple[Settings, TcpProxy], silent_redis: str
) -> None:
    # One network fault can take both hosts away: pinged one after the other, their two
    # waits together would reach the probe timeout, and the orchestrator would read a
    # timed-out probe instead of the answer.
    settings, proxy = proxied_postgres
    async with serving(create_app(dataclasses.replace(settings, redis_url=silent_redis))) as client:
        await proxy.blackhole()
        started = time.monotonic()
        down = await client.get("/health/ready")
        assert time.monotonic() - started < 1
        assert down.status_code == 503
        assert down.json()["checks"] == {"database": "unavailable", "redis": "unavailable"}
        await proxy.heal()


async def test_a_database_without_tables_is_not_ready_and_a_server_error_not_an_outage(
    settings: Settings,
) -> None:
    # On SQLite a missing table was reported as the database unavailable (503, try again
    # later), which an unmigrated database never stops being. As on PostgreSQL it is the
    # generic 500 problem, its details left in the log, and readiness says what to do.
    async with serving(create_app(settings)) as http:
        response = await http.post(
            "/token", data={"grant_type": "client_credentials", "client_id": "app"}
        )
        ready = await http.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["detail"] == "Not ready: the database is not migrated."
    assert ready.json()["checks"]["database"] == "not_migrated"
    assert response.status_code == 500, response.text
    assert response.json()["error"] == "server_error"
    assert "oauth_clients" not in response.text and "Traceback" not in response.text


async def test_a_database_an_older_version_migrated_is_not_ready_until_migrated(
    settings: Settings,
) -> None:
    # Readiness looked only for the users table: a database at an older migration said
    # ready, and requests then failed on the columns it lacks.
    await asyncio.to_thread(migrate.upgrade, settings, "0013")
    app = create_app(settings)
    async with serving(app) as http:
        behind = await http.get("/health/ready")
        await asyncio.to_thread(migrate.upgrade, settings)
        migrated = await http.get("/health/ready")
    assert behind.status_code == 503
    assert behind.json()["detail"] == "Not ready: the database is not migrated."
    assert behind.json()["checks"]["database"] == "not_migrated"
    assert migrated.status_code == 200, migrated.text
    assert migrated.json()["checks"]["database"] == "ok"


async def test_a_database_a_newer_version_migrated_stays_ready(settings: Settings) -> None:
    # During a rolling deploy the first process of the new version migrates the database
    # while the old ones still serve: were they all to leave the load balancer at once, the
    # deploy would be an outage. Starting an old version on it is refused (identity migrate).
    await asyncio.to_thread(migrate.upgrade, settings)
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        await engine.dispose()
    async with serving(create_app(settings)) as http:
        ready = await http.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"] == "ok"


async def test_readiness_finds_the_migration_files_read_at_start(
    database: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Readiness parsed the migration files on its first probe: blocking file reads on the
    # event loop, up to 0.1 s cold, inside the probe's half second. Each process reads them
    # as it starts, on a thread of its own.
    readers: list[int] = []

    class Spied(ScriptDirectory):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            readers.append(threading.get_ident())
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(migrate, "ScriptDirectory", Spied)
    for cached in (migrate._scripts, migrate.known_revisions, migrate.code_heads):
        cached.cache_clear()
    async with serving(create_app(database)) as client:
        assert len(readers) == 1 and readers[0] != threading.get_ident()
        ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert len(readers) == 1  # the probe read nothing
