"""Events for consumers: emitted in the change's transaction, delivered signed from the outbox
to a real local HTTP receiver, retried with backoff while the consumer is down, and managed by
staff through /api/v1/webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, insert, select, update

from identity.accounts import self_service
from identity.accounts.service import enable_user
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.permissions import members
from identity.recovery.service import complete_reset
from identity.resource.webhooks import SIGNATURE_HEADER, WebhookError, verify
from identity.runtime import Runtime
from identity.sessions import service as sessions
from identity.sessions.revocation import revoke_all_for_user
from identity.webhooks import dispatcher, events
from identity.webhooks import repository as webhooks_repository
from identity.webhooks.dispatcher import (
    FIRST_RETRY,
    LONGEST_WAIT,
    MAX_ATTEMPTS,
    WebhookDispatcher,
    retry_delay,
)
from identity.webhooks.models import WebhookDelivery, WebhookEvent, WebhookSubscription
from identity.webhooks.service import refusal
from tests.integration.account_helpers import (
    SYSTEM,
    account_with_member,
    grant,
    make_account,
    make_user,
    problem_fields,
    service_headers,
    staff_headers,
    user_headers,
)
from tests.integration.page_helpers import other_session
from tests.integration.recovery_helpers import NEW_PASSWORD, new_user, stored_reset_token
from tests.processes import free_port, serving_in_a_thread

API = "/api/v1/webhooks"
REMOVED = [events.MEMBER_REMOVED]


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    # The receiver listens on http://127.0.0.1, which only this setting allows.
    return env | {"IDENTITY_WEBHOOKS_ALLOW_HTTP_LOOPBACK": "true"}


@pytest.fixture
async def quiet(runtime: Runtime) -> Runtime:
    """The runtime with its dispatcher stopped: each test posts with run_once, at its pace."""
    await runtime.webhooks.stop()
    return runtime


class _Server(ThreadingHTTPServer):
    # The dispatcher posts a batch of 20 at once; the default queue of 5 connections waiting
    # to be accepted drops the rest under load, to be retried a second later or time out.
    request_queue_size = 64


class Receiver:
    """A consumer: a real HTTP server on 127.0.0.1 that records what it is sent."""

    def __init__(self, port: int = 0, status: int = 204) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.requests.append((dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/identity"

    @contextmanager
    def running(self) -> Iterator[Receiver]:
        with serving_in_a_thread(self._server):
            yield self


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver().running() as running:
        yield running


async def subscribe(
    client: httpx.AsyncClient, runtime: Runtime, url: str, types: list[str] | None = None
) -> dict[str, Any]:
    body = {"url": url, "event_types": types or [events.MEMBER_REMOVED], "description": "billing"}
    response = await client.post(API, json=body, headers=await staff_headers(runtime))
    assert response.status_code == 201, response.text
    return response.json()


async def deliveries(runtime: Runtime) -> list[WebhookDelivery]:
    async with runtime.db.transaction() as session:
        return list((await session.scalars(select(WebhookDelivery))).all())


async def event_types(runtime: Runtime) -> list[str]:
    async with runtime.db.transaction() as session:
        statement = select(WebhookEvent.type).order_by(WebhookEvent.occurred_at)
        return list((await session.scalars(statement)).all())


async def make_due(runtime: Runtime) -> None:
    """The passage of time: every pending retry becomes due now."""
    async with runtime.db.transaction() as session:
        await session.execute(
            update(WebhookDelivery).values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


async def member_of_new_account(runtime: Runtime) -> tuple[uuid.UUID, uuid.UUID]:
    _, member, account = await account_with_member(runtime, ["invoices"])
    return account.id, member.id


# --- emitted with the change ------------------------------------------------------------------


async def test_a_rolled_back_change_emits_nothing_and_a_committed_one_emits_once(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    await subscribe(client, quiet, receiver.url)
    account_id, user_id = await member_of_new_account(quiet)

    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned):
        async with quiet.db.transaction() as session:
            await members.remove_member(session, SYSTEM, account_id, user_id, utcnow())
            raise Abandoned
    assert await event_types(quiet) == []
    assert await deliveries(quiet) == []

    async with quiet.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account_id, user_id, utcnow())
    assert await event_types(quiet) == [events.MEMBER_REMOVED]
    assert len(await deliveries(quiet)) == 1


async def test_each_change_emits_its_event_to_the_subscriptions_that_want_it(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    everything = await subscribe(client, quiet, receiver.url, sorted(events.EVENT_TYPES))
    removals_url = receiver.url.replace("identity", "removals")
    removals = await subscribe(client, quiet, removals_url, [events.MEMBER_REMOVED])
    account_id, member_id = await member_of_new_account(quiet)
    await grant(quiet, account_id, member_id, "tickets")
    user = await new_user(quiet, f"{uuid.uuid4().hex[:8]}@example.com")
    async with quiet.db.transaction() as session:
        await revoke_all_for_user(session, user.id, utcnow())
    token = await stored_reset_token(quiet, user)
    await complete_reset(
        quiet.db,
        quiet.store,
        quiet.passwords,
        token,
        NEW_PASSWORD,
        NEW_PASSWORD,
        origin=Actor(),
        product_name="Acme ID",
        locale="en",
    )
    async with quiet.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account_id, member_id, utcnow())

    assert await event_types(quiet) == [
        events.PERMISSIONS_CHANGED,
        events.SESSIONS_REVOKED,
        events.SESSIONS_REVOKED,  # the reset signs the user out everywhere
        events.PASSWORD_RESET,
        events.MEMBER_REMOVED,
    ]
    by_subscription: dict[str, int] = {}
    for delivery in await deliveries(quiet):
        key = str(delivery.subscription_id)
        by_subscription[key] = by_subscription.get(key, 0) + 1
    assert by_subscription == {everything["id"]: 5, removals["id"]: 1}


async def test_signing_out_everywhere_else_emits_sessions_revoked_for_the_user(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    """The refresh tokens of the user's other apps end too: a consumer that keeps sessions
    of its own must hear of it, as it does when a password change spares the browser."""
    await subscribe(client, quiet, receiver.url, [events.SESSIONS_REVOKED])
    user = await new_user(quiet, f"{uuid.uuid4().hex[:8]}@example.com")
    browser = await other_session(quiet, user)
    async with quiet.db.transaction() as session:
        kept = await sessions.current(session, browser, utcnow())
        assert kept is not None
        await self_service.sign_out_others(session, Actor(user.id), user.id, kept.id, utcnow())

    assert await event_types(quiet) == [events.SESSIONS_REVOKED]
    async with quiet.db.transaction() as session:
        body = json.loads(await session.scalar(select(WebhookEvent.body)))
    assert body["data"] == {"user_id": str(user.id)}
    assert len(await deliveries(quiet)) == 1


# --- delivery ---------------------------------------------------------------------------------


async def test_member_removed_reaches_the_consumer_signed_once(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    secret = (await subscribe(client, quiet, receiver.url))["secret"]
    account_id, user_id = await member_of_new_account(quiet)
    removed = await client.delete(
        f"/api/v1/accounts/{account_id}/members/{user_id}", headers=await staff_headers(quiet)
    )
    assert removed.status_code == 204

    assert await quiet.webhooks.run_once() == 1
    assert await quiet.webhooks.run_once() == 0
    ((headers, body),) = receiver.requests
    assert headers["Content-Type"] == "application/json"
    event = verify(headers, body, secret)
    assert event["type"] == events.MEMBER_REMOVED
    assert event["data"] == {"account_id": str(account_id), "user_id": str(user_id)}
    assert set(event) == {"id", "type", "occurred_at", "data"}
    assert event["occurred_at"].endswith("Z")
    (delivery,) = await deliveries(quiet)
    assert delivery.delivered_at is not None
    assert delivery.attempts == 1


async def test_the_delivered_signature_refuses_replay_tampering_and_other_secrets(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    secret = (await subscribe(client, quiet, receiver.url))["secret"]
    account_id, user_id = await member_of_new_account(quiet)
    async with quiet.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account_id, user_id, utcnow())
    await quiet.webhooks.run_once()
    ((headers, body),) = receiver.requests
    signed_at = int(headers[SIGNATURE_HEADER].split(",")[0].removeprefix("t="))

    assert verify(headers, body, secret, now=signed_at + 300)["type"] == events.MEMBER_REMOVED
    with pytest.raises(WebhookError, match="tolerance"):
        verify(headers, body, secret, now=signed_at + 301)
    tampered = json.dumps(json.loads(body) | {"data": {"user_id": str(uuid.uuid4())}}).encode()
    with pytest.raises(WebhookError, match="no signature matches"):
        verify(headers, tampered, secret, now=signed_at)
    with pytest.raises(WebhookError, match="no signature matches"):
        verify(headers, body, "whsec_not_this_one", now=signed_at)


async def test_a_consumer_that_is_down_gets_the_event_with_backoff_once_back(
    client: httpx.AsyncClient, quiet: Runtime
) -> None:
    port = free_port()  # nothing listens here yet: the consumer is down
    url = f"http://127.0.0.1:{port}/hooks/identity"
    secret = (await subscribe(client, quiet, url))["secret"]
    account_id, user_id = await member_of_new_account(quiet)
    async with quiet.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account_id, user_id, utcnow())

    waits = []
    for attempt in (1, 2, 3):
        before = utcnow()
        assert await quiet.webhooks.run_once() == 0
        (delivery,) = await deliveries(quiet)
        assert delivery.attempts == attempt
        assert delivery.delivered_at is None and delivery.failed_at is None
        assert delivery.last_error and "Connect" in delivery.last_error
        waits.append(delivery.next_attempt_at - before)
        # Not due yet: running again attempts nothing.
        assert await quiet.webhooks.run_once() == 0
        assert (await deliveries(quiet))[0].attempts == attempt
        await make_due(quiet)
    # Exponential: 30 s, 1 min, 2 min (each measured from just before its attempt).
    for wait, expected in zip(waits, (30, 60, 120), strict=True):
        assert timedelta(seconds=expected) <= wait < timedelta(seconds=expected + 5)

    with Receiver(port).running() as back:
        assert await quiet.webhooks.run_once() == 1
        assert await quiet.webhooks.run_once() == 0
    ((headers, body),) = back.requests
    assert verify(headers, body, secret)["data"]["user_id"] == str(user_id)
    (delivery,) = await deliveries(quiet)
    assert delivery.attempts == 4
    assert delivery.delivered_at is not None and delivery.last_error is None


async def test_an_error_answer_is_retried_and_the_last_attempt_gives_up(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    receiver.status = 500
    await subscribe(client, quiet, receiver.url)
    account_id, user_id = await member_of_new_account(quiet)
    async with quiet.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account_id, user_id, utcnow())
    assert await quiet.webhooks.run_once() == 0
    (delivery,) = await deliveries(quiet)
    assert delivery.last_error == "HTTP 500" and delivery.failed_at is None

    async with quiet.db.transaction() as session:
        await session.execute(update(WebhookDelivery).values(attempts=MAX_ATTEMPTS - 1))
    await make_due(quiet)
    assert await quiet.webhooks.run_once() == 0
    (delivery,) = await deliveries(quiet)
    assert delivery.attempts == MAX_ATTEMPTS and delivery.failed_at is not None
    await make_due(quiet)
    assert await quiet.webhooks.run_once() == 0
    assert len(receiver.requests) == 2


# "localhost." is the same host fully qualified, and is delivered to alike.
@pytest.mark.parametrize("name", ["localhost", "localhost."])
async def test_a_host_name_is_resolved_and_delivered_to_when_loopback_is_allowed(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver, name: str
) -> None:
    await subscribe(client, quiet, receiver.url.replace("127.0.0.1", name))
    account_id, user_id = await member_of_new_account(quiet)
    async with quiet.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account_id, user_id, utcnow())
    assert await quiet.webhooks.run_once() == 1
    assert len(receiver.requests) == 1


async def test_a_name_resolving_to_an_internal_address_fails_at_connection_and_is_retried(
    client: httpx.AsyncClient, quiet: Runtime
) -> None:
    # A name, not an address, so the URL check passes it: only the connection learns what it
    # resolves to. DNS is a stand-in here, answering as a record pointed at an internal
    # address would, whatever this machine's own names resolve to.
    name = "billing.example.com"
    await subscribe(client, quiet, f"https://{name}/hooks/identity")
    account_id, user_id = await member_of_new_account(quiet)
    async with quiet.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account_id, user_id, utcnow())
    answers = {name: ["127.0.0.1"]}
    asked: list[str] = []

    async def dns(host: str) -> list[str]:
        asked.append(host)
        return answers[host]

    strict = WebhookDispatcher(
        quiet.db, quiet.webhook_encryptor, allow_http_loopback=False, resolver=dns
    )

    before = utcnow()
    assert await strict.run_once() == 0
    (failed,) = await deliveries(quiet)
    assert failed.last_error == (
        f"ConnectError: Refused: {name} resolves to 127.0.0.1, "
        "a private, loopback or link-local address."
    )
    assert failed.attempts == 1 and failed.failed_at is None
    assert failed.next_attempt_at >= before + FIRST_RETRY

    # DNS can answer differently at the next attempt: the name is resolved and vetted again.
    answers[name] = ["10.0.0.7"]
    await make_due(quiet)
    assert await strict.run_once() == 0
    (failed,) = await deliveries(quiet)
    assert failed.last_error and f"{name} resolves to 10.0.0.7" in failed.last_error
    assert failed.attempts == 2 and failed.failed_at is None
    assert asked == [name, name]


async def _stored_before_the_check(runtime: Runtime, urls: list[str]) -> None:
    """Subscriptions to ``urls`` stored as an older release let them be, and an event for
    each: a member removed."""
    async with runtime.db.transaction() as session:
        for url in urls:
            session.add(
                WebhookSubscription(
                    url=url,
                    event_types=REMOVED,
                    secret_ciphertext=runtime.webhook_encryptor.encrypt("whsec_legacy"),
                    description="",
                    created_at=utcnow(),
                )
            )
    account_id, user_id = await member_of_new_account(runtime)
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account_id, user_id, utcnow())


async def test_a_subscription_stored_before_numeric_spellings_were_refused_gives_up_at_once(
    quiet: Runtime,
) -> None:
    # Such rows may be in the database from before the URL check read these spellings; the
    # check runs again before each attempt, so they fail without a connection being made, and
    # for good: the same URL would be refused at every retry.
    await _stored_before_the_check(
        quiet, ["https://127.1/hooks/identity", "https://2852039166/latest/meta-data"]
    )
    strict = WebhookDispatcher(quiet.db, quiet.webhook_encryptor, allow_http_loopback=False)

    assert await strict.run_once() == 0
    failed = await deliveries(quiet)
    assert [delivery.last_error for delivery in failed] == [
        "The URL must not point at a private, loopback or link-local address."
    ] * 2
    assert all(delivery.failed_at is not None and delivery.attempts == 1 for delivery in failed)
    await make_due(quiet)
    assert await strict.run_once() == 0
    assert [delivery.attempts for delivery in await deliveries(quiet)] == [1, 1]


# Hosts that urlsplit reads but the HTTP client cannot send to: not IDNA (a symbol, an
# invisible character, a bad A-label), a control character, an IPv6 literal that is none.
UNSENDABLE = [
    "https://\u2603.example.com/hooks",
    "https://bil\u00adling.example.com/hooks",
    "https://xn--zz.example.com/hooks",
    "https://billing.example.com/hooks/\x7f",
    "https://[v1.x]/hooks",
]


@pytest.mark.parametrize("url", UNSENDABLE)
async def test_a_url_the_http_client_cannot_send_to_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, url: str
) -> None:
    body = {"url": url, "event_types": REMOVED}
    response = await client.post(API, json=body, headers=await staff_headers(runtime))
    assert response.status_code == 422, response.text
    assert problem_fields(response.json()) == {"url"}


async def test_a_stored_url_the_http_client_cannot_send_to_gives_up_at_once(
    quiet: Runtime,
) -> None:
    # Such a URL made the HTTP client raise outside its transport errors: the attempt broke,
    # kept its lease, and came back every lease for ever, with no reason stored.
    await _stored_before_the_check(quiet, UNSENDABLE)

    assert await quiet.webhooks.run_once() == 0
    failed = await deliveries(quiet)
    assert len(failed) == len(UNSENDABLE)
    assert {delivery.last_error for delivery in failed} == {"The URL is not a valid URL."}
    assert all(delivery.failed_at is not None and delivery.attempts == 1 for delivery in failed)


def test_the_backoff_doubles_up_to_a_cap_and_spans_more_than_a_few_hours() -> None:
    delays = [retry_delay(n) for n in range(1, MAX_ATTEMPTS)]
    assert delays[:4] == [FIRST_RETRY, FIRST_RETRY * 2, FIRST_RETRY * 4, FIRST_RETRY * 8]
    assert all(d is not None and d <= LONGEST_WAIT for d in delays)
    total = sum((d for d in delays if d is not None), timedelta())
    assert total > timedelta(hours=12)
    assert retry_delay(MAX_ATTEMPTS) is None


async def test_deleting_a_subscription_drops_its_pending_deliveries(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    subscription = await subscribe(client, quiet, receiver.url)
    account_id, user_id = await member_of_new_account(quiet)
    async with quiet.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account_id, user_id, utcnow())
    assert len(await deliveries(quiet)) == 1
    gone = await client.delete(f"{API}/{subscription['id']}", headers=await staff_headers(quiet))
    assert gone.status_code == 204
    assert await deliveries(quiet) == []
    assert await quiet.webhooks.run_once() == 0
    assert receiver.requests == []


async def test_a_subscription_deleted_while_an_event_is_recorded_fails_neither(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event's deliveries go to the subscriptions it read a moment before. On
    PostgreSQL one deleted in between left the delivery's foreign key dangling: the change
    that emitted (here a removal; a disable alike) failed with a 500."""
    subscription = await subscribe(client, quiet, receiver.url)
    account_id, user_id = await member_of_new_account(quiet)
    headers = await staff_headers(quiet)
    real_list = webhooks_repository.list_subscriptions
    deletions: list[asyncio.Task[httpx.Response]] = []

    async def list_as_one_is_deleted(*args: Any, **kwargs: Any) -> Any:
        found = await real_list(*args, **kwargs)
        # The deletion gets its chance to commit before the deliveries are stored.
        deletions.append(
            asyncio.create_task(client.delete(f"{API}/{subscription['id']}", headers=headers))
        )
        await asyncio.wait(deletions, timeout=1)
        return found

    monkeypatch.setattr(webhooks_repository, "list_subscriptions", list_as_one_is_deleted)
    async with quiet.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account_id, user_id, utcnow())
    gone = await deletions[0]

    assert gone.status_code == 204, gone.text
    assert await deliveries(quiet) == []


