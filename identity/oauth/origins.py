"""Which web origins a client's browser app may call the token, revocation and userinfo
endpoints from (CORS), as node-oidc-provider's default ``clientBasedCORS`` decides.

A browser app is served from the origin its redirect URIs point back to, so that origin,
and no other, may read our answers. At the token and revocation endpoints only a public
client qualifies: a confidential client's secret has no place in a browser, and a page
presenting one is someone else's. At userinfo the bearer token is the credential, so the
origins of the token's client serve any client's token.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from identity.clients.models import OAuthClient
from identity.oauth.errors import InvalidRequestError, bearer_challenge
from identity.uris import ascii_host

_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 6454 §6.2's serialisation (scheme, host, port), or "null": shown back in the error only
# when it looks like one, since an error description allows no quotes or backslashes.
_SHOWABLE = re.compile(r"[A-Za-z0-9+.\-:/\[\]]{1,200}")


class OriginNotAllowed(InvalidRequestError):
    """The request's ``Origin`` may not read this client's answers."""

    def __init__(self, origin: str, client_id: str, *, bearer: bool) -> None:
        shown = origin if _SHOWABLE.fullmatch(origin) else "of the request"
        super().__init__(f"Origin {shown} is not allowed for client {client_id}.")
        self.bearer = bearer

    def get_headers(self) -> list[tuple[str, str]]:
        headers = super().get_headers()
        if not self.bearer:
            return headers
        # RFC 6750 §3: a protected resource states its refusal in a Bearer challenge.
        return [*headers, bearer_challenge(self)]


def origin_of(uri: str) -> str | None:
    """The origin a browser sends from a page at ``uri`` (WHATWG URL: lower-case scheme and
    host, punycode for a non-ASCII host, the scheme's default port left out); None for
    schemes a page has no origin in (a native app's ``com.example.app:/callback``: its origin
    would be the opaque "null")."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    try:
        # A browser sends an internationalised host name in its ASCII (punycode) form.
        host = ascii_host(host)
    except UnicodeError:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origin_allowed(client: OAuthClient, origin: str, *, bearer: bool) -> bool:
    """``bearer``: the request authenticates with the client's access token (userinfo),
    not as the client itself."""
    if not (bearer or client.is_public):
        return False
    return any(origin_of(uri) == origin for uri in client.redirect_uris)


def check_origin(client: OAuthClient, origin: str | None, *, bearer: bool = False) -> None:
    """Raise ``OriginNotAllowed`` for a browser request (one with an ``Origin``) from an
    origin the client's app is not served from. A request with none (server to server) is
    not CORS and passes."""
    if origin is not None and not origin_allowed(client, origin, bearer=bearer):
        raise OriginNotAllowed(origin, client.client_id, bearer=bearer)
