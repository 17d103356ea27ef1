"""One object per resource server: discovery, the key cache and the validator, wired together."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

import httpx

from identity.resource.claims import AccessToken
from identity.resource.decisions import Introspector
from identity.resource.discovery import Discovery
from identity.resource.errors import IssuerUnavailable
from identity.resource.jwks import JWKSCache
from identity.resource.validator import DEFAULT_MAX_TOKEN_BYTES, TokenValidator, bearer_token


@dataclass(frozen=True, slots=True)
class ResourceServerConfig:
    """What a service says about the issuer it trusts and how strictly.

    ``issuer``: exactly as the issuer's discovery document names itself.
    ``audience``: this service's resource identifier (the RFC 8707 ``resource`` clients ask
    tokens for), so a token meant for another service is refused here. Left unset, tokens for
    any audience are accepted, and a warning is logged when the server is made.
    ``min_jwks_fetch_interval``: the fewest seconds between two JWKS fetches, whatever asks.
    ``jwks_max_stale``: how long past their expiry the keys held stay trusted while the issuer
    cannot be reached (then every token is refused as the issuer unavailable, 503).
    """

    issuer: str
    audience: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway: int = 30
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    min_jwks_fetch_interval: float = 10.0
    jwks_max_age_bounds: tuple[float, float] = (60.0, 3600.0)
    jwks_max_stale: float = 86400.0
    http_timeout: float = 5.0


class ResourceServer:
    """Validates bearer tokens of one issuer; use ``async with`` or call :meth:`aclose`.

    ``http`` may be passed to share a client (its timeouts are then the caller's); otherwise
    one is made with ``config.http_timeout``. Redirects are never followed, by either.
    """

    def __init__(self, config: ResourceServerConfig, http: httpx.AsyncClient | None = None):
        self.config = config
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=config.http_timeout)
        self.discovery = Discovery(self._http, config.issuer)
        self.keys = JWKSCache(
            self._http,
            self.discovery.jwks_uri,
            min_fetch_interval=config.min_jwks_fetch_interval,
            max_age_bounds=config.jwks_max_age_bounds,
            max_stale=config.jwks_max_stale,
        )
        self.validator = TokenValidator(
            self.keys,
            issuer=config.issuer,
            audience=config.audience,
            algorithms=config.algorithms,
            leeway=config.leeway,
            max_token_bytes=config.max_token_bytes,
        )
        self._introspectors: dict[tuple[str, str], Introspector] = {}
        self._closed = False

    async def validate(self, token: str) -> AccessToken:
        return await self.validator.validate(token)

    async def authenticate(self, authorization: str | None) -> AccessToken:
        """The validated token of an ``Authorization`` header value."""
        return await self.validator.validate(bearer_token(authorization))

    def introspector(self, client_id: str, client_secret: str) -> Introspector:
        """An :class:`Introspector` authenticating as the given confidential client; made once
        per client, so that asking for it on every request warns (no audience) only once."""
        credentials = (client_id, client_secret)
        made = self._introspectors.get(credentials)
        if made is None:
            made = self._introspectors[credentials] = Introspector(
                self._http,
                self._introspection_endpoint,
                issuer=self.config.issuer,
                audience=self.config.audience,
                client_id=client_id,
                client_secret=client_secret,
                max_token_bytes=self.config.max_token_bytes,
            )
        return made

    async def _introspection_endpoint(self) -> str:
        # Checked on each introspection: an introspector may be kept past the server's close.
        if self._closed:
            raise IssuerUnavailable("the resource server is closed")
        return await self.discovery.introspection_endpoint()

    async def aclose(self) -> None:
        """End the key fetch and the introspections under way, if any; from now on tokens are
        refused as the issuer unavailable (503). Closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        await self.keys.aclose()
        # A copy: one asked for meanwhile joins the dict (and is refused by its endpoint).
        for introspector in tuple(self._introspectors.values()):
            await introspector.aclose()
        # Only once nothing uses it: a request still reading from the client as it closed
        # failed with a read error rather than as closed.
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> ResourceServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
