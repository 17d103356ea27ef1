"""OAuth clients, for staff: /api/v1/clients. The rules are the command line's
(identity.clients.service); secrets are shown once, when made, and never again."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody

from identity.clients import service
from identity.clients.models import OAuthClient
from identity.clients.service import ClientChange, ClientSpec
from identity.clock import utcnow
from identity.permissions.access import Action
from identity.web.api import schemas
from identity.web.api.common import PageDep, PrincipalDep, allow, created
from identity.web.dependencies import RuntimeDep
from identity.web.openapi import LOCATION, problems


def client_out(client: OAuthClient) -> schemas.ClientOut:
    return schemas.ClientOut(**_out_fields(client))


def _with_secret(client: OAuthClient, secret: str | None) -> schemas.ClientWithSecret:
    return schemas.ClientWithSecret(**_out_fields(client), client_secret=secret)


def _out_fields(client: OAuthClient) -> dict[str, object]:
    return service.client_state(client) | {
        "client_id": client.client_id,
        "created_at": client.created_at,
    }


class ClientController(Controller):
    path = "/clients"
    tags = ["clients"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("", summary="Registered OAuth clients, without their secrets (staff)")
    async def list_clients(
        self, runtime: RuntimeDep, principal: PrincipalDep, page: PageDep
    ) -> list[schemas.ClientOut]:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.CLIENT_MANAGE, utcnow())
            clients = await service.list_clients(session, page)
        return [client_out(client) for client in clients]

    @get(
        "/{client_id:str}",
        summary="One client, without its secret (staff)",
        responses=problems(422),
    )
    async def read(
        self, runtime: RuntimeDep, principal: PrincipalDep, client_id: FromPath[str]
    ) -> schemas.ClientOut:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.CLIENT_MANAGE, utcnow())
            client = await service.existing_client(session, client_id)
        return client_out(client)

    @post(
        "",
        summary="Register a client; a confidential one's secret is shown once (staff)",
        responses=problems(422),
        response_headers=LOCATION,
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        runtime: RuntimeDep,
        principal: PrincipalDep,
        data: JSONBody[schemas.ClientCreate],
    ) -> Response[schemas.ClientWithSecret]:
        # The request's fields are the command line's, name for name.
        spec = ClientSpec(**msgspec.structs.asdict(data))
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.CLIENT_MANAGE, utcnow())
            client, secret = await service.create_client(session, principal.actor, spec)
        return created(request, _with_secret(client, secret), client.client_id)

    @patch(
        "/{client_id:str}",
        summary="Change a client's settings, or disable it (staff)",
        responses=problems(422),
    )
    async def update(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        client_id: FromPath[str],
        data: JSONBody[schemas.ClientUpdate],
    ) -> schemas.ClientOut:
        change = ClientChange(**data.given())
        now = utcnow()
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.CLIENT_MANAGE, now)
            client = await service.update_client(session, principal.actor, client_id, change, now)
        runtime.clients.forget(client_id)
        return client_out(client)

    @post(
        "/{client_id:str}/secret",
        status_code=200,
        summary="Replace a confidential client's secret; the old one stops working (staff)",
        responses=problems(409, 422),
    )
    async def rotate_secret(
        self, runtime: RuntimeDep, principal: PrincipalDep, client_id: FromPath[str]
    ) -> schemas.ClientWithSecret:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.CLIENT_MANAGE, utcnow())
            client, secret = await service.rotate_secret(session, principal.actor, client_id)
        runtime.clients.forget(client_id)
        return _with_secret(client, secret)

    @delete(
        "/{client_id:str}",
        summary="Delete a client with its codes, refresh tokens and consents (staff)",
        responses=problems(422),
    )
    async def remove(
        self, runtime: RuntimeDep, principal: PrincipalDep, client_id: FromPath[str]
    ) -> None:
        now = utcnow()
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.CLIENT_MANAGE, now)
            await service.delete_client(session, principal.actor, client_id, now)
        runtime.clients.forget(client_id)
