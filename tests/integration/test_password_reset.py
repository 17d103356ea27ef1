"""Forgot password → email read from a real SMTP server → link → new password, and every way
a reset token must refuse to work."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from identity.accounts import repository as accounts_repository
from identity.accounts.models import PasswordResetToken, User
from identity.accounts.self_service import SignedOutMeanwhile
from identity.accounts.service import authenticate, disable_user
from identity.audit.models import AuditEvent
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.crypto import digest
from identity.errors import Conflict, InvalidInput
from identity.mail.models import OutgoingEmail
from identity.mfa.service import InvalidPassword
from identity.recovery import repository as recovery_repository
from identity.recovery.service import assisted_email_change, reset_token_owner
from identity.runtime import Runtime
from identity.sessions import service as sessions
from tests.browser import (
    CLIENT_ID,
    REDIRECT_URI,
    add_oauth_client,
    authorize_params,
    pkce_pair,
    redirected_to_client,
    sign_in,
)
from tests.integration.account_helpers import SYSTEM
from tests.integration.oauth_helpers import (
    RegisteredClient,
    assert_access_token_dead,
    make_client,
    redeem,
    refresh,
    signed_in_tokens,
)
from tests.integration.recovery_helpers import (
    NEW_PASSWORD,
    PASSWORD,
    change_password_elsewhere,
    forgot,
    html_of,
    links_expire_while_hashing,
    mail,
    new_user,
    reset,
    reset_token,
    text_of,
    until_waiting_or_done,
)
from tests.processes import free_port
from tests.smtp_server import Inbox, smtp_server

ANA = "ana@example.com"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Inbox]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def inbox(smtp: tuple[int, Inbox]) -> Inbox:
    return smtp[1]


@pytest.fixture
def env(env: dict[str, str], smtp: tuple[int, Inbox]) -> dict[str, str]:
    return env | {
        "IDENTITY_SMTP_URL": f"smtp://127.0.0.1:{smtp[0]}",
        "IDENTITY_PRODUCT_NAME": "Acme ID",
        "IDENTITY_MAIL_FROM": "Acme ID <no-reply@acme.test>",
    }


async def _password_works(runtime: Runtime, password: str, email: str = ANA) -> bool:
    return await authenticate(runtime.db, runtime.passwords, email, password) is not None


async def _first_reset_token(http: httpx.AsyncClient, runtime: Runtime, inbox: Inbox) -> str:
    """Ana asks for a reset link, the first mail of this test; the token of its link."""
    await forgot(http, ANA)
    return reset_token((await mail(runtime, inbox, 1))[0])


async def _token_rows(runtime: Runtime) -> list[PasswordResetToken]:
    async with runtime.db.transaction() as session:
        statement = select(PasswordResetToken).order_by(PasswordResetToken.created_at)
        return list((await session.scalars(statement)).all())


async def test_the_emailed_link_sets_a_new_password_and_signs_out_everywhere(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    user = await new_user(runtime, ANA)
    async with runtime.db.transaction() as session:
        browser = await sessions.establish(
            session, user_id=user.id, amr=["pwd"], now=utcnow(),
            lifetime=runtime.settings.session_lifetime,
            previous_token=None, ip=None, user_agent=None,
        )  # fmt: skip
    app = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, app, user=user, scope="openid offline_access")

    answer = await forgot(client, "  ANA@example.com ")
    assert answer.status_code == 202
    (message,) = await mail(runtime, inbox, 1)
    assert message["To"] == ANA
    assert message["From"] == "Acme ID <no-reply@acme.test>"
    assert message["Subject"] == "Change your Acme ID password"
    assert "expires in 30 minutes" in text_of(message)
    assert "If you did not ask for this, ignore this email" in text_of(message)
    assert "copy this address into your browser" in html_of(message)

    assert (await reset(client, reset_token(message))).status_code == 204
    assert await _password_works(runtime, NEW_PASSWORD)
    assert not await _password_works(runtime, PASSWORD)
    async with runtime.db.transaction() as session:
        assert await sessions.current(session, browser.token, utcnow()) is None
    assert (await refresh(client, app, tokens["refresh_token"])).status_code == 400
    await assert_access_token_dead(client, app, tokens["access_token"])
    (_, notice) = await mail(runtime, inbox, 2)
    assert notice["To"] == ANA
    assert notice["Subject"] == "Your Acme ID password was changed"
    assert "signed out" in text_of(notice)


async def test_a_code_issued_before_a_reset_is_refused_after_it(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    """Whoever held the session the reset ends may have a code from it still unredeemed: it
    must not bring them a refresh token that outlives the reset."""
    await new_user(runtime, ANA)
    await add_oauth_client(runtime, first_party=True)
    verifier, challenge = pkce_pair()
    signed_in = await sign_in(
        client, authorize_params(code_challenge=challenge), email=ANA, password=PASSWORD
    )
    code = redirected_to_client(signed_in)["code"]
    await forgot(client, ANA)
    (message,) = await mail(runtime, inbox, 1)
    assert (await reset(client, reset_token(message))).status_code == 204

    app = RegisteredClient(CLIENT_ID, None)
    response = await redeem(client, app, code, verifier, redirect_uri=REDIRECT_URI)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"


async def test_known_and_unknown_addresses_get_the_same_answer_and_only_one_gets_mail(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    await new_user(runtime, ANA)
    known = await forgot(client, ANA)
    unknown = await forgot(client, "nobody@example.com")
    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert known.json()["status"] == "accepted"
    drop = {"date", "x-request-id"}
    assert {k: v for k, v in known.headers.items() if k not in drop} == {
        k: v for k, v in unknown.headers.items() if k not in drop
    }
    await mail(runtime, inbox, 1)
    await asyncio.sleep(0.2)
    await runtime.mail.run_once()
    assert [m["To"] for m in inbox.messages] == [ANA]


async def test_a_disabled_user_gets_no_reset_mail(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA, disabled=True)
    assert (await forgot(client, ANA)).status_code == 202
    await runtime.background.drain()
    assert await _token_rows(runtime) == []


async def test_text_that_is_not_an_email_address_is_invalid_input(
    client: httpx.AsyncClient,
) -> None:
    answer = await forgot(client, "not an address")
    assert answer.status_code == 422
    assert answer.json()["type"] == "urn:identity:problem:invalid-input"


async def test_the_email_speaks_the_users_language_else_the_browsers(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    await new_user(runtime, ANA)
    await new_user(runtime, "bea@example.com", locale="es")
    await forgot(client, ANA, **{"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"})
    await mail(runtime, inbox, 1)
    await forgot(client, "bea@example.com", **{"Accept-Language": "en"})
    first, second = await mail(runtime, inbox, 2)
    for message in (first, second):
        assert message["Subject"] == "Cambia tu contraseña de Acme ID"
        assert "caduca en 30 minutos" in text_of(message)
        assert 'lang="es"' in html_of(message)


async def test_a_used_token_cannot_be_used_again(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    await new_user(runtime, ANA)
    token = await _first_reset_token(client, runtime, inbox)
    assert (await reset(client, token)).status_code == 204
    again = await reset(client, token, "Hj4%kT8@mW2!")
    assert again.status_code == 400
    assert again.json()["type"] == "urn:identity:problem:invalid-reset-token"
    assert await _password_works(runtime, NEW_PASSWORD)


async def test_an_expired_token_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    await new_user(runtime, ANA)
    token = await _first_reset_token(client, runtime, inbox)
    async with runtime.db.transaction() as session:
        await session.execute(
            update(PasswordResetToken).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert (await reset(client, token)).status_code == 400
    assert await _password_works(runtime, PASSWORD)


async def test_a_token_that_expires_while_the_new_password_hashes_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The expiry is judged when the token is spent: a wait for argon2's thread must not
    stretch a link's life past the moment written in it."""
    await new_user(runtime, ANA)
    token = await _first_reset_token(client, runtime, inbox)
    links_expire_while_hashing(runtime, monkeypatch)
    answer = await reset(client, token)
    assert answer.status_code == 400
    assert answer.json()["type"] == "urn:identity:problem:invalid-reset-token"
    assert await _password_works(runtime, PASSWORD)


