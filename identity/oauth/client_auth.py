"""Client authentication at the token, introspection and revocation endpoints.

RFC 6749 §2.3: ``client_secret_basic`` (preferred), ``client_secret_post``, and ``none``
for public clients, which only name themselves. Exactly one method per request. A JWT
client assertion (``private_key_jwt``, ``client_secret_jwt``) is refused, never ignored.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote_plus

from identity.clients.cache import ClientCache
from identity.clients.models import OAuthClient
from identity.crypto import digest, digest_matches
from identity.db.engine import Database
from identity.oauth.errors import InvalidClientError, InvalidRequestError

# RFC 7521 §4.2 / RFC 7523 §2.2: how private_key_jwt and client_secret_jwt authenticate.
# Neither is supported (nor advertised), but a request carrying them must not be read as
# one that carries no credentials at all (a public client's ``none``).
ASSERTION_PARAMETERS = frozenset({"client_assertion", "client_assertion_type"})
# The form parameters client authentication reads (RFC 6749 §2.3.1).
PARAMETERS = frozenset({"client_id", "client_secret"}) | ASSERTION_PARAMETERS

Method = Literal["client_secret_basic", "client_secret_post", "none"]
SUPPORTED_METHODS: tuple[Method, ...] = ("client_secret_basic", "client_secret_post", "none")

# RFC 6749 Appendix A.1: client_id is VSCHAR; ours are at most 64 characters.
CLIENT_ID_SYNTAX = re.compile(r"[\x20-\x7e]{1,64}")
# Compared against when the client is unknown, so both failures cost the same.
_NO_SECRET = digest("")


# RFC 7617 §2: every Basic challenge names the protection space the credentials are for.
REALM = "oauth-clients"


class ClientAuthenticationFailed(InvalidClientError):
    """RFC 6749 §5.2: 401 with a ``WWW-Authenticate: Basic`` challenge; one message for every
    credential failure, or ``description`` for a client that authenticated but may not use
    the endpoint at all."""

    status_code = 401
    description = "Client authentication failed."

    def __init__(self, description: str | None = None) -> None:
        super().__init__(description)

    def get_headers(self) -> list[tuple[str, str]]:
        # Authlib's challenge leaves out the realm that RFC 7617 §2 requires.
        challenge = (
            f'Basic realm="{REALM}", error="{self.error}", '
            f'error_description="{self.get_error_description()}"'
        )
        return [*super(InvalidClientError, self).get_headers(), ("WWW-Authenticate", challenge)]


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str
    secret: str | None
    method: Method


def parse_basic(authorization: str) -> tuple[str, str]:
    """RFC 6749 §2.3.1: id and secret are form-encoded before Basic's base64 and colon."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise ClientAuthenticationFailed()
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ClientAuthenticationFailed() from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise ClientAuthenticationFailed()
    try:
        return unquote_plus(client_id, errors="strict"), unquote_plus(secret, errors="strict")
    except UnicodeDecodeError:
        raise ClientAuthenticationFailed() from None


def parse_client_credentials(
    authorization: str | None, form: Mapping[str, str]
) -> ClientCredentials:
    """Which client the request claims to come from, and how it proves it."""
    body_id, body_secret = form.get("client_id"), form.get("client_secret")
    if ASSERTION_PARAMETERS & form.keys():
        if authorization is not None or body_secret is not None:
            raise InvalidRequestError("Use one client authentication method, not two.")
        raise ClientAuthenticationFailed("Client assertions are not supported.")
    if authorization is not None:
        if body_secret is not None:
            raise InvalidRequestError("Use one client authentication method, not two.")
        client_id, secret = parse_basic(authorization)
        if body_id is not None and body_id != client_id:
            raise InvalidRequestError("client_id in the body differs from the Authorization one.")
        credentials = ClientCredentials(client_id, secret, "client_secret_basic")
    elif body_id is None:
        raise ClientAuthenticationFailed()
    elif body_secret is not None:
        credentials = ClientCredentials(body_id, body_secret, "client_secret_post")
    else:
        credentials = ClientCredentials(body_id, None, "none")
    if not CLIENT_ID_SYNTAX.fullmatch(credentials.client_id):
        raise ClientAuthenticationFailed()
    return credentials


def check_client_secret(credentials: ClientCredentials, client: OAuthClient | None) -> OAuthClient:
    """The registered client, when the credentials prove to be it; else ``invalid_client``.

    Confidential clients must present their secret; public clients must not present one
    (a secret they were never given means someone is guessing).
    """
    if client is not None and client.is_public:
        if credentials.method != "none":
            raise ClientAuthenticationFailed()
        return client
    if credentials.secret is None:
        raise ClientAuthenticationFailed()
    expected = client.secret_hash if client is not None and client.secret_hash else _NO_SECRET
    matches = digest_matches(credentials.secret, expected)
    if client is None or client.secret_hash is None or not matches:
        raise ClientAuthenticationFailed()
    return client


async def authenticate_client(
    db: Database, clients: ClientCache, credentials: ClientCredentials
) -> OAuthClient:
    """Before, not inside, the endpoint's own transaction: the client comes from the cache
    (as fresh as its interval allows) whatever the transaction, and an endpoint that needs
    nothing else from the database then opens none.
    """
    client = await clients.lookup(db, credentials.client_id)
    return check_client_secret(credentials, client)
