"""The account management API under /api/v1: one router, so every route shares the bearer
authentication (documented as the bearer requirement), the catalogue dependency and the
problem rendering of refused tokens."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response, Router
from litestar.di import Provide
from litestar.exceptions import ValidationException
from litestar.params import ParameterKwarg

from identity.web.api import (
    accounts,
    audit,
    authz,
    clients,
    invitations,
    members,
    permissions,
    roles,
)
from identity.web.api import users as users_api
from identity.web.api import webhooks as webhooks_api
from identity.web.api.auth import (
    BearerRefused,
    authenticate,
    bearer_refused_handler,
    provide_principal,
)
from identity.web.api.common import provide_catalogue, provide_page
from identity.web.api.password import NO_STORE, require_json
from identity.web.openapi import BEARER_REQUIREMENT
from identity.web.problems import http_exception_handler

# msgspec names a missing or unknown field only in its message ("Object missing required
# field `name`"), and Litestar then keys the error as the whole body; name the field instead.
_FIELD_IN_MESSAGE = re.compile(r"field `([^`]+)`")


def body_validation_handler(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[dict[str, Any]]:
    parameters = request.route_handler.parsed_fn_signature.parameters
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        key = item.get("key")
        named = _FIELD_IN_MESSAGE.search(str(item.get("message", "")))
        if named:
            item["key"] = named.group(1) if key in (None, "data") else f"{key}.{named.group(1)}"
        elif key in parameters:
            # Litestar keys a parameter by the handler's argument; a client knows it by the
            # name it sends (?state= is the argument "wanted", since "state" is Litestar's).
            definition = parameters[key].kwarg_definition
            if isinstance(definition, ParameterKwarg) and definition.name:
                item["key"] = definition.name
    return http_exception_handler(request, exc)


ROUTER = Router(
    path="/api/v1",
    route_handlers=[
        accounts.AccountController,
        accounts.MyAccountsController,
        members.MemberController,
        invitations.InvitationController,
        roles.RoleTemplateController,
        roles.AccountRoleController,
        permissions.PermissionController,
        users_api.UserController,
        audit.AuditController,
        authz.AuthzController,
        webhooks_api.WebhookController,
        clients.ClientController,
    ],
    security=[BEARER_REQUIREMENT],
    guards=[authenticate, require_json],  # in this order: see authenticate
    # Answers hold personal data and secrets shown once (a client's, a webhook's): no cache
    # along the way, nor the browser's, may keep a copy.
    cache_control=NO_STORE,
    dependencies={
        "principal": Provide(provide_principal, sync_to_thread=False),
        "catalogue": Provide(provide_catalogue),
        "page": Provide(provide_page, sync_to_thread=False),
    },
    exception_handlers={  # type: ignore[dict-item]
        BearerRefused: bearer_refused_handler,
        ValidationException: body_validation_handler,
    },
)
