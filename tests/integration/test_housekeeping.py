"""Housekeeping deletes each table's rows once they can no longer change an answer and keeps
the others; in batches, from several processes at once, surviving database errors."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import func, make_url, select, text, update
from sqlalchemy.orm import InstrumentedAttribute

from identity.accounts import self_service
from identity.accounts.models import PasswordResetToken, User
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.crypto import digest, random_token
from identity.db import engine
from identity.db.engine import Database, DatabaseUnavailable
from identity.db.models import metadata
from identity.housekeeping.housekeeper import Housekeeper
from identity.housekeeping.repository import ENDED_KEPT, RULES
from identity.mail.models import OutgoingEmail
from identity.mfa.models import RecoveryCode
from identity.mfa.service import InvalidCode, SecondFactor
from identity.permissions import effective
from identity.permissions.invitations import ACCEPT_PATH
from identity.permissions.models import (
    Account,
    Invitation,
    MembershipPermission,
    MembershipRole,
    Role,
)
from identity.permissions.repository import get_membership
from identity.runtime import Runtime
from identity.sessions.models import BrowserSession
from identity.settings import Settings
from identity.tokens.models import AuthorizationCode, Consent, RefreshToken, RevokedAccessToken
from identity.tokens.revocations import revoke_access_token
from identity.webhooks.models import WebhookDelivery, WebhookEvent, WebhookSubscription
from tests.conftest import serving
from tests.integration.account_helpers import (
    add_member,
    invite_and_read_link,
    make_account,
    token_claims,
    user_headers,
)
from tests.integration.oauth_helpers import (
    RegisteredClient,
    make_client,
    make_user,
    redeemed_code,
    refresh,
    signed_in_tokens,
)
from tests.integration.recovery_helpers import enrolled_user

DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


async def add(runtime: Runtime, *rows: Any) -> None:
    async with runtime.db.transaction() as session:
        session.add_all(rows)


async def keys(db: Database, key: InstrumentedAttribute[Any]) -> set[Any]:
    async with db.transaction() as session:
        return set((await session.scalars(select(key))).all())


def browser_session(
    user: User, expires_at: datetime, revoked_at: datetime | None = None
) -> BrowserSession:
    return BrowserSession(
        id=uuid.uuid4(),
        token_hash=digest(random_token()),
        user_id=user.id,
        amr=["pwd"],
        auth_time=expires_at - DAY,
        expires_at=expires_at,
        revoked_at=revoked_at,
    )


def code(
    client: RegisteredClient,
    user: User,
    expires_at: datetime,
    consumed_at: datetime | None,
    access_ttl: timedelta = timedelta(minutes=10),
) -> AuthorizationCode:
    """A code; a redeemed one issued an access token living ``access_ttl``."""
    return AuthorizationCode(
        code_hash=digest(random_token()),
        client_id=client.client_id,
        user_id=user.id,
        redirect_uri="https://app.example.com/callback",
        scope="openid",
        auth_time=expires_at - timedelta(minutes=1),
        expires_at=expires_at,
        consumed_at=consumed_at,
        access_jti=None if consumed_at is None else uuid.uuid4().hex,
        access_expires_at=None if consumed_at is None else consumed_at + access_ttl,
    )


def refresh_token(client: RegisteredClient, expires_at: datetime, **state: Any) -> RefreshToken:
    return RefreshToken(
        id=uuid.uuid4(),
        token_hash=digest(random_token()),
        family_id=uuid.uuid4(),
        client_id=client.client_id,
        scope="openid",
        expires_at=expires_at,
        **state,
    )


def outgoing(now: datetime, **state: Any) -> OutgoingEmail:
    """A queued message; unless told otherwise, still being tried, its next attempt later."""
    row = OutgoingEmail(id=uuid.uuid4(), to_address="ana@example.com", subject="s", text_body="t")
    row.next_attempt_at = now + timedelta(minutes=5)
    for name, value in state.items():
        setattr(row, name, value)
    return row


def keeper(db: Database, kind: type[Housekeeper] = Housekeeper, **options: Any) -> Housekeeper:
    """A housekeeper as the Runtime makes one from the default settings, ``options`` apart."""
    defaults: dict[str, Any] = {
        "interval_seconds": 600,
        "sent_retention": DAY,
    }
    return kind(db, **(defaults | options))


async def row_counts(db: Database, tables: list[str]) -> dict[str, int]:
    async with db.transaction() as session:
        return {
            table: await session.scalar(select(func.count()).select_from(metadata.tables[table]))
            for table in tables
        }


# --- each table's rule ----------------------------------------------------------------------


async def test_expired_and_revoked_sessions_are_deleted_and_live_ones_kept(
    runtime: Runtime,
) -> None:
    user = await make_user(runtime)
    now = utcnow()
    live = browser_session(user, now + SECOND)
    expired = browser_session(user, now)
    revoked = browser_session(user, now + DAY, revoked_at=now - SECOND)
    await add(runtime, live, expired, revoked)

    assert await runtime.housekeeping.run_once(now) == 2

    assert await keys(runtime.db, BrowserSession.id) == {live.id}


async def test_signing_out_everywhere_else_still_ends_tokens_issued_through_a_deleted_session(
    runtime: Runtime,
) -> None:
    """An app signed in through a browser session keeps its refresh token after the session
    expires and housekeeping deletes it; "sign out everywhere else" must still end it."""
    user, client = await make_user(runtime), await make_client(runtime)
    now = utcnow()
    current, expired = browser_session(user, now + DAY), browser_session(user, now - SECOND)
    elsewhere = refresh_token(client, now + DAY, user_id=user.id, session_id=expired.id)
    here = refresh_token(client, now + DAY, user_id=user.id, session_id=current.id)
    await add(runtime, current, expired, elsewhere, here)
    await runtime.housekeeping.run_once(now)
    assert await keys(runtime.db, BrowserSession.id) == {current.id}

    async with runtime.db.transaction() as session:
        await self_service.sign_out_others(session, Actor(user.id), user.id, current.id, now)

    async with runtime.db.transaction() as session:
        revoked = await session.scalars(
            select(RefreshToken.id).where(RefreshToken.revoked_at.is_not(None))
        )
        assert set(revoked.all()) == {elsewhere.id}


async def test_unredeemed_codes_go_at_expiry_and_redeemed_ones_a_day_later(
    runtime: Runtime,
) -> None:
    client, user = await make_client(runtime), await make_user(runtime)
    now = utcnow()
    unused_live = code(client, user, now + SECOND, None)
    unused_expired = code(client, user, now, None)
    redeemed_recently = code(client, user, now - DAY + SECOND, now - DAY)
    redeemed_long_ago = code(client, user, now - DAY, now - DAY - timedelta(minutes=1))
    await add(runtime, unused_live, unused_expired, redeemed_recently, redeemed_long_ago)

    assert await runtime.housekeeping.run_once(now) == 2

    assert await keys(runtime.db, AuthorizationCode.code_hash) == {
        unused_live.code_hash,
        redeemed_recently.code_hash,
    }


async def test_a_redeemed_code_outlives_the_access_token_it_issued_however_long_that_lives(
    runtime: Runtime,
) -> None:
    client, user = await make_client(runtime), await make_user(runtime)
    now = utcnow()
    # Redeemed two days ago, its access token (three days) still live: a replay revokes it.
    redeemed = code(client, user, now - 2 * DAY + SECOND, now - 2 * DAY, access_ttl=3 * DAY)
    await add(runtime, redeemed)

    assert await runtime.housekeeping.run_once(now) == 0

    assert await keys(runtime.db, AuthorizationCode.code_hash) == {redeemed.code_hash}


async def test_a_redeemed_code_within_its_day_still_revokes_what_it_issued_when_replayed(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    used, first = await redeemed_code(client, runtime, app)

    # Nearly a day later, the code is still there: the replay revokes what it issued.
    await runtime.housekeeping.run_once(utcnow() + DAY - timedelta(minutes=5))
    replay = await used.redeem(client)

    assert replay.json()["error"] == "invalid_grant"
    assert (await refresh(client, app, first["refresh_token"])).json()["error"] == "invalid_grant"
    introspected = await client.post(
        "/introspect", data={"token": first["access_token"]}, headers=app.basic
    )
    assert introspected.json() == {"active": False}


async def test_refresh_tokens_are_kept_until_they_expire_whatever_their_state(
    runtime: Runtime,
) -> None:
    client = await make_client(runtime)
    now = utcnow()
    kept = [
        refresh_token(client, now + SECOND),
        refresh_token(client, now + SECOND, rotated_at=now - DAY),
        refresh_token(client, now + SECOND, revoked_at=now - DAY),
    ]
    gone = [
        refresh_token(client, now),
        refresh_token(client, now - DAY, rotated_at=now - 2 * DAY),
        refresh_token(client, now - DAY, revoked_at=now - 2 * DAY),
    ]
    await add(runtime, *kept, *gone)

    assert await runtime.housekeeping.run_once(now) == 3

    assert await keys(runtime.db, RefreshToken.id) == {row.id for row in kept}


async def test_a_rotated_token_kept_until_it_expires_still_revokes_its_family_when_reused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    first = await signed_in_tokens(client, runtime, app)
    second = (await refresh(client, app, first["refresh_token"])).json()

    # A day before the rotated token expires, it is still there: its reuse is caught.
    await runtime.housekeeping.run_once(utcnow() + timedelta(days=29))
    reuse = await refresh(client, app, first["refresh_token"])

    assert reuse.json()["error"] == "invalid_grant"
    assert (await refresh(client, app, second["refresh_token"])).json()["error"] == "invalid_grant"


async def test_deny_list_entries_go_a_minute_after_their_token_expires(runtime: Runtime) -> None:
    now = utcnow()
    async with runtime.db.transaction() as session:
        await revoke_access_token(session, "expiring", now + SECOND, now)
        await revoke_access_token(session, "later", now + timedelta(hours=1), now)

    # Another process's clock may be a little behind: the entry outlives its token a minute.
    assert await runtime.housekeeping.run_once(now + timedelta(seconds=30)) == 0
    assert await runtime.housekeeping.run_once(now + timedelta(minutes=1, seconds=1)) == 1

    assert await keys(runtime.db, RevokedAccessToken.jti) == {"later"}


async def test_used_and_expired_reset_tokens_are_deleted_and_usable_ones_kept(
    runtime: Runtime,
) -> None:
    user = await make_user(runtime)
    now = utcnow()

    def token(expires_at: datetime, used_at: datetime | None = None) -> PasswordResetToken:
        return PasswordResetToken(
            id=uuid.uuid4(),
            user_id=user.id,
            token_hash=digest(random_token()),
            expires_at=expires_at,
            used_at=used_at,
        )

    usable = token(now + SECOND)
    await add(runtime, usable, token(now), token(now + timedelta(minutes=20), used_at=now))

    assert await runtime.housekeeping.run_once(now) == 2

    assert await keys(runtime.db, PasswordResetToken.id) == {usable.id}


async def test_sent_and_given_up_mail_goes_after_a_day_and_mail_still_tried_stays(
    runtime: Runtime,
) -> None:
    now = utcnow()
    kept = [
        outgoing(now, sent_at=now - DAY + SECOND),
        outgoing(now, failed_at=now - DAY + SECOND, attempts=13),
        # Unsent, however old: still being tried, or held by a sender right now.
        outgoing(now, created_at=now - 30 * DAY, attempts=12, last_error="refused"),
        outgoing(now, created_at=now - 30 * DAY, leased_until=now + timedelta(minutes=1)),
    ]
    gone = [outgoing(now, sent_at=now - DAY), outgoing(now, failed_at=now - DAY, attempts=13)]
    await add(runtime, *kept, *gone)

    assert await runtime.housekeeping.run_once(now) == 2

    assert await keys(runtime.db, OutgoingEmail.id) == {row.id for row in kept}


async def test_finished_deliveries_go_after_a_day_and_their_event_with_the_last_one(
    runtime: Runtime,
) -> None:
    now = utcnow()
    long_ago = now - DAY
    subscription = WebhookSubscription(
        id=uuid.uuid4(), url="https://billing.example.com/hook", event_types=["user.disabled"]
    )
    subscription.secret_ciphertext = "unused"
    await add(runtime, subscription)

    def event(occurred_at: datetime) -> WebhookEvent:
        return WebhookEvent(id=uuid.uuid4(), type="user.disabled", occurred_at=occurred_at, body="")

    def delivery(of: WebhookEvent, **state: Any) -> WebhookDelivery:
        return WebhookDelivery(
            id=uuid.uuid4(),
            event_id=of.id,
            subscription_id=subscription.id,
            next_attempt_at=now + timedelta(minutes=5),
            **state,
        )

    # ``unwanted`` was emitted when no subscription wanted its type: it has no delivery.
    finished, half_done, unwanted = event(long_ago), event(long_ago), event(long_ago)
    recent = event(now - SECOND)
    await add(runtime, finished, half_done, unwanted, recent)
    kept = [
        delivery(half_done, attempts=9, last_error="HTTP 503"),  # still being tried
        delivery(recent, delivered_at=now - SECOND),
    ]
    gone = [
        delivery(finished, delivered_at=long_ago),
        delivery(finished, failed_at=long_ago, attempts=15),
        delivery(half_done, delivered_at=long_ago),
    ]
    await add(runtime, *kept, *gone)

    assert await runtime.housekeeping.run_once(now) == len(gone) + 2  # + finished, unwanted

    assert await keys(runtime.db, WebhookDelivery.id) == {row.id for row in kept}
    assert await keys(runtime.db, WebhookEvent.id) == {half_done.id, recent.id}


async def test_invitations_go_thirty_days_after_they_were_accepted_cancelled_or_expired(
    runtime: Runtime,
) -> None:
    account = await make_account(runtime, await make_user(runtime))
    now = utcnow()
    ended, lately = now - ENDED_KEPT, now - ENDED_KEPT + SECOND

    def invitation(expires_at: datetime, **ended_at: datetime) -> Invitation:
        return Invitation(
            id=uuid.uuid4(),
            account_id=account.id,
            email="bo@example.com",
            token_hash=digest(random_token()),
            created_at=expires_at - 7 * DAY,
            expires_at=expires_at,
            **ended_at,
        )

    kept = [
        invitation(now + SECOND),  # pending
        invitation(lately),
        invitation(now + DAY, accepted_at=lately),
        invitation(now + DAY, cancelled_at=lately),
    ]
    gone = [
        invitation(ended),
        invitation(lately, accepted_at=ended),
        invitation(lately, cancelled_at=ended),
        # Cancelled after it had expired: it ended at its expiry.
        invitation(ended, cancelled_at=lately),
    ]
    await add(runtime, *kept, *gone)

    assert await runtime.housekeeping.run_once(now) == len(gone)

    assert await keys(runtime.db, Invitation.id) == {row.id for row in kept}


@pytest.mark.parametrize(
    ("ending", "why"),
    [
        ("accepted_at", "has been accepted already"),
        ("cancelled_at", "was cancelled"),
        ("expires_at", "has expired"),
    ],
)
async def test_a_deleted_invitations_link_is_answered_as_an_unknown_link(
    client: httpx.AsyncClient, runtime: Runtime, ending: str, why: str
) -> None:
    account = await make_account(runtime, await make_user(runtime))
    token = await invite_and_read_link(runtime, account, "bo@example.com", ["invoices"])
    ended = utcnow() - SECOND
    async with runtime.db.transaction() as session:
        await session.execute(update(Invitation).values({ending: ended}))
    unknown = await client.get(ACCEPT_PATH, params={"token": random_token()})

    # Within its 30 days, the link says why it no longer works.
    await runtime.housekeeping.run_once(ended + ENDED_KEPT - SECOND)
    kept = await client.get(ACCEPT_PATH, params={"token": token})
    assert (kept.status_code, why in kept.text) == (410, True)

    # Afterwards it says what any link it does not know gets: not valid, ask for a new one.
    assert await runtime.housekeeping.run_once(ended + ENDED_KEPT) == 1
    deleted = await client.get(ACCEPT_PATH, params={"token": token})
    assert unknown.status_code == deleted.status_code == 404
    sentence = "This invitation link is not valid"
    assert sentence in unknown.text and sentence in deleted.text
    assert 'name="password"' not in deleted.text


async def test_used_recovery_codes_are_deleted_and_unused_ones_kept(runtime: Runtime) -> None:
    user, _, codes = await enrolled_user(runtime)
    mfa = SecondFactor.from_runtime(runtime)
    async with runtime.db.transaction() as session:
        for code in codes[:2]:
            await mfa.verify(session, user.id, code, utcnow())

    assert await runtime.housekeeping.run_once() == 2

    async with runtime.db.transaction() as session:
        assert await mfa.unused_recovery_codes(session, user.id) == 8
        assert await session.scalar(select(func.count()).select_from(RecoveryCode)) == 8


async def test_a_used_recovery_code_typed_again_after_its_deletion_is_still_refused(
    runtime: Runtime,
) -> None:
    user, _, codes = await enrolled_user(runtime)
    mfa = SecondFactor.from_runtime(runtime)
    async with runtime.db.transaction() as session:
        await mfa.verify(session, user.id, codes[0], utcnow())
    await runtime.housekeeping.run_once()

    with pytest.raises(InvalidCode):
        async with runtime.db.transaction() as session:
            await mfa.verify(session, user.id, codes[0], utcnow())
    async with runtime.db.transaction() as session:
        assert await mfa.verify(session, user.id, codes[1], utcnow()) == ("pwd", "otp")


async def member_with_grants(
    runtime: Runtime, account: Account, expiries: list[datetime | None]
) -> tuple[User, list[MembershipPermission], list[MembershipRole]]:
    """A member holding, for each expiry, a permission and a role granted until then."""
    member = await make_user(runtime)
    await add_member(runtime, account, member)
    names = ["invoices", "tickets", "domains", "orders"][: len(expiries)]
    roles = [Role(id=uuid.uuid4(), account_id=account.id, name=name) for name in names]
    await add(runtime, *roles)
    async with runtime.db.transaction() as session:
        membership = await get_membership(session, account.id, member.id)
    assert membership is not None
    permissions = [
        MembershipPermission(membership_id=membership.id, permission=name, expires_at=expiry)
        for name, expiry in zip(names, expiries, strict=True)
    ]
    role_grants = [
        MembershipRole(membership_id=membership.id, role_id=role.id, expires_at=expiry)
        for role, expiry in zip(roles, expiries, strict=True)
    ]
    await add(runtime, *permissions, *role_grants)
    return member, permissions, role_grants


async def test_grants_go_thirty_days_after_they_expire(runtime: Runtime) -> None:
    account = await make_account(runtime, await make_user(runtime))
    now = utcnow()
    expiries = [None, now + DAY, now - ENDED_KEPT + SECOND, now - ENDED_KEPT]
    _, permissions, roles = await member_with_grants(runtime, account, expiries)

    assert await runtime.housekeeping.run_once(now) == 2

    assert await keys(runtime.db, MembershipPermission.permission) == {
        grant.permission for grant in permissions[:3]
    }
    assert await keys(runtime.db, MembershipRole.role_id) == {grant.role_id for grant in roles[:3]}


async def audited_revocations(
    client: httpx.AsyncClient, runtime: Runtime, owner: User, account: Account
) -> list[dict[str, Any]]:
    headers = await user_headers(runtime, owner)
    events = []
    for action in ("member.permission_revoked", "member.role_revoked"):
        response = await client.get(
            f"/api/v1/accounts/{account.id}/audit",
            params={"action": action, "limit": 100},
            headers=headers,
        )
        events += response.json()["events"]
    return events


async def test_each_deleted_grant_is_audited_as_revoked_by_housekeeping_with_its_expiry(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The account's log shows when a time-limited grant went, and until when it counted."""
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    now = utcnow()
    ended = now - ENDED_KEPT
    member, _, roles = await member_with_grants(runtime, account, [None, ended, now - DAY])

    await runtime.housekeeping.run_once(now)

    events = await audited_revocations(client, runtime, owner, account)
    assert sorted((e["action"], str(e["details"]["old"])) for e in events) == sorted(
        [
            (
                "member.permission_revoked",
                str({"name": "tickets", "expires_at": ended.isoformat()}),
            ),
            (
                "member.role_revoked",
                str({"role_id": str(roles[1].role_id), "expires_at": ended.isoformat()}),
            ),
        ]
    )
    for event in events:
        assert event["target_id"] == str(member.id)
        assert event["actor_user_id"] is None
        assert event["actor_client_id"] is None
        assert event["ip"] is None
        assert event["details"]["source"] == "housekeeping"


