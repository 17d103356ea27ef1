"""Links just spent, and by whom: a page's form posted a second time (a double click, a
reload that resubmits) is answered with what its first post did, not told that the link
was used. Kept a few minutes in the short-lived store, under the digest of the link's token:
nothing in it is a secret or is derived from what the person typed."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts import repository as accounts_repository
from identity.accounts.models import PasswordCredential, User
from identity.crypto import digest
from identity.recovery import repository
from identity.store.base import Store

TTL_SECONDS = 300


@dataclass(frozen=True, slots=True)
class SpentLink:
    """What the first post recorded, with its user as committed since."""

    record: dict[str, str]
    user: User
    credential: PasswordCredential | None


def _key(kind: str, token: str) -> str:
    return f"{kind}-spent:{digest(token)}"


async def mark_spent(store: Store, kind: str, token: str, record: dict[str, str]) -> None:
    """Record that ``token``'s link of ``kind`` is being spent for the user ``record`` names
    (``user_id``). Call it before the change commits: a repeat then waits for its outcome."""
    await store.set(_key(kind, token), json.dumps(record).encode(), TTL_SECONDS)


async def just_spent(
    session: AsyncSession, store: Store, kind: str, token: str
) -> SpentLink | None:
    """The record of ``token``'s link spent in the last few minutes, with its user (enabled)
    as it is now; None for any other link. Takes the user's row first, as spending a link
    does: a post that spent it and has yet to commit is waited for, and its outcome read."""
    raw = await store.get(_key(kind, token))
    if raw is None:
        return None
    record = json.loads(raw)
    user_id = uuid.UUID(record["user_id"])
    await accounts_repository.lock_user(session, user_id)
    found = await repository.user_with_credential(session, user_id)
    if found is None or found[0].disabled:
        return None
    return SpentLink(record, *found)