async def test_the_token_expires_after_the_configured_time(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    await new_user(runtime, ANA)
    before = utcnow()
    await forgot(client, ANA)
    await mail(runtime, inbox, 1)
    (row,) = await _token_rows(runtime)
    lifetime = row.expires_at - row.created_at
    assert lifetime == timedelta(minutes=30) and row.created_at >= before


@pytest.mark.parametrize("change", ["flip_last", "truncate", "extend", "other"])
async def test_a_tampered_token_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox, change: str
) -> None:
    await new_user(runtime, ANA)
    token = await _first_reset_token(client, runtime, inbox)
    tampered = {
        "flip_last": token[:-1] + ("A" if token[-1] != "A" else "B"),
        "truncate": token[:-1],
        "extend": token + "A",
        "other": "x" * len(token),
    }[change]
    assert (await reset(client, tampered)).status_code == 400
    assert (await reset(client, token)).status_code == 204


async def test_only_the_digest_of_a_token_is_stored(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    await new_user(runtime, ANA)
    token = await _first_reset_token(client, runtime, inbox)
    assert len(token) >= 43  # 32 random bytes, URL-safe base64: 256 bits
    (row,) = await _token_rows(runtime)
    assert row.token_hash == digest(token) and token not in row.token_hash


async def test_a_token_dies_when_the_password_changes_another_way(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    user = await new_user(runtime, ANA)
    token = await _first_reset_token(client, runtime, inbox)
    await change_password_elsewhere(runtime, user, new="Hj4%kT8@mW2!")
    assert (await reset(client, token)).status_code == 400
    assert await _password_works(runtime, "Hj4%kT8@mW2!")


async def test_a_token_dies_when_the_password_changes_on_a_clock_behind(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link holds the password it was issued for. A change stamped by a server whose
    clock is behind the one that issued the link has a changed_at before the link's
    created_at, and is another password all the same: the link must not outlive it."""
    user = await new_user(runtime, ANA)
    token = await _first_reset_token(client, runtime, inbox)
    (row,) = await _token_rows(runtime)
    behind = row.created_at - timedelta(minutes=1)
    with monkeypatch.context() as clock:
        clock.setattr(accounts_repository, "utcnow", lambda: behind)
        await change_password_elsewhere(runtime, user, new="Hj4%kT8@mW2!")
    assert (await reset(client, token)).status_code == 400
    assert await _password_works(runtime, "Hj4%kT8@mW2!")


async def test_a_password_change_while_a_reset_writes_waits_for_it_and_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password change comes after the reset has checked the token's owner and before it
    stores the new hash. The reset holds the user's row (PostgreSQL) or the one write lock
    (SQLite), which the change takes first: it waits for the reset, and is then refused,
    since the password it verified is no longer the current one, or (once it had verified
    it) since the reset has signed its browser out."""
    user = await new_user(runtime, ANA)
    token = await _first_reset_token(client, runtime, inbox)
    changed = "Hj4%kT8@mW2!"
    real_write = accounts_repository.replace_password
    change: list[asyncio.Task[None]] = []

    async def write_while_a_change_waits(*args: Any, **kwargs: Any) -> Any:
        change.append(asyncio.create_task(change_password_elsewhere(runtime, user, new=changed)))
        await until_waiting_or_done(runtime, change[0])
        return await real_write(*args, **kwargs)

    monkeypatch.setattr(accounts_repository, "replace_password", write_while_a_change_waits)
    answer = await reset(client, token)
    assert answer.status_code == 204
    with pytest.raises((InvalidPassword, SignedOutMeanwhile)):
        await change[0]
    assert await _password_works(runtime, NEW_PASSWORD)
    assert not await _password_works(runtime, changed)


async def _disable(runtime: Runtime, user: User) -> None:
    async with runtime.db.transaction() as session:
        await disable_user(session, SYSTEM, user.id, "Left the company", utcnow())


async def test_a_disable_while_a_reset_writes_waits_for_the_reset_to_land_first(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staff disable the user after the reset has checked the token's owner and before it
    stores the new hash. The disable must not commit in between, or a reset would complete
    for a disabled user: it waits for the reset (PostgreSQL: the reset holds the user's row;
    SQLite: one writer at a time), so the reset lands first and the disable after it."""
    user = await new_user(runtime, ANA)
    token = await _first_reset_token(client, runtime, inbox)
    real_write = accounts_repository.replace_password
    disabling: list[asyncio.Task[None]] = []
    disable_committed_in_between: list[bool] = []

    async def write_during_a_disable(*args: Any, **kwargs: Any) -> Any:
        disabling.append(asyncio.create_task(_disable(runtime, user)))
        await until_waiting_or_done(runtime, disabling[0])
        disable_committed_in_between.append(disabling[0].done())
        return await real_write(*args, **kwargs)

    monkeypatch.setattr(accounts_repository, "replace_password", write_during_a_disable)
    answer = await reset(client, token)
    await disabling[0]
    assert disable_committed_in_between == [False]
    assert answer.status_code == 204
    async with runtime.db.transaction() as session:
        stored = await accounts_repository.stored_password(session, user.id)
        disabled = await session.scalar(select(User.disabled).where(User.id == user.id))
    assert stored is not None and await runtime.passwords.verify(stored.hash, NEW_PASSWORD)
    assert disabled


async def test_a_reset_meeting_a_disable_in_progress_waits_and_is_refused_as_disabled(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    """The disable has written the user's row, not yet committed, when the reset comes to
    store its hash: the reset waits for it and then refuses, as for any disabled user."""
    user = await new_user(runtime, ANA)
    token = await _first_reset_token(client, runtime, inbox)
    async with runtime.db.transaction() as session:
        await disable_user(session, SYSTEM, user.id, "Left the company", utcnow())
        resetting = asyncio.create_task(reset(client, token))
        await until_waiting_or_done(runtime, resetting)
    answer = await resetting
    assert answer.status_code == 400
    assert answer.json()["type"] == "urn:identity:problem:invalid-reset-token"
    # The link of a user disabled before it was used answers the same.
    again = await reset(client, token)
    assert (again.status_code, again.json()["detail"]) == (400, answer.json()["detail"])
    async with runtime.db.transaction() as session:
        stored = await accounts_repository.stored_password(session, user.id)
    assert stored is not None and await runtime.passwords.verify(stored.hash, PASSWORD)


async def test_a_newer_token_neither_extends_nor_ends_an_older_one(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    await new_user(runtime, ANA)
    first = await _first_reset_token(client, runtime, inbox)
    (older,) = await _token_rows(runtime)
    await forgot(client, ANA)
    second = reset_token((await mail(runtime, inbox, 2))[1])
    rows = await _token_rows(runtime)
    assert len(rows) == 2 and first != second
    assert rows[0].expires_at == older.expires_at  # not extended by the newer one
    assert rows[1].expires_at > rows[0].expires_at
    # The older link expires on its own schedule while the newer one still works.
    async with runtime.db.transaction() as session:
        await session.execute(
            update(PasswordResetToken)
            .where(PasswordResetToken.token_hash == digest(first))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert (await reset(client, first)).status_code == 400
    assert (await reset(client, second)).status_code == 204


async def test_using_one_token_ends_every_other_outstanding_token(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    await new_user(runtime, ANA)
    await forgot(client, ANA)
    await forgot(client, ANA)
    first, second = (reset_token(m) for m in await mail(runtime, inbox, 2))
    assert (await reset(client, first)).status_code == 204
    assert (await reset(client, second, "Hj4%kT8@mW2!")).status_code == 400


async def test_ten_parallel_uses_of_one_token_give_one_success(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    await new_user(runtime, ANA)
    token = await _first_reset_token(client, runtime, inbox)
    answers = await asyncio.gather(*(reset(client, token) for _ in range(10)))
    assert sorted(a.status_code for a in answers) == [204] + [400] * 9


async def test_a_mismatched_confirmation_is_refused_and_keeps_the_token(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    await new_user(runtime, ANA)
    token = await _first_reset_token(client, runtime, inbox)
    answer = await reset(client, token, NEW_PASSWORD, NEW_PASSWORD + "x")
    assert answer.status_code == 422
    assert answer.json()["type"] == "urn:identity:problem:password-mismatch"
    assert (await reset(client, token)).status_code == 204


async def test_a_password_the_policy_refuses_keeps_the_token(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    await new_user(runtime, ANA)
    token = await _first_reset_token(client, runtime, inbox)
    answer = await reset(client, token, "password")
    assert answer.status_code == 422
    assert answer.json()["type"] == "urn:identity:problem:policy-violation"
    assert answer.json()["reasons"]
    assert (await reset(client, token)).status_code == 204
    assert await _password_works(runtime, NEW_PASSWORD)


async def test_an_overlong_password_is_refused_as_too_long_like_everywhere_else(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    await new_user(runtime, ANA)
    await forgot(client, ANA)
    token = reset_token((await mail(runtime, inbox, 1))[0])
    answer = await reset(client, token, "Kx7#mQ9!vB2$" * 400)
    assert answer.status_code == 422
    assert answer.json()["type"] == "urn:identity:problem:policy-violation"
    assert [r["id"] for r in answer.json()["reasons"]] == ["password.too_long"]
    assert (await reset(client, token)).status_code == 204


class TestWithTheMailServerDown:
    @pytest.fixture
    def smtp(self) -> tuple[int, Inbox]:
        """A port where nothing listens: every send fails and is retried later."""
        return free_port(), Inbox()

    async def test_a_failing_mail_server_does_not_fail_the_request(
        self, client: httpx.AsyncClient, runtime: Runtime
    ) -> None:
        await new_user(runtime, ANA)
        assert (await forgot(client, ANA)).status_code == 202
        await runtime.background.drain()
        for _ in range(100):  # the app's own dispatcher may hold the message for a moment
            await runtime.mail.run_once()
            async with runtime.db.transaction() as session:
                (row,) = (await session.scalars(select(OutgoingEmail))).all()
            if row.last_error:
                break
            await asyncio.sleep(0.05)
        assert row.sent_at is None and row.failed_at is None and row.attempts == 1
        assert "ConnectionRefusedError" in (row.last_error or "")
        assert row.next_attempt_at > utcnow()  # retried later


class TestRateLimits:
    @pytest.fixture
    def env(self, env: dict[str, str]) -> dict[str, str]:
        # Clients are told apart by X-Forwarded-For from the test client's own address.
        return env | {
            "IDENTITY_TRUSTED_PROXIES": "127.0.0.1",
            "IDENTITY_RESET_LIMIT_PER_IP": "4/hour",
            "IDENTITY_RESET_LIMIT_GLOBAL": "6/hour",
        }

    async def test_over_the_per_address_limit_the_answer_is_the_same_but_no_mail_goes(
        self, client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
    ) -> None:
        await new_user(runtime, ANA)
        answers = [await forgot(client, ANA, **_from(f"10.0.0.{i}")) for i in range(5)]
        assert {a.status_code for a in answers} == {202}
        assert len({a.content for a in answers}) == 1
        await mail(runtime, inbox, 3)
        await asyncio.sleep(0.2)
        await runtime.mail.run_once()
        assert len(inbox.messages) == 3  # the default: 3 per address per hour
        assert len(await _token_rows(runtime)) == 3

    async def test_over_the_per_client_limit_known_and_unknown_addresses_get_429(
        self, client: httpx.AsyncClient, runtime: Runtime
    ) -> None:
        await new_user(runtime, ANA)
        for i in range(4):
            assert (await forgot(client, f"u{i}@example.com", **_from("10.0.0.1"))).is_success
        known = await forgot(client, ANA, **_from("10.0.0.1"))
        unknown = await forgot(client, "nobody@example.com", **_from("10.0.0.1"))
        for answer in (known, unknown):
            assert answer.status_code == 429
            assert 0 < int(answer.headers["Retry-After"]) <= 3600
            assert answer.json()["type"] == "urn:identity:problem:rate-limited"
        assert known.content == unknown.content
        # Another client is not affected.
        assert (await forgot(client, ANA, **_from("10.0.0.2"))).status_code == 202

    async def test_over_the_overall_limit_every_client_gets_429(
        self, client: httpx.AsyncClient
    ) -> None:
        for i in range(6):
            answer = await forgot(client, f"u{i}@example.com", **_from(f"10.0.1.{i}"))
            assert answer.status_code == 202
        refused = await forgot(client, "u9@example.com", **_from("10.0.2.1"))
        assert refused.status_code == 429 and "Retry-After" in refused.headers


def _from(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}


STAFF = Actor(user_id=None, client_id="support-desk", ip="203.0.113.9", request_id="req-1")
REASON = "mailbox lost; passport checked in store"


async def _staff_change(runtime: Runtime, user_id: uuid.UUID, email: str, reason: str) -> User:
    async with runtime.db.transaction() as session:
        user = await assisted_email_change(
            session, runtime.settings, STAFF, user_id, email, reason, utcnow()
        )
    runtime.mail.wake()
    return user


async def test_staff_change_the_sign_in_email_tell_both_addresses_and_mail_a_reset_link(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    user = await new_user(runtime, ANA)
    changed = await _staff_change(runtime, user.id, "Ana.New@Example.org", f"  {REASON} ")
    assert changed.email == "ana.new@example.org"

    messages = await mail(runtime, inbox, 3)
    by_recipient = sorted((m["To"], m["Subject"]) for m in messages)
    assert by_recipient == [
        ("ana.new@example.org", "Change your Acme ID password"),
        ("ana.new@example.org", "The sign-in email of your Acme ID account was changed"),
        (ANA, "The sign-in email of your Acme ID account was changed"),
    ]
    notice = next(m for m in messages if m["To"] == ANA)
    assert "from ana@example.com to ana.new@example.org" in text_of(notice)
    link = next(m for m in messages if m["Subject"].startswith("Change"))
    assert (await reset(client, reset_token(link))).status_code == 204
    assert await _password_works(runtime, NEW_PASSWORD, "ana.new@example.org")
    assert not await _password_works(runtime, NEW_PASSWORD, ANA)
    async with runtime.db.transaction() as session:
        event, reset_event = await session.scalars(select(AuditEvent).order_by(AuditEvent.id))
    assert (event.action, reset_event.action) == (
        "user.email_changed_by_staff",
        "user.password_reset",
    )
    assert event.details == {"old": ANA, "new": "ana.new@example.org", "reason": REASON}
    assert (event.target_id, event.actor_client_id) == (str(user.id), "support-desk")
    assert (event.ip, event.request_id) == ("203.0.113.9", "req-1")


async def test_reset_links_mailed_before_a_staff_email_change_no_longer_work(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    user = await new_user(runtime, ANA)
    before = await _first_reset_token(client, runtime, inbox)
    assert (await client.get("/reset-password", params={"token": before})).status_code == 200
    await _staff_change(runtime, user.id, "ana.new@example.org", REASON)
    messages = await mail(runtime, inbox, 4)
    (fresh,) = (m for m in messages[1:] if m["Subject"].startswith("Change"))
    assert fresh["To"] == "ana.new@example.org"

    refused = await reset(client, before)
    assert refused.status_code == 400
    assert refused.json()["type"] == "urn:identity:problem:invalid-reset-token"
    assert await _password_works(runtime, PASSWORD, "ana.new@example.org")
    # The link the change itself mailed to the new address is not ended with the old ones.
    assert (await reset(client, reset_token(fresh))).status_code == 204
    assert await _password_works(runtime, NEW_PASSWORD, "ana.new@example.org")


async def test_an_email_change_during_a_forgotten_password_request_sends_no_link_to_the_old_address(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change commits after the request has found the user by the old address and
    before it stores the link's token: the link would reach the old mailbox, live."""
    user = await new_user(runtime, ANA)
    real_insert = recovery_repository.insert_token

    async def insert_after_a_change(*args: Any, **kwargs: Any) -> Any:
        # Once: the change itself mails a link to the new address, through the real insert.
        monkeypatch.setattr(recovery_repository, "insert_token", real_insert)
        await _staff_change(runtime, user.id, "ana.new@example.org", REASON)
        return await real_insert(*args, **kwargs)

    monkeypatch.setattr(recovery_repository, "insert_token", insert_after_a_change)
    assert (await forgot(client, ANA)).status_code == 202
    messages = await mail(runtime, inbox, 3)
    await asyncio.sleep(0.2)
    await runtime.mail.run_once()
    assert sorted((m["To"], m["Subject"]) for m in inbox.messages) == [
        ("ana.new@example.org", "Change your Acme ID password"),
        ("ana.new@example.org", "The sign-in email of your Acme ID account was changed"),
        (ANA, "The sign-in email of your Acme ID account was changed"),
    ]
    fresh = next(m for m in messages if m["Subject"].startswith("Change"))
    assert [row.token_hash for row in await _token_rows(runtime)] == [digest(reset_token(fresh))]


async def test_staff_cannot_move_a_user_to_an_address_another_user_holds(
    runtime: Runtime,
) -> None:
    user = await new_user(runtime, ANA)
    await new_user(runtime, "bea@example.com")
    with pytest.raises(Conflict):
        await _staff_change(runtime, user.id, "BEA@example.com", REASON)


@pytest.mark.parametrize("reason", ["", "  ", "x" * 501])
async def test_staff_must_give_a_reason_to_change_the_sign_in_email(
    runtime: Runtime, reason: str
) -> None:
    user = await new_user(runtime, ANA)
    with pytest.raises(InvalidInput):
        await _staff_change(runtime, user.id, "ana.new@example.org", reason)
    async with runtime.db.transaction() as session:
        assert (await session.scalars(select(AuditEvent))).all() == []


async def test_the_reset_page_can_tell_a_usable_token_from_a_spent_one(
    client: httpx.AsyncClient, runtime: Runtime, inbox: Inbox
) -> None:
    await new_user(runtime, ANA)
    token = await _first_reset_token(client, runtime, inbox)

    async def usable(candidate: str) -> bool:
        async with runtime.db.transaction() as session:
            owner = await reset_token_owner(session, candidate, utcnow())
        return owner is not None and owner.email == ANA

    assert await usable(token)
    assert await usable(token)  # looking does not spend it
    assert not await usable(token[:-2])
    assert (await reset(client, token)).status_code == 204
    assert not await usable(token)
