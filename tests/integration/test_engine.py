"""What the database engines put into the errors the service logs."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import struct
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import TextClause, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from identity.background import BackgroundWork
from identity.clock import utcnow
from identity.crypto import random_token
from identity.db.engine import Database, DatabaseUnavailable
from identity.logs import JsonFormatter
from identity.mail.models import OutgoingEmail
from identity.settings import Settings
from tests.backends import TEST_DATABASE_URL


@pytest.fixture
async def db(database: Settings) -> AsyncIterator[Database]:
    db = Database.from_settings(database)
    yield db
    await db.dispose()


async def test_a_failed_statement_is_logged_without_its_parameters(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # SQLAlchemy's errors quote every parameter of the statement that failed: a mail body
    # with a reset link, a password hash, an address. The logged traceback must not.
    link = f"https://id.example/reset-password?token={random_token()}"
    email_id = uuid.uuid4()

    def email(body: str) -> OutgoingEmail:
        return OutgoingEmail(
            id=email_id, to_address="a@example.com", subject="Reset", text_body=body,
            next_attempt_at=utcnow(),
        )  # fmt: skip

    async with db.transaction() as session:
        session.add(email("an earlier message"))

    async def queue_twice() -> None:
        async with db.transaction() as session:
            session.add(email(f"Choose a new password: {link}"))

    background = BackgroundWork()
    with caplog.at_level(logging.ERROR):
        background.start(queue_twice(), name="password-reset")
        await background.drain()
    [record] = [r for r in caplog.records if r.exc_info]
    line = JsonFormatter().format(record)
    assert "IntegrityError" in line
    assert link not in line
    assert "a@example.com" not in line


async def test_a_missing_table_is_a_failed_statement_not_an_unavailable_database(
    db: Database,
) -> None:
    # SQLite names every failure OperationalError, "no such table" too, and all of them
    # became DatabaseUnavailable (503, "try again"): an unmigrated or wrong database file
    # never becomes available. As PostgreSQL's undefined table, it is the statement's error.
    statement = text("SELECT 1 FROM no_such_table")
    with pytest.raises(DBAPIError):
        async with db.transaction() as session:
            await session.execute(statement)
    # psycopg's own error on its lone reads, not wrapped by SQLAlchemy.
    with pytest.raises(Exception) as raised:
        await db.first(statement, {})
    assert not isinstance(raised.value, DatabaseUnavailable)


@pytest.mark.skipif(TEST_DATABASE_URL is not None, reason="SQLite's own result code")
async def test_a_full_sqlite_database_is_unavailable_as_a_full_postgresql_disk_is(
    db: Database,
) -> None:
    # PostgreSQL's disk full (SQLSTATE 53100, class 53) is DatabaseUnavailable, 503: the
    # service works again once space is freed. SQLite's SQLITE_FULL is the same condition and
    # must not become a 500 with a traceback. The page limit makes it full for real.
    with pytest.raises(DatabaseUnavailable):
        async with db.transaction() as session:
            pages = (await session.execute(text("PRAGMA page_count"))).scalar_one()
            await session.execute(text(f"PRAGMA max_page_count = {pages}"))
            await session.execute(text("CREATE TABLE filler (x)"))


async def _starting_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A PostgreSQL server mid-restart: it refuses every session with SQLSTATE 57P03."""
    while True:
        length, code = struct.unpack("!II", await reader.readexactly(8))
        if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not spoken here
            writer.write(b"N")
            continue
        await reader.readexactly(length - 8)  # the startup message
        fields = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"
        writer.write(b"E" + struct.pack("!I", len(fields) + 4) + fields)
        await writer.drain()
        writer.close()
        return


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
async def test_a_postgresql_restarting_is_unavailable_on_either_driver(
    settings: Settings, driver: str
) -> None:
    # While PostgreSQL shuts down and starts again it refuses new connections; requests
    # that need it answer 503 (DatabaseUnavailable), never 500, whichever driver the URL names.
    server = await asyncio.start_server(_starting_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"postgresql+{driver}://identity:pw@127.0.0.1:{port}/identity"
    db = Database.from_settings(dataclasses.replace(settings, database_url=url))
    try:
        with pytest.raises(DatabaseUnavailable):
            async with db.transaction() as session:
                await session.execute(text("SELECT 1"))
    finally:
        await db.dispose()
        server.close()


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="needs the PostgreSQL pass (.ci/run)")
async def test_asyncpg_takes_numbers_and_flags_from_the_url(settings: Settings) -> None:
    # The query reaches asyncpg as text: these well-formed values raised TypeError before.
    base = make_url(TEST_DATABASE_URL or "").set(drivername="postgresql+asyncpg", query={})
    query = "statement_cache_size=10&command_timeout=5&timeout=3&direct_tls=false&ssl=disable"
    url = f"{base.render_as_string(hide_password=False)}?{query}"
    db = Database.from_settings(Settings.from_env({"IDENTITY_DATABASE_URL": url}))
    try:
        await db.ping()
    finally:
        await db.dispose()


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="needs the PostgreSQL pass (.ci/run)")
async def test_asyncpg_takes_several_hosts_from_the_url(settings: Settings) -> None:
    # SQLAlchemy's failover form was refused as "the option 'host' more than once".
    base = make_url(TEST_DATABASE_URL or "").set(drivername="postgresql+asyncpg", query={})
    where = f"{base.host}:{base.port or 5432}"
    url = f"{base.set(host=None, port=None).render_as_string(hide_password=False)}"
    url += f"?host={where}&host={where}&target_session_attrs=read-write"
    db = Database.from_settings(Settings.from_env({"IDENTITY_DATABASE_URL": url}))
    try:
        await db.ping()
    finally:
        await db.dispose()