async def test_the_running_app_delivers_on_its_own(
    client: httpx.AsyncClient, runtime: Runtime, receiver: Receiver
) -> None:
    """The dispatcher started in the lifespan polls the outbox without being asked."""
    await subscribe(client, runtime, receiver.url)
    account_id, user_id = await member_of_new_account(runtime)
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account_id, user_id, utcnow())
    for _ in range(100):
        if receiver.requests:
            break
        await asyncio.sleep(0.05)
    assert len(receiver.requests) == 1


async def test_a_backlog_larger_than_a_batch_goes_out_without_waiting_between_batches(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    """A role change reaching many members queues an event for each; a member removed meanwhile
    must not wait a poll interval for every batch of 20 ahead of it (10 a second)."""
    await subscribe(client, quiet, receiver.url)
    count = dispatcher.BATCH * 2 + 1
    async with quiet.db.transaction() as session:
        for _ in range(count):
            await events.emit(session, events.MEMBER_REMOVED, events.about_user(uuid.uuid4()))
    delivered = await quiet.webhooks.run_once()
    errors = {row.last_error for row in await deliveries(quiet)} - {None}
    assert (delivered, errors) == (count, set())
    assert len(receiver.requests) == count


async def test_batches_load_the_certificate_authorities_once_and_off_the_event_loop(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading the trusted certificate authorities takes ~25 ms of CPU: done on the event
    loop for every batch with something due, it held up every request in flight."""
    loaded_on: list[threading.Thread] = []
    create_ssl_context = httpx.create_ssl_context

    def recorded(*args: Any, **kwargs: Any) -> Any:
        loaded_on.append(threading.current_thread())
        return create_ssl_context(*args, **kwargs)

    monkeypatch.setattr(httpx, "create_ssl_context", recorded)
    await subscribe(client, quiet, receiver.url)
    for _ in range(2):
        async with quiet.db.transaction() as session:
            await events.emit(session, events.MEMBER_REMOVED, events.about_user(uuid.uuid4()))
        assert await quiet.webhooks.run_once() == 1

    assert len(receiver.requests) == 2
    assert len(loaded_on) == 1
    assert loaded_on[0] is not threading.main_thread()


# --- a consumer that is down does not hold up the others -----------------------------------


@contextmanager
def unanswering_consumer() -> Iterator[int]:
    """A consumer whose host takes connections and never answers: a listener never accepting,
    so the kernel completes a connection or two (whose requests get no answer) and drops the
    rest's handshakes, as a host dropping packets does. Yields its port."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


async def emit_removals(runtime: Runtime, count: int) -> list[uuid.UUID]:
    """``count`` events, one after the other; their ids, oldest first."""
    async with runtime.db.transaction() as session:
        for _ in range(count):
            await events.emit(session, events.MEMBER_REMOVED, events.about_user(uuid.uuid4()))
        statement = select(WebhookEvent.id).order_by(WebhookEvent.occurred_at)
        return list((await session.scalars(statement)).all())[-count:]


async def deliveries_to(runtime: Runtime, subscription: dict[str, Any]) -> list[WebhookDelivery]:
    wanted = uuid.UUID(subscription["id"])
    return [row for row in await deliveries(runtime) if row.subscription_id == wanted]


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    # A second to connect instead of 5, and 5 to answer instead of 10 (ample for the healthy
    # consumer): each batch that tries the silent consumer waits this long, as it would wait
    # out the real ones.
    monkeypatch.setattr(dispatcher, "TIMEOUT", httpx.Timeout(5.0, connect=1.0))


async def test_a_down_consumer_with_a_backlog_does_not_hold_up_the_others(
    client: httpx.AsyncClient,
    quiet: Runtime,
    receiver: Receiver,
    short_timeouts: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A role change reaching thousands of members queued an event each for a consumer that is
    down; a healthy consumer's events, queued after them, go out in the first batches, and the
    down one's backlog waits for its retry instead of being tried batch after batch."""
    with unanswering_consumer() as port:
        down = await subscribe(client, quiet, f"http://127.0.0.1:{port}/hooks")
        await emit_removals(quiet, dispatcher.BATCH * 3)
        await subscribe(client, quiet, receiver.url)
        await emit_removals(quiet, 30)

        delivered_after_each_batch = []
        run_batch = quiet.webhooks.run_batch

        async def counted() -> tuple[int, int]:
            result = await run_batch()
            delivered_after_each_batch.append(len(receiver.requests))
            return result

        monkeypatch.setattr(quiet.webhooks, "run_batch", counted)
        await asyncio.wait_for(quiet.webhooks.run_once(), GUARD_SECONDS)

    # Half the first batch, as the down consumer had due deliveries too; the rest next.
    assert delivered_after_each_batch[:2] == [10, 30]
    waiting = await deliveries_to(quiet, down)
    assert len(waiting) == dispatcher.BATCH * 3 + 30
    assert sum(row.attempts for row in waiting) == 10
    assert all(row.delivered_at is None and row.failed_at is None for row in waiting)
    assert min(row.next_attempt_at for row in waiting) > utcnow()


# More than the 1,000 longest-waiting deliveries ``due`` once took turns among.
LARGE_BACKLOG = 1_100


async def queue_backlog(runtime: Runtime, subscription: dict[str, Any], count: int) -> None:
    """``count`` events for the subscription alone, older than any emitted after; inserted
    in bulk, as emitting each would take seconds."""
    now = utcnow()
    rows = [
        (uuid.uuid4(), now - timedelta(hours=1) + timedelta(milliseconds=k)) for k in range(count)
    ]
    async with runtime.db.transaction() as session:
        await session.execute(
            insert(WebhookEvent),
            [
                {"id": i, "type": events.MEMBER_REMOVED, "occurred_at": at, "body": "{}"}
                for i, at in rows
            ],
        )
        await session.execute(
            insert(WebhookDelivery),
            [
                {
                    "id": uuid.uuid4(),
                    "event_id": i,
                    "subscription_id": uuid.UUID(subscription["id"]),
                    "attempts": 0,
                    "next_attempt_at": at,
                }
                for i, at in rows
            ],
        )


async def test_a_consumer_answering_errors_with_a_large_backlog_does_not_hold_up_the_others(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    """A consumer that answers (500 here) is not deferred as a silent one is, so its backlog
    stays due. Turns were taken only among the 1,000 longest-waiting deliveries, which its
    backlog filled: the other consumer's event waited until all of it had been tried once
    (after a role change reaching 100,000 members, thousands of batches)."""
    with Receiver(status=500).running() as failing:
        busy = await subscribe(client, quiet, failing.url)
        await queue_backlog(quiet, busy, LARGE_BACKLOG)
        await subscribe(client, quiet, receiver.url)
        async with quiet.db.transaction() as session:
            await members.remove_member(
                session, SYSTEM, *await member_of_new_account(quiet), utcnow()
            )

        assert await quiet.webhooks.run_batch() == (1, dispatcher.BATCH)

    assert len(receiver.requests) == 1
    assert len(failing.requests) == dispatcher.BATCH - 1


async def test_a_down_consumer_s_backlog_keeps_its_order_and_arrives_whole_once_back(
    client: httpx.AsyncClient, quiet: Runtime, short_timeouts: None
) -> None:
    with unanswering_consumer() as port:
        down = await subscribe(client, quiet, f"http://127.0.0.1:{port}/hooks")
        emitted = await emit_removals(quiet, dispatcher.BATCH + 10)
        assert await asyncio.wait_for(quiet.webhooks.run_once(), GUARD_SECONDS) == 0

    tried, deferred = emitted[: dispatcher.BATCH], emitted[dispatcher.BATCH :]
    rows = {row.event_id: row for row in await deliveries_to(quiet, down)}
    assert {rows[event_id].attempts for event_id in tried} == {1}
    # Deferred without using an attempt, to no earlier than any tried one's retry: once due,
    # the subscription's deliveries come in the order they were due before.
    assert {rows[event_id].attempts for event_id in deferred} == {0}
    assert max(rows[i].next_attempt_at for i in tried) <= rows[deferred[0]].next_attempt_at
    later = max(row.next_attempt_at for row in rows.values())
    async with quiet.db.transaction() as session:
        due = await webhooks_repository.due(session, later, len(emitted))
    by_id = {row.id: event_id for event_id, row in rows.items()}
    assert set(due[: dispatcher.BATCH]) == {rows[i].id for i in tried}
    assert [by_id[i] for i in due[dispatcher.BATCH :]] == deferred

    with Receiver(port).running() as back:
        await make_due(quiet)
        assert await quiet.webhooks.run_once() == len(emitted)
    received = [json.loads(body)["id"] for _, body in back.requests]
    assert sorted(received) == sorted(str(event_id) for event_id in emitted)


async def test_one_long_retry_does_not_hold_a_consumer_s_new_events_for_hours(
    client: httpx.AsyncClient, quiet: Runtime, short_timeouts: None
) -> None:
    """A batch of old deliveries near their last attempts (retried 4 h on) that get no
    answer, perhaps one bad minute of a consumer otherwise up: the new event waiting behind
    them is held back a few minutes at most, not the 4 h of their own retry."""
    with unanswering_consumer() as port:
        down = await subscribe(client, quiet, f"http://127.0.0.1:{port}/hooks")
        emitted = await emit_removals(quiet, dispatcher.BATCH + 1)
        async with quiet.db.transaction() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.event_id.in_(emitted[: dispatcher.BATCH]))
                .values(attempts=MAX_ATTEMPTS - 2)
            )
        before = utcnow()
        await asyncio.wait_for(quiet.webhooks.run_once(), GUARD_SECONDS)

    rows = {row.event_id: row for row in await deliveries_to(quiet, down)}
    assert min(rows[i].next_attempt_at for i in emitted[:-1]) >= before + LONGEST_WAIT
    newest = rows[emitted[-1]]
    assert newest.attempts == 0
    assert newest.next_attempt_at <= utcnow() + dispatcher.LONGEST_DEFERRAL


async def test_processes_deferring_one_subscription_at_once_wait_for_each_other(
    client: httpx.AsyncClient, quiet: Runtime
) -> None:
    """Several processes' dispatchers may each find the same consumer silent: their
    deferrals lock its deliveries in one order, so none deadlocks, and the latest stands."""
    down = await subscribe(client, quiet, f"http://127.0.0.1:{free_port()}/hooks")
    await emit_removals(quiet, 400)
    now = utcnow()

    async def defer(seconds: int) -> None:
        async with quiet.db.transaction() as session:
            await webhooks_repository.defer(
                session, uuid.UUID(down["id"]), now + timedelta(seconds=seconds), now
            )

    for _ in range(5):
        await asyncio.gather(*(defer(30 + k) for k in range(6)))
    rows = await deliveries_to(quiet, down)
    assert {row.next_attempt_at for row in rows} == {now + timedelta(seconds=35)}


async def test_a_delivery_deferred_after_it_was_read_as_due_is_not_attempted(
    client: httpx.AsyncClient, quiet: Runtime
) -> None:
    """Another process's dispatcher may find the consumer silent between this one reading a
    delivery as due and leasing it: the lease took it all the same, spending an attempt on a
    consumer known to be down, which a deferral promises not to."""
    down = await subscribe(client, quiet, f"http://127.0.0.1:{free_port()}/hooks")
    await emit_removals(quiet, 1)
    now = utcnow()
    async with quiet.db.transaction() as session:
        [delivery_id] = await webhooks_repository.due(session, now, 10)
    async with quiet.db.transaction() as session:
        await webhooks_repository.defer(
            session, uuid.UUID(down["id"]), now + timedelta(minutes=5), now
        )

    async with quiet.db.transaction() as session:
        leased = await webhooks_repository.lease(
            session, delivery_id, utcnow(), timedelta(minutes=1)
        )

    assert leased is None
    [row] = await deliveries_to(quiet, down)
    assert row.attempts == 0 and row.leased_until is None


# --- the admin API ----------------------------------------------------------------------------


async def test_the_secret_is_shown_once_and_stored_encrypted(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    created = await subscribe(client, runtime, "https://billing.example.com/hooks")
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    assert created["event_types"] == [events.MEMBER_REMOVED]
    listed = await client.get(API, headers=await staff_headers(runtime))
    assert listed.status_code == 200
    (item,) = listed.json()
    assert "secret" not in item
    assert item["id"] == created["id"] and item["url"] == "https://billing.example.com/hooks"
    async with runtime.db.transaction() as session:
        row = await session.get(WebhookSubscription, uuid.UUID(created["id"]))
    assert row is not None and created["secret"] not in row.secret_ciphertext
    assert runtime.webhook_encryptor.decrypt(row.secret_ciphertext) == created["secret"]


async def test_only_staff_manage_subscriptions(client: httpx.AsyncClient, runtime: Runtime) -> None:
    created = await subscribe(client, runtime, "https://billing.example.com/hooks")
    body = {"url": "https://evil.example.com/", "event_types": [events.MEMBER_REMOVED]}
    owner = await make_user(runtime)
    await make_account(runtime, owner)
    for headers in (await user_headers(runtime, owner), await service_headers(runtime)):
        for method, path, json_body in (
            ("POST", API, body),
            ("GET", API, None),
            ("DELETE", f"{API}/{created['id']}", None),
        ):
            response = await client.request(method, path, json=json_body, headers=headers)
            assert response.status_code == 403, (method, path)
            assert response.headers["content-type"] == "application/problem+json"
    anonymous = await client.get(API)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    async with runtime.db.transaction() as session:
        count = await session.scalar(select(func.count()).select_from(WebhookSubscription))
    assert count == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8001/h",
        "http://localhost/h",
        "http://LOCALHOST./h",
        "http://localhost.:8001/h",
        "http://127.0.0.1./h",
        "http://api.localhost:8001/h",
        "http://api.localhost./h",
        "http://[::1]/h",
    ],
)
def test_http_to_loopback_needs_the_setting(url: str) -> None:
    assert refusal(url, allow_http_loopback=True) is None
    assert refusal(url, allow_http_loopback=False) == "The URL must use https."


@pytest.mark.parametrize(
    "host", ["localhost.", "LOCALHOST.", "Api.LocalHost", "api.localhost.", "a.b.localhost."]
)
def test_every_name_under_localhost_is_loopback(host: str) -> None:
    # RFC 6761: such names never leave the machine, whatever a resolver is configured to say.
    assert refusal(f"https://{host}/h", allow_http_loopback=False) == (
        "The URL must not point at a private, loopback or link-local address."
    )


@pytest.mark.parametrize("host", ["localhost.example.com", "notlocalhost", "localhostx"])
def test_names_that_only_contain_localhost_are_not_loopback(host: str) -> None:
    assert refusal(f"https://{host}/h", allow_http_loopback=False) is None


def test_http_elsewhere_is_refused_even_with_the_setting() -> None:
    assert refusal("http://10.1.2.3/h", allow_http_loopback=True) == "The URL must use https."
    assert refusal("https://billing.example.com/h", allow_http_loopback=False) is None


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"url": "http://billing.example.com/h", "event_types": REMOVED}, 422, "url"),
        ({"url": "https://10.0.0.7/h", "event_types": REMOVED}, 422, "url"),
        ({"url": "https://169.254.169.254/latest", "event_types": REMOVED}, 422, "url"),
        ({"url": "https://[::1]/h", "event_types": REMOVED}, 422, "url"),
        ({"url": "https://localhost/h", "event_types": REMOVED}, 422, "url"),
        ({"url": "ftp://billing.example.com/", "event_types": REMOVED}, 422, "url"),
        (
            {"url": "https://u:p@b.example.com/", "event_types": REMOVED},
            422,
            "url",
        ),
        (
            {"url": "https://b.example.com:99999/", "event_types": REMOVED},
            422,
            "url",
        ),
        ({"url": "not a url", "event_types": REMOVED}, 422, "url"),
        (
            {"url": "https://billing.example.com/", "event_types": ["member.added"]},
            422,
            "event_types",
        ),
        ({"url": "https://billing.example.com/", "event_types": []}, 400, "event_types"),
        ({"url": "https://billing.example.com/"}, 400, "event_types"),
        ({"event_types": REMOVED}, 400, "url"),
        ({"url": "https://b.example.com/", "event_types": REMOVED, "x": 1}, 400, "x"),
        ({"url": "https://b.example.com/", "event_types": "member.removed"}, 400, "event_types"),
        # Longer than any event's name: refused as such, not echoed back in full.
        ({"url": "https://b.example.com/", "event_types": ["x" * 60_000]}, 400, "event_types"),
    ],
)
async def test_bad_input_is_a_problem_naming_the_field(
    client: httpx.AsyncClient, runtime: Runtime, body: dict[str, Any], status: int, field: str
) -> None:
    response = await client.post(API, json=body, headers=await staff_headers(runtime))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert problem_fields(response.json()) == {field}
    assert len(response.content) < 2_000


