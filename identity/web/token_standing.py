"""An access token as it stands now: the one rule /userinfo, introspection and the management
API's bearer check apply to a token that verified, each answering a refusal in its own way.

A token's signature and ``exp`` say what was true when it was issued. Since then it may have
been revoked; staff may have disabled or deleted its client, taken scopes from it (an admin
console found compromised loses ``identity:admin``) or its client_credentials grant; its user
may have been disabled, deleted, demoted, or have left the account the token speaks for
(staff removing a member record a revocation; an account or membership row gone any other
way does not). A token outlives all of that by up to the access token lifetime, so each of
these is read here on every use, and holds at once for every token concerned.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from identity.accounts.models import User
from identity.clients.models import OAuthClient
from identity.oauth.grants.base import issued_scope
from identity.oauth.scopes import still_allowed
from identity.permissions import effective
from identity.runtime import Runtime
from identity.tokens import revocations
from identity.tokens.subjects import active_user


@dataclass(frozen=True, slots=True)
class Standing:
    """What a token that still stands stands for now."""

    client: OAuthClient
    # None for a client acting for itself, which RFC 9068 §2.2 makes its token's subject.
    user: User | None
    # The token's claims with ``scope`` as a token issued now would carry it (only what the
    # client is still registered for; identity:admin only for administrators) and the
    # account claims narrowed to what the member still holds: never more than the token says.
    claims: dict[str, Any]

    @property
    def scope(self) -> list[str]:
        return str(self.claims.get("scope", "")).split()


async def standing(runtime: Runtime, claims: dict[str, Any], now: datetime) -> Standing | None:
    """What the verified access token ``claims`` stands for now; None once it no longer
    stands: revoked, its client disabled or gone (or, for its own token, no longer allowed to
    act for itself), its user disabled or gone, or its user out of the token's account (a
    removal denies the tokens it had, so adding the member back does not revive them).

    The deny list is a lone read, never cached: a revocation made by any process shows at
    once. A client's own token needs nothing more than the client cache; a user's, one
    transaction.
    """
    if await revocations.is_revoked(runtime.db, claims["jti"]):
        return None
    client = await _client_now(runtime, claims)
    if client is None:
        return None
    if claims["sub"] == claims["client_id"]:
        scope = still_allowed(str(claims.get("scope", "")), client.scope)
        return Standing(client, None, claims | {"scope": scope})
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError:
        return None
    if "account_id" in claims:
        # Narrowed by the roles as stored, which must be roles.toml's first (as /token does).
        await runtime.catalogue.ensure_templates(runtime.db)
    async with runtime.db.transaction() as session:
        user = await active_user(session, user_id)
        if user is None:
            return None
        # The rule a refresh applies, so that the token stands for what one issued now would.
        held = claims | {"scope": issued_scope(str(claims.get("scope", "")), user, client)}
        if "account_id" not in claims:
            return Standing(client, user, held)
        account = await effective.still_granted(
            session,
            user.id,
            uuid.UUID(str(claims["account_id"])),
            [str(name) for name in claims.get("permissions", [])],
            claims.get("account_owner") is True,
            now,
        )
    return None if account is None else Standing(client, user, held | account)


async def _client_now(runtime: Runtime, claims: dict[str, Any]) -> OAuthClient | None:
    """The token's client as registered now; None once it is disabled or gone, and, for a
    client's own token, once it may no longer act for itself (staff took client_credentials
    away, as they may take a scope). From the client cache: a few seconds fresh in other
    processes, at once in the one that made the change."""
    client_id = str(claims["client_id"])
    client = await runtime.clients.lookup(runtime.db, client_id)
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
