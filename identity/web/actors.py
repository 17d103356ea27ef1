"""Who a hosted page's or an API call's change is made by, for the audit log, and from where."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from litestar import Request

from identity.audit.service import Actor
from identity.runtime import Runtime
from identity.web import client_ip


def request_origin(request: Request[Any, Any, Any], runtime: Runtime) -> Actor:
    """Where a change comes from, before anyone is known to make it: an emailed link's
    holder (a password reset, a new email's confirmation) is its owner, whom the domain
    names once the link checks out."""
    return Actor(
        None,
        None,
        client_ip.of_request(request, runtime.settings.trusted_proxies),
        request.scope.get("state", {}).get("request_id"),
    )


def page_actor(request: Request[Any, Any, Any], runtime: Runtime, user_id: uuid.UUID) -> Actor:
    """The signed-in user, from where they are."""
    return dataclasses.replace(request_origin(request, runtime), user_id=user_id)
