"""The OpenAPI document as served: the bearer token the management API takes, and every
error answer an operation gives, documented as the problem details it is.

Nothing said that /api/v1 takes ``Authorization: Bearer``: a client generated from the
document sent no token, and every call was a 401. The management router requires
``BEARER`` (``BEARER_REQUIREMENT``); the public password routes, outside it, do not.

Litestar documents every error response (the automatic 400 for invalid input, above all)
as ``application/json`` with the shape of its own ``ValidationException``. Our handlers
answer every error as RFC 9457 problem details (identity/web/problems.py), so a client
generated from the document, or a schema check, would expect the wrong body and media type
(schemathesis found it: ST105). Each error response is documented as
``application/problem+json`` with the ``Problem`` schema instead.

Litestar documents only that 400, so the other errors were a client's surprise. A handler
declares those its own code (and its services) give with ``responses=problems(...)``;
the ones that follow from the document itself are added here, for every operation they
apply to: 401 and 403 where a token is required, 404 where the path names something
(Litestar's router answers it for an id of the wrong form, the services for one that
names nothing, or an account hidden from the caller), 413 where there is a body (the
app's size cap), 503 everywhere (the database or Redis down).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Router
from litestar.connection import ASGIConnection
from litestar.datastructures import ResponseHeader
from litestar.exceptions import NotFoundException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, Schema, SecurityRequirement, SecurityScheme
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition

from identity.oauth.scopes import SCOPE_ACCOUNTS, SCOPE_ADMIN, SCOPE_AUTHZ
from identity.web.problems import PROBLEM_JSON

BEARER = "BearerToken"
BEARER_REQUIREMENT: SecurityRequirement = {BEARER: []}
COMPONENTS = Components(
    security_schemes={
        BEARER: SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="JWT",
            description=(
                "An access token from this server's token endpoint (RFC 9068), meant for it, "
                f"with one of these scopes: `{SCOPE_ACCOUNTS}` (a user managing the accounts "
                f"they belong to), `{SCOPE_ADMIN}` (staff: an administrator, or a client "
                f"allowed it for itself), `{SCOPE_AUTHZ}` (a client's own token asking for "
                'authorization decisions). What each may do is in the README, "Who may do '
                'what".'
            ),
        )
    }
)

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": ["string", "null"]},
                    "message": {"type": ["string", "null"]},
                },
            },
        },
    },
    # Some problems carry more (readiness checks, policy reasons).
    "additionalProperties": True,
}
_PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}

MEANINGS: dict[int, str] = {
    400: "Malformed: input the operation does not take, or an Authorization header that names "
    "Bearer without a token.",
    401: "No access token, or one that is invalid, expired, revoked or meant for another server.",
    403: "The token has no scope this API takes, or its holder may not do this.",
    404: "Nothing has this id, or the caller may not know it exists (an account they have "
    "no part in).",
    409: "The current state forbids it: a duplicate, the last owner, something already "
    "used or cancelled.",
    413: "The body is larger than the server takes.",
    415: "The body is not sent as application/json.",
    422: "Well-formed but refused (`errors` names the fields), including text that no "
    "database can store (NUL, unpaired surrogates).",
    429: "Too many requests; Retry-After says when to try again.",
    503: "The database or Redis is unavailable; try again shortly.",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
_CHALLENGE = {"description": "Bearer (RFC 6750)", "schema": {"type": "string"}}
_HEADERS: dict[str, dict[str, Any]] = {
    # On a 400 only for a malformed Authorization header: RFC 6750 §3.1's invalid_request.
    "400": {"WWW-Authenticate": _CHALLENGE | {"required": False}},
    "401": {"WWW-Authenticate": _CHALLENGE},
    "429": _RETRY_AFTER,
    "503": _RETRY_AFTER,
}


# On the 201 of an operation answering with ``common.created``; Litestar documents a header's
# type from its value (a string), and sends none, as the handler sets it.
LOCATION = [
    ResponseHeader(
        name="Location",
        value="",
        documentation_only=True,
        description="The URL of what was created",
        required=True,
    )
]


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """The error answers a handler gives beyond those every operation of its kind gives
    (``_following_from``), for its ``responses=``."""
    return {status: ResponseSpec(None, description=MEANINGS[status]) for status in statuses}


def _following_from(path: str, operation: dict[str, Any]) -> list[int]:
    statuses = [503]
    if operation.get("security"):
        statuses += [400, 401, 403]
    if "{" in path:
        statuses.append(404)
    if "requestBody" in operation:
        statuses += [413, 415]
    return statuses


def _as_problem(status: str, response: dict[str, Any]) -> dict[str, Any]:
    if status[:1] not in ("4", "5"):
        return response
    headers = _HEADERS.get(status)
    return response | {"content": _PROBLEM} | ({"headers": headers} if headers else {})


def with_problem_errors(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``document`` in which every operation lists the errors that follow from its
    path, body and security, and every 4xx and 5xx response is a problem document."""
    paths: dict[str, Any] = {}
    for path, operations in document.get("paths", {}).items():
        paths[path] = {}
        for method, operation in operations.items():
            responses = operation.get("responses") if isinstance(operation, dict) else None
            if not responses:
                paths[path][method] = operation
                continue
            implied = {
                str(status): {"description": MEANINGS[status]}
                for status in _following_from(path, operation)
            }
            merged = implied | {str(status): r for status, r in responses.items()}
            paths[path][method] = operation | {
                "responses": {
                    status: _as_problem(status, merged[status]) for status in sorted(merged)
                }
            }
    components = document.get("components", {})
    schemas = components.get("schemas", {}) | {"Problem": PROBLEM_SCHEMA}
    return document | {"paths": paths, "components": components | {"schemas": schemas}}


