"""Signing keys: creation, rotation, and the key set published as JWKS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from joserfc.jwk import ECKey, RSAKey
from sqlalchemy.ext.asyncio import AsyncSession

from identity.clock import utcnow
from identity.crypto import Encryptor
from identity.errors import InvalidInput
from identity.keys import repository
from identity.keys.models import MAX_KID, SigningKey
from identity.unreadable import clipped

SUPPORTED_ALGS = ("RS256", "ES256")
# How long after every process publishes a new key it waits to sign. A relying party that
# fetched the JWKS a moment before the last process published the key holds a set without
# it, and fetches again on a token's unknown kid only after a cooldown (identity.resource:
# 10 s; jose: 30 s); a key signing at once had its tokens refused there for that long.
RELYING_PARTY_REFETCH = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class KeySet:
    """The keys in force: ``current`` signs; ``public_jwks`` (every active key) is what
    /jwks serves."""

    current: RSAKey | ECKey
    current_alg: str
    by_kid: dict[str, RSAKey | ECKey]
    public_jwks: dict[str, Any]


def generate_key(alg: str) -> RSAKey | ECKey:
    if alg == "RS256":
        key: RSAKey | ECKey = RSAKey.generate_key(2048, auto_kid=False)
    elif alg == "ES256":
        key = ECKey.generate_key("P-256", auto_kid=False)
    else:
        raise ValueError(f"unsupported signing algorithm {alg}")
    # The RFC 7638 thumbprint is a stable, collision-free kid.
    key.ensure_kid()
    return key


async def create_key(
    session: AsyncSession, encryptor: Encryptor, alg: str, key: RSAKey | ECKey | None = None
) -> SigningKey:
    """Store ``key`` (a new one unless given) as the current signing key."""
    key = key or generate_key(alg)
    public = key.as_dict(private=False) | {"alg": alg, "use": "sig"}
    row = SigningKey(
        kid=key.kid,
        alg=alg,
        public_jwk=public,
        private_jwk_encrypted=encryptor.encrypt(json.dumps(key.as_dict(private=True))),
        created_at=utcnow(),
    )
    await repository.add(session, row)
    return row


async def ensure_key(session: AsyncSession, encryptor: Encryptor, alg: str) -> None:
    """Create the first signing key when there is none (first start)."""
    await repository.hold_first_key(session)
    if not await repository.active_keys(session):
        await create_key(session, encryptor, alg)


async def retire_key(session: AsyncSession, kid: str) -> None:
    """Remove a key from the JWKS: tokens it signed stop verifying. The last key stays."""
    await repository.hold_active(session)
    if not await repository.retire(session, kid, utcnow()):
        # No kid is longer: what was given (a token or a file, pasted) is not shown whole.
        raise InvalidInput(f"There is no active signing key with kid {clipped(kid, MAX_KID)!r}.")
    if not await repository.active_keys(session):
        raise InvalidInput(
            f"{kid} is the only active signing key; run `identity keys rotate` first."
        )


def signing_cutoff(now: datetime, keys_refresh: int) -> datetime:
    """Keys created by this time may sign.

    Every process rereads the keys within IDENTITY_KEYS_REFRESH of a rotation. A new key
    that signed at once made tokens that processes still on the old key set did not accept
    (introspection, userinfo, /api/v1) and that relying parties could not verify with the
    JWKS those processes served: it signs only once every process publishes it, and
    relying parties have had RELYING_PARTY_REFETCH since to fetch it.
    """
    return now - timedelta(seconds=keys_refresh) - RELYING_PARTY_REFETCH


def signer(rows: Sequence[SigningKey], cutoff: datetime) -> SigningKey:
    """Of the active keys (newest first), the newest one created by ``cutoff``
    (:func:`signing_cutoff`); else, when all are younger (the first key, or the older ones
    retired), the oldest."""
    return next((row for row in rows if row.created_at <= cutoff), rows[-1])


async def load_keyset(
    session: AsyncSession,
    encryptor: Encryptor,
    cutoff: datetime,
    known: Mapping[str, RSAKey | ECKey] | None = None,
) -> KeySet | None:
    """The active keys, signing with :func:`signer`'s choice. A kid is its key's thumbprint,
    so a key in ``known`` (the last key set's) is taken as it is; the others are opened on a
    thread, as importing an RSA private key checks it and takes ~30 ms of CPU: done on the
    event loop at every reread, it held up every request of the process."""
    rows = await repository.active_keys(session)
    if not rows:
        return None
    known = known or {}
    sealed = {row.kid: (row.alg, row.private_jwk_encrypted) for row in rows if row.kid not in known}
    opened = await asyncio.to_thread(_open_keys, encryptor, sealed) if sealed else {}
    by_kid = {row.kid: known[row.kid] if row.kid in known else opened[row.kid] for row in rows}
    current = signer(rows, cutoff)
    return KeySet(
        current=by_kid[current.kid],
        current_alg=current.alg,
        by_kid=by_kid,
        public_jwks={"keys": [row.public_jwk for row in rows]},
    )


def _open_keys(
    encryptor: Encryptor, sealed: Mapping[str, tuple[str, str]]
) -> dict[str, RSAKey | ECKey]:
    by_kid: dict[str, RSAKey | ECKey] = {}
    for kid, (alg, private_jwk_encrypted) in sealed.items():
        data = json.loads(encryptor.decrypt(private_jwk_encrypted))
        key_type = RSAKey if alg == "RS256" else ECKey
        by_kid[kid] = key_type.import_key(data)
    return by_kid
