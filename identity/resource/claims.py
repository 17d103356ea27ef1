"""An access token's claims as typed values (issue 3's token format)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from identity.resource.errors import BearerTokenError


def canonical_account_id(value: object) -> str | None:
    """The account id as a lower-case hyphenated UUID, or ``None`` if it is not one.

    Comparing canonical forms keeps ``ABC...`` in a URL and ``abc...`` in a token equal.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A validated access token: who holds it, for which client, with what rights.

    ``account_id``, ``permissions`` and ``account_owner`` are set only for a member of a
    customer account; ``claims`` keeps everything the issuer sent. :attr:`user_id` tells a
    user's token from a client's own (client_credentials).
    """

    subject: str
    client_id: str
    scopes: frozenset[str]
    expires_at: int
    account_id: str | None
    permissions: frozenset[str]
    account_owner: bool
    claims: Mapping[str, Any]

    @property
    def user_id(self) -> str | None:
        """The user the token acts for; ``None`` for a client acting for itself (the
        client_credentials grant), whose ``sub`` is its own client id (RFC 9068 §2.2), as
        the issuer's introspection tells them apart. Client ids are made by the issuer, never
        a user's id, so a user's token is never taken for a client's. A route that serves
        users only refuses a token whose ``user_id`` is ``None``."""
        return None if self.subject == self.client_id else self.subject

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> AccessToken:
        """Type-check the claims a decision relies on; a malformed one refuses the token."""
        subject, client_id = claims.get("sub"), claims.get("client_id")
        scope, expires_at = claims.get("scope", ""), claims.get("exp")
        permissions = claims.get("permissions", [])
        account_owner = claims.get("account_owner", False)
        raw_account = claims.get("account_id")
        account_id = None if raw_account is None else canonical_account_id(raw_account)
        well_formed = (
            isinstance(subject, str)
            and isinstance(client_id, str)
            and isinstance(scope, str)
            and isinstance(expires_at, int | float)
            and not isinstance(expires_at, bool)
            and isinstance(permissions, list)
            and all(isinstance(name, str) for name in permissions)
            and isinstance(account_owner, bool)
            and (raw_account is None or account_id is not None)
        )
        if not well_formed:
            raise BearerTokenError("invalid_token", "The access token has malformed claims.")
        return cls(
            subject=subject,
            client_id=client_id,
            scopes=frozenset(scope.split()),
            expires_at=int(expires_at),
            account_id=account_id,
            permissions=frozenset(permissions),
            account_owner=account_owner,
            claims=claims,
        )
