"""A kit for services that accept our access tokens (issue 7).

Needs only joserfc, httpx and the standard library, so a service without our server's
database and web dependencies can install and import it. ``identity.resource.asgi`` and
``identity.resource.litestar`` plug it into web frameworks.
"""

from identity.resource.claims import AccessToken
from identity.resource.decisions import Introspector, check_permission, permits
from identity.resource.errors import BearerTokenError, IssuerUnavailable
from identity.resource.server import ResourceServer, ResourceServerConfig
from identity.resource.validator import TokenValidator, bearer_token

__all__ = [
    "AccessToken",
    "BearerTokenError",
    "Introspector",
    "IssuerUnavailable",
    "ResourceServer",
    "ResourceServerConfig",
    "TokenValidator",
    "bearer_token",
    "check_permission",
    "permits",
]
