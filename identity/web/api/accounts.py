"""Customer accounts: /api/v1/accounts and the caller's own, /api/v1/me/accounts."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import FromPath, JSONBody

from identity.clock import utcnow
from identity.permissions import customer_accounts, directory, members
from identity.permissions.access import Action
from identity.web.api import schemas
from identity.web.api.common import (
    CatalogueDep,
    PageDep,
    PrincipalDep,
    account_out,
    allow,
    created,
)
from identity.web.dependencies import RuntimeDep
from identity.web.openapi import LOCATION, problems


class AccountController(Controller):
    path = "/accounts"
    tags = ["accounts"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post(
        "",
        summary="Create an account with its first owner (staff)",
        responses=problems(409, 422),
        response_headers=LOCATION,
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        runtime: RuntimeDep,
        principal: PrincipalDep,
        data: JSONBody[schemas.AccountCreate],
    ) -> Response[schemas.AccountOut]:
        now = utcnow()
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.ACCOUNT_CREATE, now)
            account = await customer_accounts.create_account(
                session, principal.actor, name=data.name, owner_user_id=data.owner_user_id, now=now
            )
        return created(request, account_out(account), account.id)

    @get("", summary="Every account, oldest first (staff)")
    async def list_all(
        self, runtime: RuntimeDep, principal: PrincipalDep, page: PageDep
    ) -> list[schemas.AccountOut]:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.ACCOUNT_LIST_ALL, utcnow())
            accounts = await directory.list_accounts(session, page)
        return [account_out(account) for account in accounts]

    @get("/{account_id:uuid}", summary="One account")
    async def read(
        self, runtime: RuntimeDep, principal: PrincipalDep, account_id: FromPath[uuid.UUID]
    ) -> schemas.AccountOut:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.ACCOUNT_READ, utcnow(), account_id)
            account = await customer_accounts.get_account(session, account_id)
        return account_out(account)

    @patch(
        "/{account_id:uuid}", summary="Rename an account (owner, staff)", responses=problems(422)
    )
    async def rename(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        account_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.AccountUpdate],
    ) -> schemas.AccountOut:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.ACCOUNT_RENAME, utcnow(), account_id)
            account = await customer_accounts.rename_account(
                session, principal.actor, account_id, data.name
            )
        return account_out(account)

    @post(
        "/{account_id:uuid}/ownership-transfer",
        responses=problems(409, 422),
        status_code=204,
        summary="Hand your ownership to another member (owner)",
    )
    async def hand_over(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        account_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.OwnershipHandOver],
    ) -> None:
        now = utcnow()
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.OWNERSHIP_HAND_OVER, now, account_id)
            assert principal.caller.user_id is not None  # only owners, who are users, get here
            await members.hand_over_ownership(
                session, principal.actor, account_id, principal.caller.user_id, data.to_user_id, now
            )


class MyAccountsController(Controller):
    path = "/me/accounts"
    tags = ["accounts"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("", summary="The accounts the caller belongs to, with their permissions in each")
    async def mine(
        self, runtime: RuntimeDep, principal: PrincipalDep, catalogue: CatalogueDep, page: PageDep
    ) -> list[schemas.MyAccountOut]:
        now = utcnow()
        user_id = principal.caller.user_id
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.ACCOUNT_LIST_MINE, now)
            choices = (
                await customer_accounts.accounts_of(session, user_id, now, catalogue, page)
                if user_id
                else []
            )
        return [
            schemas.MyAccountOut(c.account.id, c.account.name, c.owner, sorted(c.permissions))
            for c in choices
        ]