async def test_two_runs_at_once_audit_each_deleted_grant_once(
    client: httpx.AsyncClient, runtime: Runtime, second_process: Database
) -> None:
    now = utcnow()
    owners = [await make_user(runtime) for _ in range(6)]
    accounts = [await make_account(runtime, owner) for owner in owners]
    for account in accounts:
        await member_with_grants(runtime, account, [now - ENDED_KEPT] * 4)
    one, other = keeper(runtime.db, batch_size=5), keeper(second_process, batch_size=5)

    deleted = await asyncio.gather(one.run_once(now), other.run_once(now))

    assert sum(deleted) == 48
    for owner, account in zip(owners, accounts, strict=True):
        assert len(await audited_revocations(client, runtime, owner, account)) == 8


async def test_deleting_an_expired_grant_changes_no_decision_and_the_api_lists_it_until_then(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    now = utcnow()
    member, _, _ = await member_with_grants(runtime, account, [None, now - SECOND])
    url = f"/api/v1/accounts/{account.id}/members/{member.id}"
    checks = [(member.id, account.id, name) for name in ("invoices", "tickets")]

    async def answers() -> tuple[Any, ...]:
        async with runtime.db.transaction() as session:
            return (
                await effective.effective_permissions(session, member.id, account.id, now),
                await token_claims(session, member.id, account.id, now),
                await effective.check_batch(session, checks, now),
            )

    before = await answers()
    await runtime.housekeeping.run_once(now + ENDED_KEPT - 2 * SECOND)
    listed = (await client.get(url, headers=await user_headers(runtime, owner))).json()
    await runtime.housekeeping.run_once(now + ENDED_KEPT)
    after = (await client.get(url, headers=await user_headers(runtime, owner))).json()

    assert before == await answers()
    assert before[2] == [True, False]
    assert [(g["name"], g["expired"]) for g in listed["permissions"]] == [
        ("invoices", False),
        ("tickets", True),
    ]
    assert [(g["name"], g["expired"]) for g in after["permissions"]] == [("invoices", False)]
    assert [g["expired"] for g in after["roles"]] == [False]
    assert after["effective_permissions"] == listed["effective_permissions"]


async def test_a_run_years_ahead_touches_no_table_without_a_rule(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """People, accounts, memberships, clients, keys, consents, authenticator secrets and the
    audit log are never deleted by housekeeping, however old; nor, in tables with a rule, are
    unused recovery codes and grants without an expiry."""
    user, _, _ = await enrolled_user(runtime)
    account = await make_account(runtime, user)
    await add_member(runtime, account, await make_user(runtime), ["invoices"])
    app = await make_client(runtime)
    await add(runtime, Consent(user_id=user.id, client_id=app.client_id, scope="openid"))
    ruled = {rule.table for rule in RULES}
    others = sorted(set(metadata.tables) - ruled)
    before = await row_counts(runtime.db, others)

    await runtime.housekeeping.run_once(utcnow() + timedelta(days=3650))

    assert ruled == {
        "browser_sessions",
        "authorization_codes",
        "refresh_tokens",
        "revoked_access_tokens",
        "password_reset_tokens",
        "invitations",
        "recovery_codes",
        "membership_permissions",
        "membership_roles",
        "outgoing_emails",
        "webhook_deliveries",
        "webhook_events",
    }
    assert await row_counts(runtime.db, others) == before
    assert await row_counts(runtime.db, ["recovery_codes", "membership_permissions"]) == {
        "recovery_codes": 10,
        "membership_permissions": 1,
    }
    arranged = (
        "users",
        "password_credentials",
        "totp_secrets",
        "accounts",
        "memberships",
        "oauth_clients",
        "signing_keys",
        "consents",
        "audit_events",
    )
    assert all(before[table] > 0 for table in arranged)


# --- batches and several processes -----------------------------------------------------------


async def test_more_rows_than_one_batch_are_all_deleted_by_one_run(runtime: Runtime) -> None:
    user = await make_user(runtime)
    now = utcnow()
    live = browser_session(user, now + DAY)
    await add(runtime, live, *(browser_session(user, now - SECOND) for _ in range(25)))
    housekeeper = keeper(runtime.db, batch_size=10)

    assert await housekeeper.run_once(now) == 25

    assert await keys(runtime.db, BrowserSession.id) == {live.id}


@pytest.fixture
async def second_process(database: Settings) -> AsyncIterator[Database]:
    """What another server process has: an engine (on PostgreSQL, a pool) of its own."""
    db = Database.from_settings(database)
    yield db
    await db.dispose()


async def test_two_runs_at_once_both_succeed_and_delete_each_row_once(
    runtime: Runtime, second_process: Database
) -> None:
    user, client = await make_user(runtime), await make_client(runtime)
    now = utcnow()
    await add(runtime, *(browser_session(user, now - SECOND) for _ in range(60)))
    await add(runtime, *(refresh_token(client, now - SECOND) for _ in range(40)))
    one, other = keeper(runtime.db, batch_size=5), keeper(second_process, batch_size=5)

    deleted = await asyncio.gather(one.run_once(now), other.run_once(now))

    assert sum(deleted) == 100
    assert await keys(runtime.db, BrowserSession.id) == set()
    assert await keys(runtime.db, RefreshToken.id) == set()


# --- the loop ----------------------------------------------------------------------------------


async def test_the_loop_survives_a_database_error_and_runs_again(
    runtime: Runtime, second_process: Database, caplog: pytest.LogCaptureFixture
) -> None:
    user = await make_user(runtime)
    await add(runtime, browser_session(user, utcnow() - SECOND))
    await rename(runtime.db, "browser_sessions", "browser_sessions_away")
    housekeeper = keeper(second_process, interval_seconds=0.02)
    housekeeper.start()
    try:

        async def failed() -> bool:
            return any(getattr(r, "worker", None) == "housekeeping" for r in caplog.records)

        async def swept() -> bool:
            return not await keys(runtime.db, BrowserSession.id)

        await eventually(failed)
        await rename(runtime.db, "browser_sessions_away", "browser_sessions")
        await eventually(swept)
    finally:
        await housekeeper.stop()


async def test_a_table_that_fails_is_logged_and_the_later_tables_are_still_cleaned(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    # One table's failure ended the run: every table after it waited for the next interval,
    # and a table failing at every run (a lock held, a broken migration) kept them all.
    user, client = await make_user(runtime), await make_client(runtime)
    now = utcnow()
    await add(runtime, browser_session(user, now - SECOND), refresh_token(client, now - SECOND))
    await add(runtime, outgoing(now, sent_at=now - DAY))
    await rename(runtime.db, "browser_sessions", "browser_sessions_away")
    try:
        assert await keeper(runtime.db).run_once(now) == 2
    finally:
        await rename(runtime.db, "browser_sessions_away", "browser_sessions")
    assert await keys(runtime.db, RefreshToken.id) == set()
    assert await keys(runtime.db, OutgoingEmail.id) == set()
    assert len(await keys(runtime.db, BrowserSession.id)) == 1
    (failure,) = [r for r in caplog.records if getattr(r, "table", None) == "browser_sessions"]
    # Each run logs it again until someone repairs the table: an operator's problem.
    assert failure.levelname == "ERROR" and failure.exc_info is not None


@pytest.fixture
async def impatient_process(
    database: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Database]:
    """Another process whose statements give up on a lock held elsewhere after a moment:
    PostgreSQL's ``lock_timeout``, SQLite's busy timeout."""
    if database.is_sqlite:
        monkeypatch.setattr(engine, "SQLITE_BUSY_SECONDS", 0.1)
        settings = database
    else:
        url = make_url(database.database_url)
        options = f"{url.query.get('options', '')} -clock_timeout=100".strip()
        url = url.update_query_dict({"options": options})
        settings = dataclasses.replace(
            database, database_url=url.render_as_string(hide_password=False)
        )
    db = Database.from_settings(settings)
    yield db
    await db.dispose()


@asynccontextmanager
async def lock_held(db: Database, table: str) -> AsyncIterator[None]:
    """``table`` locked against writers until the block ends: by LOCK TABLE on PostgreSQL
    (as a migration's ALTER TABLE does), by the one write lock on SQLite."""
    async with db.write_transaction() as session:
        if db.engine.dialect.name == "sqlite":
            # Any write takes the database's one write lock, even one that changes no row.
            await session.execute(text(f"DELETE FROM {table} WHERE 1 = 0"))  # noqa: S608 - ours
        else:
            await session.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        yield


async def test_a_table_locked_elsewhere_is_a_warning_and_is_cleaned_next_run(
    runtime: Runtime, impatient_process: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # A lock held at the wrong moment was logged at ERROR like a broken table, though the
    # next run deletes the rows: a warning, with the ERROR kept for failures that stay.
    user = await make_user(runtime)
    now = utcnow()
    await add(runtime, browser_session(user, now - SECOND))
    housekeeper = keeper(impatient_process)
    async with lock_held(runtime.db, "browser_sessions"):
        await housekeeper.run_once(now)

    failures = [r for r in caplog.records if getattr(r, "worker", None) == "housekeeping"]
    assert "browser_sessions" in {getattr(r, "table", None) for r in failures}
    assert {r.levelname for r in failures} == {"WARNING"}
    assert len(await keys(runtime.db, BrowserSession.id)) == 1
    assert await housekeeper.run_once(now) == 1


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


@pytest.fixture
async def database_down(settings: Settings) -> AsyncIterator[Database]:
    """A database every connection to fails: a PostgreSQL server that hangs up at once."""
    server = await asyncio.start_server(_refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"postgresql+psycopg://identity:pw@127.0.0.1:{port}/identity"
    db = Database.from_settings(dataclasses.replace(settings, database_url=url))
    yield db
    await db.dispose()
    server.close()
    await server.wait_closed()


async def test_a_database_outage_ends_the_run_without_a_warning_per_table(
    database_down: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # Every table failed in turn, each logged as failing on its own: twelve warnings per
    # interval for one outage. The loop logs the outage once (identity.polling).
    with pytest.raises(DatabaseUnavailable):
        await keeper(database_down).run_once()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def rename(db: Database, table: str, to: str) -> None:
    async with db.write_transaction() as session:
        await session.execute(text(f"ALTER TABLE {table} RENAME TO {to}"))


async def eventually(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait for a background loop to bring ``condition`` about, for ten seconds at most."""
    for _ in range(500):
        if await condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the background loop never got there")


async def test_the_running_app_starts_the_loop_and_stops_it_on_shutdown(app: Litestar) -> None:
    async with serving(app):
        runtime: Runtime = app.state.runtime
        await add(runtime, browser_session(await make_user(runtime), utcnow() - SECOND))

        async def swept() -> bool:
            return not await keys(runtime.db, BrowserSession.id)

        # Its first run may be far off; woken, it runs now.
        runtime.housekeeping.wake()
        await eventually(swept)
        assert running("housekeeping")
    assert not running("housekeeping")


def running(name: str) -> bool:
    return any(task.get_name() == name and not task.done() for task in asyncio.all_tasks())


async def test_each_pause_is_the_interval_give_or_take_a_quarter(runtime: Runtime) -> None:
    pauses = [keeper(runtime.db).pause_seconds() for _ in range(200)]

    assert all(450 <= pause <= 750 for pause in pauses)
    assert min(pauses) < 500 and max(pauses) > 700


async def test_the_first_run_comes_at_any_moment_of_the_first_interval(runtime: Runtime) -> None:
    """So that a process restarted more often than the interval still sweeps, and processes
    started together do not sweep together."""
    firsts = [keeper(runtime.db).first_pause_seconds() for _ in range(200)]

    assert all(0 < first <= 600 for first in firsts)
    assert min(firsts) < 60 and max(firsts) > 540


async def test_the_loop_runs_first_after_the_first_pause_not_after_an_interval(
    runtime: Runtime,
) -> None:
    class Soon(Housekeeper):
        """The first pause drawn short, as it is one time in ten thousand."""

        def first_pause_seconds(self) -> float:
            return 0.06

    await add(runtime, browser_session(await make_user(runtime), utcnow() - SECOND))
    housekeeper = keeper(runtime.db, Soon, interval_seconds=3600)
    housekeeper.start()
    try:

        async def swept() -> bool:
            return not await keys(runtime.db, BrowserSession.id)

        await eventually(swept)
    finally:
        await housekeeper.stop()
