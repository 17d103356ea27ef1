"""What one server process holds for its lifetime, handed to handlers by dependency injection."""

from __future__ import annotations

import time

from identity.crypto import Encryptor
from identity.db.engine import Database, create_engine
from identity.keys.service import KeySet, load_keyset
from identity.mail.dispatcher import MailDispatcher
from identity.mail.factory import create_transport
from identity.secret_key import resolve_secret_key
from identity.settings import Settings
from identity.store.base import Store
from identity.store.factory import create_store
from identity.store.rate_limit import RateLimiter

# Another process may rotate keys; each process rereads them this often.
KEYSET_REFRESH_SECONDS = 30


class SigningKeyMissing(Exception):
    """No signing key in the database: ``identity serve`` or ``identity keys rotate`` makes one."""


class Runtime:
    """A plain class, not a dataclass: Litestar would try to validate a dataclass dependency."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(create_engine(settings))
        self.store: Store = create_store(settings)
        self.limiter = RateLimiter(self.store)
        self.secret_key = resolve_secret_key(settings)
        self.key_encryptor = Encryptor(self.secret_key, "signing-keys")
        self.mail = MailDispatcher(self.db, create_transport(settings), settings.mail_from)
        self._keyset: KeySet | None = None
        self._keyset_loaded_at = 0.0

    async def keyset(self, *, refresh: bool = False) -> KeySet:
        stale = time.monotonic() - self._keyset_loaded_at > KEYSET_REFRESH_SECONDS
        if self._keyset is None or stale or refresh:
            async with self.db.transaction() as session:
                keyset = await load_keyset(session, self.key_encryptor)
            if keyset is None:
                raise SigningKeyMissing("no signing key; run `identity keys rotate`")
            self._keyset, self._keyset_loaded_at = keyset, time.monotonic()
        return self._keyset

    async def close(self) -> None:
        await self.mail.stop()
        await self.store.close()
        await self.db.dispose()
