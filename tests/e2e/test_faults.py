"""The faults a hosted deployment meets, against a real ``identity serve`` and real servers.

Redis and PostgreSQL are shared by the whole machine, so an outage is made by cutting a TCP
proxy between the server and them (tests/tcp_proxy.py); the mail server is the test's own
aiosmtpd, stopped and started again.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url

from identity.accounts.models import User
from identity.clock import utcnow
from identity.crypto import digest, random_token
from identity.db.engine import Database
from identity.db.models import OutgoingEmail, RefreshToken
from identity.settings import Settings
from tests.backends import TEST_DATABASE_URL, TEST_REDIS_URL
from tests.e2e.flows import Client, cli, redeem, setup, sign_in, start_sign_in, submit_login
from tests.processes import free_port, identity_server
from tests.smtp_server import smtp_server
from tests.tcp_proxy import TcpProxy

# Loads a server, cuts its PostgreSQL, Redis or SMTP off and times the recovery: alone.
pytestmark = [pytest.mark.e2e, pytest.mark.serial]

EMAIL = "faults@example.com"
PASSWORD = "Qz7!mVt#pX2w"
T = TypeVar("T")


class ThreadedProxy:
    """A ``TcpProxy`` on an event loop of its own thread, driven from a synchronous test."""

    def __init__(self, host: str, port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._proxy = TcpProxy(host, port)

    def _call(self, coroutine: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)  # type: ignore[arg-type]

    @property
    def port(self) -> int:
        return self._proxy.port

    def start(self) -> None:
        self._thread.start()
        self._call(self._proxy.start())

    def cut(self) -> None:
        self._call(self._proxy.cut())

    def restore(self) -> None:
        self._call(self._proxy.restore())

    def stop(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@contextmanager
def proxied(host: str, port: int) -> Iterator[ThreadedProxy]:
    proxy = ThreadedProxy(host, port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def _run(env: dict[str, str], work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work`` with a database connection of the test's own, not through the proxy."""

    async def run() -> T:
        db = Database.from_settings(Settings.from_env(env))
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def _until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds}s: {what}")
        time.sleep(0.1)


# --- Redis --------------------------------------------------------------------------------


