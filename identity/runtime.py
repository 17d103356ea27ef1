"""What one server process holds for its lifetime, handed to handlers by dependency injection."""

from __future__ import annotations

import asyncio
import time

from identity.accounts.passwords import Passwords
from identity.background import BackgroundWork
from identity.clients.cache import ClientCache
from identity.clock import utcnow
from identity.crypto import Encryptor
from identity.db.engine import Database
from identity.housekeeping.housekeeper import Housekeeper
from identity.keys.service import KeySet, load_keyset, signing_cutoff
from identity.mail.dispatcher import MailDispatcher
from identity.mail.factory import create_transport
from identity.oauth.metadata import PublishedDocuments
from identity.permissions.catalogue import Catalogue, install, load_policies
from identity.secret_key import resolve_secret_key
from identity.settings import Settings
from identity.store.base import Store
from identity.store.factory import create_store
from identity.store.fallback import FallbackStore
from identity.store.memory import MemoryStore
from identity.store.rate_limit import RateLimiter
from identity.webhooks.dispatcher import WebhookDispatcher


class SigningKeyMissing(Exception):
    """No signing key in the database: ``identity serve`` or ``identity keys rotate`` makes one."""


class Runtime:
    """A plain class, not a dataclass: Litestar would try to validate a dataclass dependency."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database.from_settings(settings)
        shared = create_store(settings)
        # Rate limits read and count the shared store themselves, with a fallback of their
        # own (rate_limit.py); sign-in state falls back to memory (store/fallback.py).
        self.store: Store = FallbackStore(shared) if settings.redis_url else shared
        # Without Redis, counts get a memory of their own: sharing the bounded one that holds
        # sign-in state, a flood of opened sign-ins (anyone may open them) would push them out
        # and lift every lock-out.
        counts = shared if settings.redis_url else MemoryStore()
        self.limiter = RateLimiter(
            counts, processes=settings.server_processes, shared=bool(settings.redis_url)
        )
        self.passwords = Passwords.from_settings(settings)
        # The permission catalogue and role templates, checked at start-up (policies/*.toml).
        self.catalogue = Catalogue(load_policies(settings.policies_dir))
        install(self.catalogue.policies)
        self.secret_key = resolve_secret_key(settings)
        self.key_encryptor = Encryptor(self.secret_key, "signing-keys")
        # Requests hand work here that their answer must not wait for (password-reset mail).
        self.background = BackgroundWork()
        self.mail = MailDispatcher(self.db, create_transport(settings), settings.mail_from)
        # Subscriptions' secrets, encrypted at rest; the dispatcher posts signed events.
        self.webhook_encryptor = Encryptor(self.secret_key, "webhooks")
        self.webhooks = WebhookDispatcher(
            self.db,
            self.webhook_encryptor,
            allow_http_loopback=settings.webhooks_allow_http_loopback,
        )
        # Deletes rows that can no longer matter: expired sessions, spent codes, sent mail...
        self.housekeeping = Housekeeper.from_settings(self.db, settings)
        # Clients as the token endpoints authenticate them, a few seconds at a time.
        self.clients = ClientCache()
        # Discovery and JWKS as served bytes; the JWKS follows keyset() rereads.
        self.published = PublishedDocuments(settings)
        self._keyset: KeySet | None = None
        self._keyset_loaded_at = 0.0
        self._keyset_lock = asyncio.Lock()

    async def keyset(self, *, refresh: bool = False) -> KeySet:
        # Another process may rotate keys; each process rereads them this often.
        asked_at = time.monotonic()
        stale = asked_at - self._keyset_loaded_at > self.settings.keys_refresh
        if self._keyset is None or stale or refresh:
            # One reread at a time: when the key set goes stale under load, the requests in
            # flight wait for the first one's reread (it began after they asked, so it is as
            # fresh as their own would be) instead of each decrypting every key again.
            async with self._keyset_lock:
                if self._keyset is None or self._keyset_loaded_at < asked_at:
                    started = time.monotonic()
                    cutoff = signing_cutoff(utcnow(), self.settings.keys_refresh)
                    async with self.db.transaction() as session:
                        keyset = await load_keyset(
                            session,
                            self.key_encryptor,
                            cutoff,
                            known=self._keyset.by_kid if self._keyset else None,
                        )
                    if keyset is None:
                        raise SigningKeyMissing("no signing key; run `identity keys rotate`")
                    self._keyset, self._keyset_loaded_at = keyset, started
        return self._keyset

    async def close(self) -> None:
        # First the work requests started, which may queue mail, then the mail sender.
        await self.background.drain()
        await self.mail.stop()
        await self.webhooks.stop()
        await self.housekeeping.stop()
        await self.store.close()
        await self.db.dispose()
        self.passwords.close()