@pytest.mark.parametrize(
    "url",
    [
        "https://127.1/hook",
        "https://0x7f000001/hook",
        "https://2852039166/hook",  # 169.254.169.254
        "https://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 to 169.254.169.254
        "https://[2002:a00:1::1]/hook",  # 6to4 through 10.0.0.1
        # A trailing dot: URL parsers (WHATWG) read the host as the address without it.
        "https://127.0.0.1./hook",
        "https://0x7f.1./hook",
        "https://2130706433./hook",
        "https://169.254.169.254.:443/hook",
        "https://127\u30020\u30020\u30021\u3002/hook",  # ideographic full stops, IDNA's "."
    ],
)
async def test_an_internal_address_in_any_spelling_is_refused_as_a_private_literal_is(
    client: httpx.AsyncClient, runtime: Runtime, url: str
) -> None:
    headers = await staff_headers(runtime)
    body = {"event_types": REMOVED}
    literal = await client.post(API, json=body | {"url": "https://10.0.0.7/hook"}, headers=headers)
    spelled = await client.post(API, json=body | {"url": url}, headers=headers)
    assert (literal.status_code, spelled.status_code) == (422, 422)
    assert spelled.headers["content-type"] == "application/problem+json"
    assert spelled.json() == literal.json()
    assert (await client.get(API, headers=headers)).json() == []


