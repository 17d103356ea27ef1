"""The app's request class: a JSON body nested too deeply is refused like a malformed one.

msgspec decodes recursively and, past Python's recursion limit, raises RecursionError
rather than its DecodeError; Litestar turns only the latter into a 400. So 20 KB of
brackets, well inside the body limit, answered 500 on every JSON endpoint, and before
authentication, since a handler's body is read before its dependencies.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import SerializationException


class AppRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError:
            raise SerializationException("The JSON body is nested too deeply.") from None
