"""The discovery document (OpenID Connect Discovery 1.0, RFC 8414) and the published JWKS.

Both are served as bytes built once, with an ETag, because relying parties and resource
servers fetch them often; the JWKS bytes are rebuilt only when the key set changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from identity.keys.service import SUPPORTED_ALGS, KeySet
from identity.oauth.client_auth import SUPPORTED_METHODS
from identity.oauth.pkce import SUPPORTED_METHODS as PKCE_METHODS
from identity.oauth.scopes import SCOPES_SUPPORTED
from identity.settings import Settings

# Paths fixed with the authorization side; clients find them only through discovery.
AUTHORIZATION_PATH = "/authorize"
END_SESSION_PATH = "/logout"
TOKEN_PATH = "/token"  # noqa: S105 - a path, not a secret
USERINFO_PATH = "/userinfo"
JWKS_PATH = "/jwks.json"
INTROSPECTION_PATH = "/introspect"
REVOCATION_PATH = "/revoke"
DISCOVERY_PATH = "/.well-known/openid-configuration"

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
CLAIMS_SUPPORTED = (
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "amr",
    "at_hash",
    "sid",
    "name",
    "locale",
    "updated_at",
    "email",
    "email_verified",
)


def discovery_document(settings: Settings) -> dict[str, Any]:
    issuer = settings.issuer
    secret_methods = [m for m in SUPPORTED_METHODS if m != "none"]
    return {
        "issuer": issuer,
        "authorization_endpoint": issuer + AUTHORIZATION_PATH,
        "token_endpoint": issuer + TOKEN_PATH,
        "userinfo_endpoint": issuer + USERINFO_PATH,
        "jwks_uri": issuer + JWKS_PATH,
        "end_session_endpoint": issuer + END_SESSION_PATH,
        "introspection_endpoint": issuer + INTROSPECTION_PATH,
        "revocation_endpoint": issuer + REVOCATION_PATH,
        "scopes_supported": list(SCOPES_SUPPORTED),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(SUPPORTED_ALGS),
        "token_endpoint_auth_methods_supported": list(SUPPORTED_METHODS),
        "introspection_endpoint_auth_methods_supported": secret_methods,
        "revocation_endpoint_auth_methods_supported": list(SUPPORTED_METHODS),
        "code_challenge_methods_supported": list(PKCE_METHODS),
        "claims_supported": list(CLAIMS_SUPPORTED),
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "authorization_response_iss_parameter_supported": True,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "ui_locales_supported": ["en", "es"],
    }


@dataclass(frozen=True, slots=True)
class Published:
    """A document as served: its bytes and a strong ETag over them."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, document: dict[str, Any]) -> Published:
        body = json.dumps(document, separators=(",", ":")).encode()
        return cls(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


class PublishedDocuments:
    """Per process: discovery built once, the JWKS rebuilt when the key set object changes."""

    def __init__(self, settings: Settings) -> None:
        self.discovery = Published.of(discovery_document(settings))
        self._jwks_source: KeySet | None = None
        self._jwks: Published | None = None

    def jwks(self, keyset: KeySet) -> Published:
        # runtime.keyset() hands back the same object until it rereads the keys.
        if self._jwks is None or keyset is not self._jwks_source:
            published = Published.of(keyset.public_jwks)
            if self._jwks is None or published.etag != self._jwks.etag:
                self._jwks = published
            self._jwks_source = keyset
        return self._jwks
