"""May this token's bearer do PERMISSION in ACCOUNT?

From the token's own claims (:func:`permits`): no network, but a permission withdrawn after the
token was issued still counts until it expires (10 minutes by default). For operations that
must see a removal or revocation at once, :class:`Introspector` asks the issuer instead.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote_plus

import httpx

from identity.resource.audience import warn_if_any_audience
from identity.resource.claims import AccessToken, canonical_account_id
from identity.resource.errors import BearerTokenError, IssuerUnavailable
from identity.resource.fetch import FetchedJSON, fetch_json
from identity.resource.validator import DEFAULT_MAX_TOKEN_BYTES, refuse_oversized

logger = logging.getLogger(__name__)


def permits(token: AccessToken, permission: str, account_id: str | uuid.UUID) -> bool:
    """Whether ``token`` grants ``permission`` in the account ``account_id``.

    ``permissions`` in the token are the member's effective permissions in its account (an
    owner's list already holds every one), so nothing here widens them: a token without
    account claims, as a client's own (``user_id`` is ``None``) is, is granted nothing.
    """
    account = canonical_account_id(account_id)
    return account is not None and token.account_id == account and permission in token.permissions


def check_permission(token: AccessToken, permission: str, account_id: str | uuid.UUID) -> None:
    """:func:`permits`, or a 403 ``insufficient_scope`` refusal (RFC 6750 §3.1)."""
    if not permits(token, permission, account_id):
        raise BearerTokenError(
            "insufficient_scope",
            f"The access token does not grant the {permission} permission in this account.",
        )


class Introspector:
    """Asks the issuer's introspection endpoint (RFC 7662) whether a token is live right now.

    The service authenticates as a confidential client with ``client_secret_basic``. Only an
    active access token of our issuer (and audience, when set) passes; a refresh token
    presented as a bearer token does not. Without ``audience`` a warning says, once when it
    is made, that tokens for any service pass.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        locate: Callable[[], Awaitable[str]],
        *,
        issuer: str,
        client_id: str,
        client_secret: str,
        audience: str | None = None,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
    ) -> None:
        self._http = http
        self._max_token_bytes = max_token_bytes
        self._locate = locate
        self._issuer = issuer
        # RFC 6749 §2.3.1: id and secret are form-encoded before Basic's base64.
        self._auth = httpx.BasicAuth(quote_plus(client_id), quote_plus(client_secret))
        self._audience = audience
        warn_if_any_audience(audience, issuer, "introspector")
        # Each introspection's exchange with the issuer, kept until done, for aclose() to end.
        self._exchanges: set[asyncio.Task[FetchedJSON]] = set()
        self._closed = False

    async def introspect(self, token: str) -> AccessToken:
        refuse_oversized(token, self._max_token_bytes)
        try:
            answer = await self._ask(token)
        except IssuerUnavailable:
            # The caller is answered 503 "try again later"; a wrong client secret (the issuer
            # answers 401) or an outage is told apart only here, where the operator looks.
            logger.warning("token introspection failed", exc_info=True)
            raise
        if answer.get("active") is not True:
            raise BearerTokenError("invalid_token", "The access token is not active.")
        if str(answer.get("token_type", "Bearer")).lower() != "bearer" or not self._ours(answer):
            raise BearerTokenError("invalid_token", "The access token is not meant for us.")
        return AccessToken.from_claims(answer)

    async def _ask(self, token: str) -> dict[str, Any]:
        """The issuer's JSON answer about ``token``, as bounded as its keys' fetches are.

        The exchange runs as a task of its own, so that aclose() can end it without
        cancelling the caller: left to run, it answered after the close as if nothing had
        happened (a shared HTTP client), or failed with the read error of a client closed
        under it (the server's own).
        """
        self._refuse_if_closed()
        exchange = asyncio.create_task(self._exchange(token))
        self._exchanges.add(exchange)
        exchange.add_done_callback(self._forget)
        try:
            await asyncio.wait((exchange,))
        finally:
            exchange.cancel()  # a caller given up takes its request with it
        self._refuse_if_closed()
        return exchange.result().document

    async def _exchange(self, token: str) -> FetchedJSON:
        return await fetch_json(
            self._http,
            await self._locate(),
            method="POST",
            data={"token": token, "token_type_hint": "access_token"},
            auth=self._auth,
        )

    def _forget(self, exchange: asyncio.Task[FetchedJSON]) -> None:
        self._exchanges.discard(exchange)
        if not exchange.cancelled():
            # Read here: a failure that nobody reads, its caller given up or refused as
            # closed, is logged as "Task exception was never retrieved".
            exchange.exception()

    async def aclose(self) -> None:
        """End the introspections under way, refused as the issuer unavailable, as is every
        call from now on. An HTTP client passed in is left open for its owner to close."""
        self._closed = True
        exchanges = tuple(self._exchanges)
        for exchange in exchanges:
            exchange.cancel()
        if exchanges:
            await asyncio.wait(exchanges)

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise IssuerUnavailable("the resource server is closed")

    async def permits(self, token: str, permission: str, account_id: str | uuid.UUID) -> bool:
        """:func:`permits`, decided on the issuer's current answer; an inactive token is no."""
        try:
            return permits(await self.introspect(token), permission, account_id)
        except BearerTokenError:
            return False

    def _ours(self, answer: dict[str, object]) -> bool:
        if answer.get("iss") != self._issuer:
            return False
        if self._audience is None:
            return True
        audience = answer.get("aud")
        return audience == self._audience or (
            isinstance(audience, list) and self._audience in audience
        )
