"""The OpenAPI document as served: error answers documented as the problem details they are.

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

from identity.web.problems import PROBLEM_JSON

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