# Litestar's handler for a path under /schema that no render plugin serves: it answers with
# an HTML page of its own, where every other endpoint for programs answers a problem.
_LITESTAR_SCHEMA_NOT_FOUND = "handle_schema_path_not_found"


def _not_found_as_problem(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    if handler.handler_name == _LITESTAR_SCHEMA_NOT_FOUND:
        raise NotFoundException


class ProblemJsonRenderPlugin(JsonRenderPlugin):
    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:  # type: ignore[type-arg]
        return self.render_json(request, with_problem_errors(openapi_schema))

    def receive_router(self, router: Router) -> None:
        # Before the router joins the app, which is when its handlers resolve their guards.
        router.guards = [*(router.guards or ()), _not_found_as_problem]


def _string_constraints(kind: Any) -> msgspec.inspect.StrType | None:
    kind = kind.type if isinstance(kind, msgspec.inspect.Metadata) else kind
    return kind if isinstance(kind, msgspec.inspect.StrType) else None


def _document_item_constraints(schema: Schema, struct: msgspec.inspect.StructType) -> None:
    """Litestar keeps the constraints of a field's own type but drops those of a list's items
    (a role's permission names): the document said any string, where the API answers 400."""
    for field in struct.fields:
        kinds = (
            field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
        )
        lists = [k for k in kinds if isinstance(k, msgspec.inspect.ListType)]
        item = _string_constraints(lists[0].item_type) if lists else None
        documented = (schema.properties or {}).get(field.encode_name)
        if item is None or not isinstance(documented, Schema):
            continue
        for array in [documented, *(documented.one_of or [])]:
            if isinstance(array, Schema) and isinstance(array.items, Schema):
                array.items.pattern = item.pattern
                array.items.min_length = item.min_length
                array.items.max_length = item.max_length


class ClosedBodiesPlugin(OpenAPISchemaPlugin):
    """Documents ``additionalProperties: false`` on the bodies that refuse unknown fields
    (``forbid_unknown_fields``, as ``schemas.Request``).

    Litestar's own schema for a msgspec struct says nothing of it, so the document allowed
    any extra field where the API answers 400: a client generated from it, or a test
    generating bodies from it, sent fields it believed were fine. The schema itself is still
    Litestar's (the plugin after this one that takes the struct); only the flag is added,
    and the constraints of list items Litestar leaves out.
    """

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        if field_definition.is_union or not field_definition.is_subclass_of(msgspec.Struct):
            return False
        info = msgspec.inspect.type_info(field_definition.type_)
        return isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        litestars = next(
            plugin
            for plugin in schema_creator.plugins
            if plugin is not self and schema_creator.plugin_supports_field(plugin, field_definition)
        )
        schema: Schema = litestars.to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        _document_item_constraints(schema, msgspec.inspect.type_info(field_definition.type_))
        return schema