async def test_a_url_subscribed_already_is_a_conflict_naming_its_subscription(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # A second subscription to one URL posted every event twice, under a second secret the
    # consumer did not keep: a POST retried after a timeout was enough to make one.
    headers = await staff_headers(runtime)
    first = await subscribe(client, runtime, "https://billing.example.com/hooks")
    again = await client.post(
        API,
        json={"url": " https://billing.example.com/hooks", "event_types": [events.USER_DISABLED]},
        headers=headers,
    )
    assert again.status_code == 409, again.text
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["subscription_id"] == first["id"]
    assert problem_fields(again.json()) == {"url"}
    assert [row["id"] for row in (await client.get(API, headers=headers)).json()] == [first["id"]]
    audit = await client.get(
        "/api/v1/audit", params={"action": "webhook.subscribed"}, headers=headers
    )
    assert [event["target_id"] for event in audit.json()["events"]] == [first["id"]]


async def test_a_url_longer_than_its_limit_in_bytes_is_refused_as_too_long(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Within 2,000 characters, but not bytes, the unit of the limit. (PostgreSQL's index of
    # the URLs themselves, since replaced by one of their digests, refused it with a 500.)
    # Characters that do not repeat, or PostgreSQL would compress the entry to fit.
    url = "https://billing.example.com/" + "".join(chr(0x4E00 + i) for i in range(1900))
    body = {"url": url, "event_types": REMOVED}
    refused = await client.post(API, json=body, headers=await staff_headers(runtime))
    assert refused.status_code == 422, refused.text
    assert problem_fields(refused.json()) == {"url"}
    assert "too long" in refused.json()["detail"]


async def test_one_url_subscribed_by_several_requests_at_once_is_subscribed_once(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = await staff_headers(runtime)
    body = {"url": "https://billing.example.com/hooks", "event_types": REMOVED}
    answers = await asyncio.gather(
        *(client.post(API, json=body, headers=headers) for _ in range(5))
    )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201, 409, 409, 409, 409], [answer.text for answer in answers]
    (made,) = [answer.json()["id"] for answer in answers if answer.status_code == 201]
    assert {a.json()["subscription_id"] for a in answers if a.status_code == 409} == {made}
    assert [row["id"] for row in (await client.get(API, headers=headers)).json()] == [made]


async def test_deleting_an_unknown_subscription_is_not_found(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = await staff_headers(runtime)
    missing = await client.delete(f"{API}/{uuid.uuid4()}", headers=headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    malformed = await client.delete(f"{API}/not-a-uuid", headers=headers)
    assert malformed.status_code == 404  # no route matches a path that is not a uuid


async def test_unsubscribing_is_audited_with_what_was_removed(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = await staff_headers(runtime)
    created = await subscribe(client, runtime, "https://billing.example.com/hooks")
    gone = await client.delete(f"{API}/{created['id']}", headers=headers)
    assert gone.status_code == 204
    audit = await client.get("/api/v1/audit", params={"target_id": created["id"]}, headers=headers)
    unsubscribed, subscribed = audit.json()["events"]
    stored = {"url": created["url"], "event_types": created["event_types"]}
    assert (subscribed["action"], subscribed["details"]["new"]) == ("webhook.subscribed", stored)
    # Once the row is gone, the log alone says which consumer stopped hearing what.
    assert unsubscribed["action"] == "webhook.unsubscribed"
    assert unsubscribed["details"]["old"] == stored
    assert unsubscribed["actor_user_id"] is not None


async def test_staff_disabling_a_user_signs_them_out_and_emits_user_disabled(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    secret = (await subscribe(client, quiet, receiver.url, [events.USER_DISABLED]))["secret"]
    user = await make_user(quiet)
    their_token = await user_headers(quiet, user)
    assert (await client.get("/api/v1/me/accounts", headers=their_token)).status_code == 200
    staff = await staff_headers(quiet)

    blank = await client.post(
        f"/api/v1/users/{user.id}/disable", json={"reason": " "}, headers=staff
    )
    assert blank.status_code == 422 and problem_fields(blank.json()) == {"reason"}
    disabled = await client.post(
        f"/api/v1/users/{user.id}/disable", json={"reason": "Left the company"}, headers=staff
    )
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    again = await client.post(
        f"/api/v1/users/{user.id}/disable", json={"reason": "Twice"}, headers=staff
    )
    assert again.status_code == 200
    audit = await client.get("/api/v1/audit", params={"action": "user.disabled"}, headers=staff)
    (entry,) = audit.json()["events"]  # once: the second changed nothing
    assert entry["details"]["reason"] == "Left the company"

    assert (await client.get("/api/v1/me/accounts", headers=their_token)).status_code == 401
    assert await event_types(quiet) == [events.SESSIONS_REVOKED, events.USER_DISABLED]
    assert await quiet.webhooks.run_once() == 1
    ((headers, body),) = receiver.requests
    assert verify(headers, body, secret)["data"] == {"user_id": str(user.id)}
    missing = await client.post(
        f"/api/v1/users/{uuid.uuid4()}/disable", json={"reason": "R"}, headers=staff
    )
    assert missing.status_code == 404


async def test_staff_enabling_a_user_again_emits_user_enabled(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    """A consumer that stopped trusting a user on ``user.disabled`` learns they are back."""
    secret = (await subscribe(client, quiet, receiver.url, [events.USER_ENABLED]))["secret"]
    user = await make_user(quiet)
    staff = await staff_headers(quiet)
    url = f"/api/v1/users/{user.id}"
    assert (await client.post(f"{url}/enable", json={"reason": "R"}, headers=staff)).json()[
        "disabled"
    ] is False  # enabled already: nothing changes, nothing is told
    assert await event_types(quiet) == []
    await client.post(f"{url}/disable", json={"reason": "Fraud report"}, headers=staff)

    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned):
        async with quiet.db.transaction() as session:
            await enable_user(session, SYSTEM, user.id, "Cleared")
            raise Abandoned
    enabled = await client.post(f"{url}/enable", json={"reason": "Cleared"}, headers=staff)
    again = await client.post(f"{url}/enable", json={"reason": "Twice"}, headers=staff)

    assert enabled.status_code == 200 and enabled.json()["disabled"] is False
    assert again.status_code == 200
    assert await event_types(quiet) == [
        events.SESSIONS_REVOKED,
        events.USER_DISABLED,
        events.USER_ENABLED,  # once: the rolled-back enable and the second one told nothing
    ]
    assert await quiet.webhooks.run_once() == 1
    ((headers, body),) = receiver.requests
    delivered = verify(headers, body, secret)
    assert (delivered["type"], delivered["data"]) == (
        events.USER_ENABLED,
        {"user_id": str(user.id)},
    )


# --- deliveries, as staff see and resend them ----------------------------------------------


async def remove_a_member(runtime: Runtime) -> uuid.UUID:
    """One member.removed event; returns the removed user's id."""
    account_id, user_id = await member_of_new_account(runtime)
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account_id, user_id, utcnow())
    return user_id


async def give_up_on_pending(runtime: Runtime) -> None:
    """The last retry of every pending delivery, due now and failing (the consumer answers 500)."""
    async with runtime.db.transaction() as session:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.delivered_at.is_(None))
            .values(attempts=MAX_ATTEMPTS - 1)
        )
    await make_due(runtime)
    assert await runtime.webhooks.run_once() == 0


async def test_staff_see_what_became_of_each_event_newest_first(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    subscription = await subscribe(client, quiet, receiver.url)
    headers = await staff_headers(quiet)
    path = f"{API}/{subscription['id']}/deliveries"
    delivered_user = await remove_a_member(quiet)
    assert await quiet.webhooks.run_once() == 1
    receiver.status = 500
    failed_user = await remove_a_member(quiet)
    await give_up_on_pending(quiet)
    pending_user = await remove_a_member(quiet)
    assert await quiet.webhooks.run_once() == 0

    listed = await client.get(path, headers=headers)
    assert listed.status_code == 200, listed.text
    rows = listed.json()
    bodies = {
        json.loads(body)["data"]["user_id"]: json.loads(body) for _, body in receiver.requests
    }
    assert [row["event_id"] for row in rows] == [
        bodies[str(user)]["id"] for user in (pending_user, failed_user, delivered_user)
    ]
    assert [row["state"] for row in rows] == ["pending", "failed", "delivered"]
    assert [row["attempts"] for row in rows] == [1, MAX_ATTEMPTS, 1]
    assert [row["last_error"] for row in rows] == ["HTTP 500", "HTTP 500", None]
    assert {row["event_type"] for row in rows} == {events.MEMBER_REMOVED}
    pending, failed, delivered = rows
    assert pending["next_attempt_at"] and not pending["delivered_at"] and not pending["failed_at"]
    assert failed["failed_at"] and failed["next_attempt_at"] is None
    assert delivered["delivered_at"] and delivered["next_attempt_at"] is None

    only_failed = await client.get(path, params={"state": "failed"}, headers=headers)
    assert only_failed.json() == [failed]
    second_page = await client.get(path, params={"offset": 1, "limit": 1}, headers=headers)
    assert second_page.json() == [failed]
    other = await subscribe(client, quiet, receiver.url.replace("identity", "other"))
    assert (await client.get(f"{API}/{other['id']}/deliveries", headers=headers)).json() == []


async def test_a_given_up_delivery_resent_reaches_the_consumer_with_a_fresh_day_of_retries(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    subscription = await subscribe(client, quiet, receiver.url)
    receiver.status = 500
    user_id = await remove_a_member(quiet)
    assert await quiet.webhooks.run_once() == 0
    await give_up_on_pending(quiet)
    (given_up,) = await deliveries(quiet)
    assert given_up.failed_at is not None
    await make_due(quiet)
    assert await quiet.webhooks.run_once() == 0  # given up: not tried again by itself

    receiver.status = 204
    headers = await staff_headers(quiet)
    resent = await client.post(
        f"{API}/{subscription['id']}/deliveries/{given_up.id}/resend", headers=headers
    )
    assert resent.status_code == 202, resent.text
    body = resent.json()
    assert (body["state"], body["attempts"], body["last_error"]) == ("pending", 0, None)
    assert await quiet.webhooks.run_once() == 1
    (first, *_, last) = receiver.requests
    assert last[1] == first[1]  # the same event, byte for byte, under a fresh signature
    assert verify(last[0], last[1], subscription["secret"])["data"]["user_id"] == str(user_id)
    (delivered,) = await deliveries(quiet)
    assert delivered.delivered_at is not None and delivered.attempts == 1

    audit = await client.get("/api/v1/audit", headers=headers)
    (entry,) = [e for e in audit.json()["events"] if e["action"] == "webhook.delivery_resent"]
    assert entry["target_id"] == str(given_up.id)


async def test_a_delivered_event_can_be_sent_again_on_request(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    subscription = await subscribe(client, quiet, receiver.url)
    await remove_a_member(quiet)
    assert await quiet.webhooks.run_once() == 1
    (delivery,) = await deliveries(quiet)
    resent = await client.post(
        f"{API}/{subscription['id']}/deliveries/{delivery.id}/resend",
        headers=await staff_headers(quiet),
    )
    assert resent.json()["state"] == "pending"
    assert await quiet.webhooks.run_once() == 1
    assert len(receiver.requests) == 2 and receiver.requests[0][1] == receiver.requests[1][1]


async def test_a_resend_while_the_last_attempt_is_in_flight_outlives_its_failure(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscription = await subscribe(client, quiet, receiver.url)
    receiver.status = 500
    await remove_a_member(quiet)
    async with quiet.db.transaction() as session:
        await session.execute(update(WebhookDelivery).values(attempts=MAX_ATTEMPTS - 1))
    (delivery,) = await deliveries(quiet)
    resend = f"{API}/{subscription['id']}/deliveries/{delivery.id}/resend"
    headers = await staff_headers(quiet)
    post = WebhookDispatcher._post

    async def resent_meanwhile(self: WebhookDispatcher, *args: Any) -> None:
        try:
            await post(self, *args)
        finally:  # staff ask for it again while the last attempt is still out
            assert (await client.post(resend, headers=headers)).status_code == 202

    monkeypatch.setattr(WebhookDispatcher, "_post", resent_meanwhile)
    assert await quiet.webhooks.run_once() == 0
    monkeypatch.undo()
    (after,) = await deliveries(quiet)
    # The attempt that failed was the last of the old count, not of the fresh one.
    assert after.failed_at is None and after.leased_until is None
    receiver.status = 204
    assert await quiet.webhooks.run_once() == 1


async def test_resending_needs_a_delivery_of_that_subscription(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    ours = await subscribe(client, quiet, receiver.url)
    theirs = await subscribe(client, quiet, receiver.url.replace("identity", "other"))
    await remove_a_member(quiet)
    assert await quiet.webhooks.run_once() == 2
    (delivery, _) = [d for d in await deliveries(quiet) if str(d.subscription_id) == ours["id"]] * 2
    headers = await staff_headers(quiet)
    for subscription_id, delivery_id in (
        (theirs["id"], delivery.id),
        (ours["id"], uuid.uuid4()),
        (uuid.uuid4(), delivery.id),
    ):
        response = await client.post(
            f"{API}/{subscription_id}/deliveries/{delivery_id}/resend", headers=headers
        )
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert await quiet.webhooks.run_once() == 0  # nothing was queued again
    unknown = await client.get(f"{API}/{uuid.uuid4()}/deliveries", headers=headers)
    assert unknown.status_code == 404
    bad_state = await client.get(
        f"{API}/{ours['id']}/deliveries", params={"state": "lost"}, headers=headers
    )
    assert bad_state.status_code == 400
    assert bad_state.headers["content-type"] == "application/problem+json"
    # The query's name, not the handler argument's that Litestar knows it by.
    assert problem_fields(bad_state.json()) == {"state"}


async def test_a_410_answer_gives_up_at_once(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    receiver.status = 410
    await subscribe(client, quiet, receiver.url)
    await remove_a_member(quiet)
    assert await quiet.webhooks.run_once() == 0
    (delivery,) = await deliveries(quiet)
    assert delivery.failed_at is not None and delivery.attempts == 1
    assert delivery.last_error == "HTTP 410: the consumer says this URL is gone"
    await make_due(quiet)
    assert await quiet.webhooks.run_once() == 0
    assert len(receiver.requests) == 1


async def test_each_attempt_is_counted_by_outcome_on_metrics(
    client: httpx.AsyncClient, quiet: Runtime, receiver: Receiver
) -> None:
    def counted() -> list[float]:
        return [
            REGISTRY.get_sample_value("identity_webhook_deliveries_total", {"result": result})
            or 0.0
            for result in ("delivered", "failed", "gave_up")
        ]

    before = counted()
    await subscribe(client, quiet, receiver.url)
    await remove_a_member(quiet)
    assert await quiet.webhooks.run_once() == 1
    receiver.status = 503
    await remove_a_member(quiet)
    assert await quiet.webhooks.run_once() == 0
    receiver.status = 410
    await make_due(quiet)
    assert await quiet.webhooks.run_once() == 0
    assert [after - was for after, was in zip(counted(), before, strict=True)] == [1, 1, 1]


# --- hostile consumers: we read only the status, and the whole exchange has a deadline ------
# httpx's timeouts are per network operation, so a consumer that kept sending (a body without
# end, or its headers a byte at a time) was read for as long as it liked, while the
# dispatcher waited for every delivery of its batch.

HUGE_BODY = 64 * 1024 * 1024  # far more than the socket buffers between us can hold
# Only so that a dispatcher without the deadline fails here instead of hanging the suite.
GUARD_SECONDS = 60


@contextmanager
def consumer(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A consumer on 127.0.0.1 that reads one request's head and then runs ``answer``."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            with contextlib.suppress(OSError):  # the dispatcher hung up
                answer(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hooks"
    finally:
        listener.close()
        thread.join(GUARD_SECONDS)


async def deliver_one(client: httpx.AsyncClient, runtime: Runtime, url: str) -> int:
    await subscribe(client, runtime, url)
    account_id, user_id = await member_of_new_account(runtime)
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account_id, user_id, utcnow())
    return await asyncio.wait_for(runtime.webhooks.run_once(), GUARD_SECONDS)


async def test_the_answer_body_is_never_read(client: httpx.AsyncClient, quiet: Runtime) -> None:
    sent = []

    def endless_body(connection: socket.socket) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % HUGE_BODY)
        chunk = b"x" * 65536
        for _ in range(HUGE_BODY // len(chunk)):
            connection.sendall(chunk)
            sent.append(len(chunk))

    with consumer(endless_body) as url:
        assert await deliver_one(client, quiet, url) == 1
    assert sum(sent) < HUGE_BODY  # we hung up once the status was in


async def test_a_consumer_dripping_its_answer_is_cut_off_at_the_deadline(
    client: httpx.AsyncClient, quiet: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher, "MAX_ATTEMPT_SECONDS", 1)
    stop = threading.Event()

    def drip(connection: socket.socket) -> None:
        # Each byte well within httpx's 10 s read timeout, forever.
        for byte in b"HTTP/1.1 200 OK\r\nx-padding: " + b"x" * 10_000:
            if stop.wait(0.2):
                return
            connection.sendall(bytes([byte]))

    with consumer(drip) as url:
        try:
            assert await deliver_one(client, quiet, url) == 0
        finally:
            stop.set()
    (delivery,) = await deliveries(quiet)
    assert delivery.last_error == "No answer within 1 s" and delivery.delivered_at is None


@pytest.mark.parametrize(
    ("first", "again"),
    [
        ("https://Billing.Example.com/hooks", "https://billing.example.com/hooks"),
        ("HTTPS://billing.example.com:443/hooks", "https://billing.example.com/hooks"),
        ("https://bücher.example.com/hooks", "https://xn--bcher-kva.example.com/hooks"),
        ("https://billing.example.com./hooks", "https://billing.example.com/hooks"),
        (
            "https://billing.example.com/hooks?to=a%2fb",
            "https://billing.example.com/hooks?to=a%2Fb",
        ),
        ("https://billing.example.com/%7Eada/hooks", "https://billing.example.com/~ada/hooks"),
    ],
)
async def test_a_url_spelled_another_way_is_subscribed_already(
    client: httpx.AsyncClient, runtime: Runtime, first: str, again: str
) -> None:
    # Scheme and host are case-insensitive, an IDNA host is its xn-- form, 443 is https's port,
    # a trailing dot names the same host, and percent-escapes are equivalent in either case or
    # as the unreserved character they escape: each pair is one consumer, which two
    # subscriptions would send every event twice.
    headers = await staff_headers(runtime)
    made = await subscribe(client, runtime, first)
    refused = await client.post(API, json={"url": again, "event_types": REMOVED}, headers=headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["subscription_id"] == made["id"]
    # Shown as staff wrote it.
    assert [row["url"] for row in (await client.get(API, headers=headers)).json()] == [first]