@pytest.fixture
async def other_driver(
    database: Settings, request: pytest.FixtureRequest
) -> AsyncIterator[Database]:
    """The test's database through the driver ``request.param`` names: asyncpg takes no
    search_path from the URL, so its statements name the test's schema themselves."""
    url = make_url(database.database_url).set(drivername=f"postgresql+{request.param}", query={})
    db = Database.from_settings(
        dataclasses.replace(database, database_url=url.render_as_string(hide_password=False))
    )
    yield db
    await db.dispose()


WAITS = {
    # A lock held elsewhere past lock_timeout (SQLSTATE 55P03), as a migration's ALTER
    # TABLE or a long transaction holds one.
    "lock": ("SET LOCAL lock_timeout = '100ms'", 'SELECT 1 FROM "{schema}".users'),
    # A statement past statement_timeout (57014).
    "statement": ("SET LOCAL statement_timeout = '100ms'", "SELECT pg_sleep(2)"),
}


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="needs the PostgreSQL pass (.ci/run)")
@pytest.mark.parametrize("other_driver", ["psycopg", "asyncpg"], indirect=True)
@pytest.mark.parametrize("wait", sorted(WAITS))
async def test_a_timed_out_wait_is_unavailable_on_either_driver(
    db: Database, other_driver: Database, wait: str
) -> None:
    # psycopg raises both timeouts as OperationalError, and requests answered 503 (busy,
    # try again); asyncpg's reach SQLAlchemy as its generic Error, and the same wait was a
    # 500 with a traceback on a postgresql+asyncpg:// URL. Their SQLSTATE decides on both.
    setting, statement = WAITS[wait]
    async with db.transaction() as holder:
        schema = await holder.scalar(text("SELECT current_schema()"))
        await holder.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
        with pytest.raises(DatabaseUnavailable):
            async with other_driver.transaction() as session:
                await session.execute(text(setting))
                await session.execute(text(statement.format(schema=schema)))


@pytest.fixture
async def one_connection(
    database: Settings, request: pytest.FixtureRequest
) -> AsyncIterator[Database]:
    """The test's database through the driver ``request.param`` names, with one pooled
    connection, so that a request after a failed one gets the same connection unless it
    was thrown away."""
    url = make_url(database.database_url).set(drivername=f"postgresql+{request.param}", query={})
    db = Database.from_settings(
        dataclasses.replace(
            database, database_url=url.render_as_string(hide_password=False), db_pool_size=1
        )
    )
    yield db
    await db.dispose()


_BACKEND_PID = text("SELECT pg_backend_pid()")


async def _backend_pid(db: Database) -> int:
    async with db.engine.connect() as connection:
        return int((await connection.execute(_BACKEND_PID)).scalar_one())


async def _lone_read_pid(db: Database) -> int:
    """The backend of ``db``'s lone reads (``Database.first``), a pool of their own."""
    return int(await db.scalar(_BACKEND_PID, {}))


