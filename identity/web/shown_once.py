"""What a page shows once, after a form post that changed something sends the browser to it
(Post/Redirect/Get, 303): a reload then asks for the page again instead of posting the form
again (replacing recovery codes twice, or starting a second set-up).

The post leaves what to show (a notice, or a secret such as new recovery codes) in the
shared store under a handle that goes in the redirect's query (random, or derived from what
a form posted where a double click may post it twice: see ``leave``); the page takes it out
atomically, so it is shown once, and only to the user who posted: the handle is looked up
with that user's id, so in the history of a browser someone else signs in to it shows them
nothing and spends nothing. The link carries no text of
its own, so a crafted link cannot make our page say anything. What is left is encrypted,
since it may be a secret that exists nowhere else in clear, and it is kept only as long as
following a redirect can take.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from identity.crypto import DecryptionFailed, Encryptor, digest, random_token
from identity.runtime import Runtime

# The query parameter of the page's address that names what to show.
PARAMETER = "shown"
TTL_SECONDS = 300
_KEY = "shown-once:"
_MAX_HANDLE = 64


def _sealer(runtime: Runtime) -> Encryptor:
    return Encryptor(runtime.secret_key, "shown-once")


def _key(handle: str, user_id: uuid.UUID) -> str:
    return _KEY + digest(f"{user_id}:{handle}")


async def leave(
    runtime: Runtime, user_id: uuid.UUID, what: dict[str, Any], handle: str | None = None
) -> str:
    """Keep ``what`` (JSON) for ``user_id``'s next page; returns the handle for its link.

    A post that a double click may repeat passes a ``handle`` of its own, derived from what
    the form posted: the repeat can then send the browser to what the first post left.
    """
    handle = handle or random_token()
    sealed = _sealer(runtime).encrypt(json.dumps(what))
    await runtime.store.set(_key(handle, user_id), sealed.encode(), TTL_SECONDS)
    return handle


async def take(runtime: Runtime, handle: str | None, user_id: uuid.UUID) -> dict[str, Any] | None:
    """What ``handle`` names, once, if it was left for ``user_id``; None otherwise."""
    if not handle or len(handle) > _MAX_HANDLE:
        return None
    sealed = await runtime.store.consume(_key(handle, user_id))
    if sealed is None:
        return None
    try:
        what: dict[str, Any] = json.loads(_sealer(runtime).decrypt(sealed.decode()))
    except DecryptionFailed:
        return None  # left before IDENTITY_SECRET_KEY changed
    return what
