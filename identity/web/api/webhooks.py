"""Webhook subscriptions of consuming services, for staff: /api/v1/webhooks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import litestar
import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from msgspec import Meta

from identity.clock import utcnow
from identity.permissions.access import Action
from identity.web.api import schemas
from identity.web.api.common import PageDep, PrincipalDep, allow, created
from identity.web.dependencies import RuntimeDep
from identity.web.openapi import LOCATION, problems
from identity.webhooks import service
from identity.webhooks.events import EVENT_TYPES
from identity.webhooks.models import WebhookSubscription
from identity.webhooks.repository import DeliveryView, State

# No longer than the longest event's name: an unknown one is named in the refusal.
EventName = Annotated[str, Meta(max_length=max(map(len, EVENT_TYPES)))]


class WebhookCreate(schemas.Request):
    url: Annotated[
        str, Meta(min_length=1, max_length=service.MAX_URL, examples=["https://billing/hook"])
    ]
    event_types: Annotated[
        list[EventName],
        Meta(min_length=1, max_length=len(EVENT_TYPES), examples=[["member.removed"]]),
    ]
    description: Annotated[str, Meta(max_length=service.MAX_DESCRIPTION)] = ""


class WebhookOut(msgspec.Struct):
    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str
    created_at: datetime


class WebhookCreated(WebhookOut):
    # Shown in this answer only: keep it in the consumer's configuration now.
    secret: str


class DeliveryOut(msgspec.Struct):
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    # pending: waiting for its next attempt (next_attempt_at); delivered: a 2xx came back;
    # failed: given up, after the last retry or at once (last_error says why).
    state: State
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None
    last_error: str | None


def _out(row: WebhookSubscription) -> WebhookOut:
    return WebhookOut(row.id, row.url, row.event_types, row.description, row.created_at)


def _delivery_out(view: DeliveryView) -> DeliveryOut:
    row = view.delivery
    return DeliveryOut(
        id=row.id,
        event_id=row.event_id,
        event_type=view.event_type,
        occurred_at=view.occurred_at,
        state=view.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if view.state == "pending" else None,
        delivered_at=row.delivered_at,
        failed_at=row.failed_at,
        last_error=row.last_error,
    )


class WebhookController(Controller):
    path = "/webhooks"
    tags = ["webhooks"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post(
        "",
        summary="Subscribe a consuming service's URL to events (staff)",
        responses=problems(409, 422),
        response_headers=LOCATION,
    )
    async def create(
        self,
        request: litestar.Request[Any, Any, Any],
        runtime: RuntimeDep,
        principal: PrincipalDep,
        data: JSONBody[WebhookCreate],
    ) -> Response[WebhookCreated]:
        now = utcnow()
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.WEBHOOK_MANAGE, now)
            made = await service.create_subscription(
                session,
                principal.actor,
                runtime.webhook_encryptor,
                url=data.url,
                event_types=data.event_types,
                description=data.description,
                allow_http_loopback=runtime.settings.webhooks_allow_http_loopback,
                now=now,
            )
        row = made.subscription
        body = WebhookCreated(
            row.id, row.url, row.event_types, row.description, row.created_at, made.secret
        )
        return created(request, body, row.id)

    @get("", summary="Webhook subscriptions, without their secrets (staff)")
    async def list_subscriptions(
        self, runtime: RuntimeDep, principal: PrincipalDep, page: PageDep
    ) -> list[WebhookOut]:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.WEBHOOK_MANAGE, utcnow())
            rows = await service.list_subscriptions(session, page)
        return [_out(row) for row in rows]

    @get("/{subscription_id:uuid}", summary="A webhook subscription, without its secret (staff)")
    async def read(
        self, runtime: RuntimeDep, principal: PrincipalDep, subscription_id: FromPath[uuid.UUID]
    ) -> WebhookOut:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.WEBHOOK_MANAGE, utcnow())
            row = await service.get_subscription(session, subscription_id)
        return _out(row)

    @delete("/{subscription_id:uuid}", summary="Unsubscribe; pending deliveries are dropped")
    async def remove(
        self, runtime: RuntimeDep, principal: PrincipalDep, subscription_id: FromPath[uuid.UUID]
    ) -> None:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.WEBHOOK_MANAGE, utcnow())
            await service.delete_subscription(session, principal.actor, subscription_id)

    @get(
        "/{subscription_id:uuid}/deliveries",
        summary="What became of the events sent to a subscription, newest first (staff)",
    )
    async def list_deliveries(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        subscription_id: FromPath[uuid.UUID],
        page: PageDep,
        # "state" is a name Litestar keeps for the application state; the query says state.
        wanted: Annotated[
            State | None, QueryParameter(name="state", description="only deliveries in this state")
        ] = None,
    ) -> list[DeliveryOut]:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.WEBHOOK_MANAGE, utcnow())
            views = await service.list_deliveries(session, subscription_id, wanted, page)
        return [_delivery_out(view) for view in views]

    @post(
        "/{subscription_id:uuid}/deliveries/{delivery_id:uuid}/resend",
        status_code=202,
        summary="Send a delivery again now, with a fresh day of retries (staff)",
    )
    async def resend(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        subscription_id: FromPath[uuid.UUID],
        delivery_id: FromPath[uuid.UUID],
    ) -> DeliveryOut:
        now = utcnow()
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.WEBHOOK_MANAGE, now)
            view = await service.resend_delivery(
                session, principal.actor, subscription_id, delivery_id, now
            )
        return _delivery_out(view)
