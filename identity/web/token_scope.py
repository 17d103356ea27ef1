"""An access token's scope as its client's registration allows it now.

A token's scope was checked against its client's registration when it was issued. Staff may
since have taken scopes from the client (an admin console found compromised loses
``identity:admin``) or its client_credentials grant, disabled it or deleted it; a token
outlives that by up to the access token lifetime. Everything that acts on a token's scope
here (the management API, userinfo, introspection) reads it through this, so the change
holds at once for every token the client holds, its users' as well as its own.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from identity.clients.models import OAuthClient
from identity.oauth.scopes import still_allowed
from identity.runtime import Runtime


async def client_now(
    runtime: Runtime, claims: dict[str, Any], session: AsyncSession | None = None
) -> OAuthClient | None:
    """The token's client as registered now; None once it is disabled or gone, and, for a
    client's own token, once it may no longer act for itself (staff took client_credentials
    away, as they may take a scope). From the client cache (a few seconds fresh in other
    processes), read in ``session`` when the caller has one open."""
    client_id = str(claims["client_id"])
    if session is None:
        client = await runtime.clients.lookup(runtime.db, client_id)
    else:
        client = await runtime.clients.get(session, client_id)
    # RFC 9068 §2.2: a client acting for itself is its token's subject.
    if (
        client is not None
        and claims.get("sub") == client_id
        and not _may_act_for_itself(client, claims)
    ):
        return None
    return client


def _may_act_for_itself(client: OAuthClient, claims: dict[str, Any]) -> bool:
    """Whether ``client`` may use its own token ``claims``: it still has client_credentials,
    and the token was not issued before staff last stopped it acting for itself (disabled
    it or took the grant away; such tokens are recorded nowhere to be denied one by one).

    ``iat`` is in whole seconds, so a token issued in the second of the stop may have been
    issued before it: every token of that second is refused. One the client got in that
    second after being let go on again is refused too; it asks for another.
    """
    if "client_credentials" not in client.grant_types:
        return False
    stopped = client.own_tokens_not_before
    if stopped is None:
        return True
    # Ours always carry iat; one without cannot show it came after the stop.
    issued = claims.get("iat")
    return issued is not None and int(issued) > int(stopped.timestamp())


def scope_of(claims: dict[str, Any], client: OAuthClient) -> str:
    """The scopes of ``claims`` that ``client`` (from ``client_now``) is still registered for."""
    return still_allowed(str(claims.get("scope", "")), client.scope)


async def scope_now(
    runtime: Runtime, claims: dict[str, Any], session: AsyncSession | None = None
) -> str | None:
    """The scopes of ``claims`` its client is still registered for; None once the client
    is disabled or gone."""
    client = await client_now(runtime, claims, session)
    return None if client is None else scope_of(claims, client)
