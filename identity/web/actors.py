"""Who a hosted page's change is made by, for the audit log: the signed-in user, from where."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request

from identity.audit.service import Actor
from identity.runtime import Runtime
from identity.web import client_ip


def page_actor(request: Request[Any, Any, Any], runtime: Runtime, user_id: uuid.UUID) -> Actor:
    return Actor(
        user_id,
        None,
        client_ip.of_request(request, runtime.settings.trusted_proxies),
        request.scope.get("state", {}).get("request_id"),
    )