@pytest.mark.skipif(TEST_REDIS_URL is None, reason="needs the Redis pass (.ci/run)")
def test_redis_outage_keeps_sign_in_working_limits_in_force_and_recovers(
    env: dict[str, str],
) -> None:
    target = urlsplit(env["IDENTITY_REDIS_URL"])
    with proxied(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        env = env | {
            "IDENTITY_REDIS_URL": f"redis://127.0.0.1:{proxy.port}{target.path}",
            "IDENTITY_LOGIN_MAX_FAILURES": "3",
        }
        client = setup(env, EMAIL, PASSWORD)
        with identity_server(env) as server:
            base = server.base_url
            assert httpx.get(f"{base}/health/ready").json()["status"] == "ready"
            proxy.cut()

            ready = httpx.get(f"{base}/health/ready")
            assert ready.status_code == 200
            assert ready.json() == {
                "status": "degraded",
                "checks": {"database": "ok", "redis": "unavailable"},
            }
            # A whole sign-in still works: authorize, login, code, token.
            tokens = redeem(base, client, *sign_in(base, client, EMAIL, PASSWORD))
            assert tokens["token_type"].lower() == "bearer"
            # Rate limits still count (in this process) and still refuse.
            with httpx.Client() as http:
                for _ in range(3):
                    location, _ = start_sign_in(http, base, client.client_id)
                    refused = submit_login(http, base, location, EMAIL, "Wrong-password-1!")
                    assert refused.status_code == 400
                location, _ = start_sign_in(http, base, client.client_id)
                held = submit_login(http, base, location, EMAIL, PASSWORD)
                assert held.status_code == 429
            metrics = _samples(base)
            assert metrics[("identity_rate_limit_fallbacks_total", ())] > 0

            proxy.restore()
            # Recovery by itself: readiness, and sign-in state in Redis again.
            _until(
                lambda: httpx.get(f"{base}/health/ready").json()["status"] == "ready",
                10,
                "readiness back to ready",
            )
            shared = redis.Redis.from_url(TEST_REDIS_URL or "")
            try:
                prefix = env["IDENTITY_REDIS_KEY_PREFIX"]
                before = len(list(shared.scan_iter(match=prefix + "flow*")))
                with httpx.Client() as http:
                    start_sign_in(http, base, client.client_id)
                assert len(list(shared.scan_iter(match=prefix + "flow*"))) == before + 1
            finally:
                shared.close()


def _samples(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{base_url}/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# --- PostgreSQL ---------------------------------------------------------------------------


async def _seed_refresh_tokens(db: Database, client_id: str, count: int) -> list[str]:
    """Live refresh tokens, each its own family, so every request is one valid rotation."""
    now = utcnow()
    tokens = [random_token() for _ in range(count)]
    async with db.transaction() as session:
        user = await session.scalar(select(User).where(User.email == EMAIL))
        assert user is not None
        session.add_all(
            RefreshToken(
                token_hash=digest(token),
                family_id=uuid.uuid4(),
                client_id=client_id,
                user_id=user.id,
                scope="openid email",
                auth_time=now,
                amr=["pwd"],
                created_at=now,
                expires_at=now + timedelta(days=1),
            )
            for token in tokens
        )
    return tokens


def _refresh(base: str, client: Client, token: str) -> httpx.Response:
    return httpx.post(
        f"{base}/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=client.auth,
        timeout=30,
    )


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="needs the PostgreSQL pass (.ci/run)")
def test_postgres_outage_under_load_fails_cleanly_writes_nothing_half_and_recovers(
    env: dict[str, str],
) -> None:
    url = make_url(env["IDENTITY_DATABASE_URL"])
    with proxied(url.host or "127.0.0.1", url.port or 5432) as proxy:
        served = env | {
            "IDENTITY_DATABASE_URL": url.set(port=proxy.port).render_as_string(hide_password=False)
        }
        client = setup(served, EMAIL, PASSWORD, "--grant-type", "authorization_code",
                       "--grant-type", "refresh_token")  # fmt: skip
        tokens = _run(env, lambda db: _seed_refresh_tokens(db, client.client_id, 3000))
        results: list[tuple[str, httpx.Response]] = []
        with identity_server(served) as server:
            base = server.base_url
            pending = iter(tokens)
            lock = threading.Lock()
            stop = threading.Event()

            def load() -> None:
                while not stop.is_set():
                    with lock:
                        token = next(pending, None)
                    if token is None:
                        return
                    response = _refresh(base, client, token)
                    with lock:
                        results.append((token, response))

            with ThreadPoolExecutor(8) as pool:
                workers = [pool.submit(load) for _ in range(8)]
                time.sleep(1.0)
                proxy.cut()
                time.sleep(2.0)
                proxy.restore()
                time.sleep(2.0)
                stop.set()
                for worker in workers:
                    worker.result()

            # Service resumed without a restart.
            _until(lambda: _refresh(base, client, next(pending)).status_code == 200, 10, "resume")

    statuses = [response.status_code for _, response in results]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert statuses.count(503) > 0, "the outage was not felt"
    assert statuses[-20:].count(200) == 20, "not recovered under load"
    for _, response in results:
        if response.status_code == 503:
            assert response.json()["error"] == "temporarily_unavailable"
            assert response.headers["retry-after"]
    # Nothing half written: every family used is a whole chain, rotated or not, with exactly
    # one live token; and every token we were given is that live one.
    used = {digest(token) for token, _ in results}
    given = {
        digest(response.json()["refresh_token"])
        for _, response in results
        if response.status_code == 200
    }

    async def check(db: Database) -> None:
        async with db.transaction() as session:
            originals = (
                await session.scalars(select(RefreshToken).where(RefreshToken.token_hash.in_(used)))
            ).all()
            families = [row.family_id for row in originals]
            live = dict(
                (
                    await session.execute(
                        select(RefreshToken.family_id, func.count())
                        .where(RefreshToken.family_id.in_(families))
                        .where(RefreshToken.rotated_at.is_(None), RefreshToken.revoked_at.is_(None))
                        .group_by(RefreshToken.family_id)
                    )
                ).all()
            )
            rows = dict(
                (
                    await session.execute(
                        select(RefreshToken.family_id, func.count())
                        .where(RefreshToken.family_id.in_(families))
                        .group_by(RefreshToken.family_id)
                    )
                ).all()
            )
            live_hashes = set(
                (
                    await session.scalars(
                        select(RefreshToken.token_hash).where(
                            RefreshToken.family_id.in_(families),
                            RefreshToken.rotated_at.is_(None),
                        )
                    )
                ).all()
            )
        for original in originals:
            assert live.get(original.family_id) == 1, original.family_id
            assert rows[original.family_id] == (2 if original.rotated_at else 1)
        assert given <= live_hashes

    _run(env, check)


# --- SMTP ---------------------------------------------------------------------------------


def test_mail_server_down_then_back_every_message_arrives_once(env: dict[str, str]) -> None:
    port = free_port()
    env = env | {"IDENTITY_SMTP_URL": f"smtp://127.0.0.1:{port}"}
    setup(env, EMAIL, PASSWORD)
    second = "second@example.com"
    cli(env, "users", "create", "--email", second, "--password-stdin", stdin=PASSWORD)

    async def rows(db: Database) -> list[OutgoingEmail]:
        async with db.transaction() as session:
            return list((await session.scalars(select(OutgoingEmail))).all())

    with identity_server(env) as server:
        base = server.base_url
        for address in (EMAIL, second):
            forgot = httpx.post(f"{base}/api/v1/password/forgot", json={"email": address})
            assert forgot.status_code == 202
        # The first attempt of each fails: no mail server listens.
        _until(
            lambda: sorted(row.attempts for row in _run(env, rows)) == [1, 1],
            15,
            "a failed first attempt of both",
        )
        assert _samples(base)[("identity_emails_total", (("result", "failed"),))] == 2

        with smtp_server(port) as (_, inbox):

            async def backoff_passes(db: Database) -> None:
                # Stands in for the 30 seconds a retry waits: the server's own clock runs on.
                async with db.transaction() as session:
                    await session.execute(update(OutgoingEmail).values(next_attempt_at=utcnow()))

            _run(env, backoff_passes)
            _until(lambda: len(inbox.messages) >= 2, 15, "both messages delivered")
            time.sleep(3)  # more polls of the dispatcher: nothing more may arrive
            delivered = list(inbox.messages)
        sent = _samples(base)[("identity_emails_total", (("result", "sent"),))]

    assert sorted(message["To"] for message in delivered) == [EMAIL, second]
    assert len({message["Message-ID"] for message in delivered}) == 2
    for row in _run(env, rows):
        assert row.sent_at is not None and row.failed_at is None and row.attempts == 2
    assert sent == 2