async def _write_refused_as_read_only(db: Database, one_connection: Database) -> TextClause:
    """Makes ``one_connection``'s pooled connection what one to a demoted primary is to the
    driver, a read-only session, and sees a write on it answer 503; the write's statement."""
    async with db.transaction() as session:
        schema = await session.scalar(text("SELECT current_schema()"))
    write = text(f'CREATE TABLE "{schema}".written (n integer)')
    async with one_connection.engine.connect() as connection:
        await connection.execute(text("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"))
        await connection.commit()
    with pytest.raises(DatabaseUnavailable):
        async with one_connection.transaction() as session:
            await session.execute(write)
    return write


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="needs the PostgreSQL pass (.ci/run)")
@pytest.mark.parametrize("one_connection", ["psycopg", "asyncpg"], indirect=True)
async def test_a_write_refused_as_read_only_is_unavailable_and_drops_its_connection(
    db: Database, one_connection: Database
) -> None:
    # After a failover the pool holds connections to the old primary, now a standby, which
    # refuses every write with SQLSTATE 25006. That was a 500, and the connection went back
    # to the pool to fail the next write too, until a restart.
    demoted = await _backend_pid(one_connection)
    assert await _backend_pid(one_connection) == demoted  # the pool's one connection
    write = await _write_refused_as_read_only(db, one_connection)
    async with one_connection.transaction() as session:
        await session.execute(write)
        assert await session.scalar(_BACKEND_PID) != demoted


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="needs the PostgreSQL pass (.ci/run)")
@pytest.mark.parametrize("one_connection", ["psycopg", "asyncpg"], indirect=True)
async def test_a_write_refused_as_read_only_drops_the_lone_reads_connections_too(
    db: Database, one_connection: Database
) -> None:
    # The lone reads (the access-token deny list, client credentials) have a pool of their
    # own and run only SELECTs, which the old primary still answers: they never see 25006
    # and kept reading there, from data that may no longer change (a revoked token stayed
    # valid), until their connections broke. The main engine's 25006 must retire them too.
    demoted = await _lone_read_pid(one_connection)
    assert await _lone_read_pid(one_connection) == demoted  # the lone reads' one connection
    await _write_refused_as_read_only(db, one_connection)
    assert await _lone_read_pid(one_connection) != demoted


@pytest.fixture
async def two_lone_reads(database: Settings) -> AsyncIterator[tuple[Database, set[int]]]:
    """The test's database through asyncpg, whose read engine holds two open connections
    (their backends returned), and whose read engine's ``dispose`` awaits the server for
    each (psycopg's ``drain`` closes without waiting, so nothing can come between there)."""
    url = make_url(database.database_url).set(drivername="postgresql+asyncpg", query={})
    db = Database.from_settings(
        dataclasses.replace(
            database, database_url=url.render_as_string(hide_password=False), db_pool_size=2
        )
    )
    demoted = set(await asyncio.gather(_lone_read_pid(db), _lone_read_pid(db)))
    assert len(demoted) == 2
    yield db, demoted
    await db.dispose()


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="needs the PostgreSQL pass (.ci/run)")
async def test_lone_reads_during_the_reconnection_after_a_failover_wait_for_it(
    db: Database, two_lone_reads: tuple[Database, set[int]]
) -> None:
    # The failover mark was cleared as the first lone read began to replace the connections:
    # a second one arriving meanwhile read on an old connection not closed yet.
    reads, demoted = two_lone_reads
    await _write_refused_as_read_only(db, reads)
    pids = await asyncio.gather(_lone_read_pid(reads), _lone_read_pid(reads))
    assert not demoted & set(pids), f"read on the old primary's connections {pids}"


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="needs the PostgreSQL pass (.ci/run)")
async def test_a_reconnection_that_fails_leaves_the_failover_for_the_next_lone_read(
    db: Database, two_lone_reads: tuple[Database, set[int]]
) -> None:
    # A request cancelled (its client went away) while its lone read replaced the
    # connections left the mark cleared and the other old connection in the pool, read on
    # until the next 25006.
    reads, demoted = two_lone_reads
    await _write_refused_as_read_only(db, reads)
    cancelled = asyncio.create_task(_lone_read_pid(reads))
    await asyncio.sleep(0)  # into the read engine's dispose, waiting on the server
    assert not cancelled.done()
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    pid = await _lone_read_pid(reads)
    assert pid not in demoted, f"read on the old primary's connection {pid}"
