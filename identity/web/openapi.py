"""The OpenAPI document as served: the bearer token the management API takes, and error
answers documented as the problem details they are.

Nothing said that /api/v1 takes ``Authorization: Bearer``: a client generated from the
document sent no token, and every call was a 401. The management router requires
``BEARER`` (``BEARER_REQUIREMENT``); the public password routes, outside it, do not.

Litestar documents every error response (the automatic 400 for invalid input, above all)
as ``application/json`` with the shape of its own ``ValidationException``. Our handlers
answer every error as RFC 9457 problem details (identity/web/problems.py), so a client
generated from the document, or a schema check, would expect the wrong body and media type
(schemathesis found it: ST105). Each error response is documented as
``application/problem+json`` with the ``Problem`` schema instead.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme

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


def with_problem_errors(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``document`` in which every 4xx and 5xx response is a problem document."""
    paths: dict[str, Any] = {}
    for path, operations in document.get("paths", {}).items():
        paths[path] = {}
        for method, operation in operations.items():
            responses = operation.get("responses") if isinstance(operation, dict) else None
            if not responses:
                paths[path][method] = operation
                continue
            paths[path][method] = operation | {
                "responses": {
                    status: (
                        response | {"content": _PROBLEM}
                        if str(status)[:1] in ("4", "5")
                        else response
                    )
                    for status, response in responses.items()
                }
            }
    components = document.get("components", {})
    schemas = components.get("schemas", {}) | {"Problem": PROBLEM_SCHEMA}
    return document | {"paths": paths, "components": components | {"schemas": schemas}}


class ProblemJsonRenderPlugin(JsonRenderPlugin):
    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:  # type: ignore[type-arg]
        return self.render_json(request, with_problem_errors(openapi_schema))
