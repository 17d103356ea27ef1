"""Resource indicators (RFC 8707): which resource servers an access token is meant for."""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import urlsplit

from identity.oauth.errors import InvalidTargetError
from identity.oauth.tokens import MAX_ACCESS_TOKEN_BYTES


def is_resource_uri(value: str) -> bool:
    """RFC 8707 §2: an absolute URI without a fragment."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return bool(parts.scheme and (parts.netloc or parts.path)) and "#" not in value


def check_resources(requested: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """The requested resources, each well formed and among ``allowed``; else ``invalid_target``."""
    for resource in requested:
        if not is_resource_uri(resource):
            raise InvalidTargetError("resource must be an absolute URI without a fragment.")
        if resource not in allowed:
            raise InvalidTargetError("resource is not allowed for this client.")
    resources = list(dict.fromkeys(requested))
    # Only an access token as issued shows whether it fits (identity.oauth.tokens); resources
    # whose names alone, base64url encoded, pass the limit are refused here already, before a
    # user signs in for a token that could never be issued. Measured as the token writes
    # them (UTF-8, no spaces): ASCII escapes made an accented resource three times longer,
    # refused though its token would fit.
    listed = json.dumps(resources, ensure_ascii=False, separators=(",", ":"))
    if len(listed.encode()) * 4 // 3 > MAX_ACCESS_TOKEN_BYTES:
        raise InvalidTargetError(
            "These resources are too many for one access token: ask for fewer resources."
        )
    return resources


def granted_resources(
    requested: Sequence[str], granted: Sequence[str], registered: Sequence[str]
) -> list[str]:
    """The resources a token from a code or refresh token is for (RFC 8707 §2.2): those
    ``requested``, each among those ``granted`` (a grant for none in particular: any the
    client is ``registered`` for); none requested, every one granted.

    Only resources the client is still registered for count: staff may have taken one away
    since the grant, and a resource server trusts ``aud`` with the JWKS alone. With none
    requested, the ones taken away are left out, as a refresh may narrow; a grant left with
    none is ``invalid_target``, never a token for the client itself instead.
    """
    if not granted:
        return check_resources(requested, registered)
    allowed = [resource for resource in granted if resource in registered]
    if requested:
        return check_resources(requested, allowed)
    if not allowed:
        raise InvalidTargetError("resource is not allowed for this client.")
    return allowed


def audience(resources: Sequence[str], client_id: str) -> str | list[str]:
    """The access token's ``aud``: the resources asked for, else the client itself.

    RFC 9068 §3 requires an audience; without a resource indicator the token is for the
    client's own use against our endpoints (userinfo), so the client_id names it.
    """
    if not resources:
        return client_id
    return resources[0] if len(resources) == 1 else list(resources)
