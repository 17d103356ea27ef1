"""How the app reads a JSON body.

- One nested too deeply is refused like a malformed one. msgspec decodes recursively and,
  past Python's recursion limit, raises RecursionError rather than its DecodeError; Litestar
  turns only the latter into a 400. So 20 KB of brackets, well inside the body limit,
  answered 500 on every JSON endpoint, and before authentication, since a handler's body is
  read before its dependencies.
- One holding an escape of half a surrogate pair (``"\\ud800"``) is called that: msgspec
  says "Input data was truncated", which sends the caller looking for a cut-off body.
- Its values must have the types the handler declares. Litestar converts a handler's
  arguments with msgspec's lax rules (``strict=False``, meant for query strings and paths,
  where everything is text), under which ``"true"`` and ``1`` are booleans and a number is a
  date: ``{"is_admin": "true"}`` made a user an administrator. ``strict_json_bodies`` adds a
  strict check of the body to every handler's own, where Litestar validates (after the
  dependencies: a caller without a token still gets 401 first). Dates and UUIDs, which JSON
  can only write as strings, are still read. A key given twice keeps its last value, as in
  JSON.parse.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec
from litestar import Litestar, Request
from litestar.connection import ASGIConnection
from litestar.enums import RequestEncodingType
from litestar.exceptions import SerializationException, ValidationException
from litestar.params import BodyKwarg
from litestar.routes import HTTPRoute
from litestar.serialization import default_deserializer
from litestar.typing import FieldDefinition

from identity.db import text_guard
from identity.errors import UnstorableText

UNPAIRED_SURROGATE = (
    "The JSON body holds an unpaired surrogate escape (such as \\ud800), which stands for no "
    "character."
)
# msgspec ends its message with where the value is: "Expected `bool`, got `str` - at `$.x`".
_WHERE = re.compile(r" - at `\$\.?(?P<path>.*)`$")

Parse = Callable[..., dict[str, Any]]


class AppRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError:
            raise SerializationException("The JSON body is nested too deeply.") from None
        except SerializationException:
            if await self._holds_unpaired_surrogate():
                raise SerializationException(UNPAIRED_SURROGATE) from None
            raise

    async def _holds_unpaired_surrogate(self) -> bool:
        """Whether the body is JSON but for an escape of half a surrogate pair ("\\ud800"),
        which msgspec refuses as "Input data was truncated". Python's decoder, asked only
        once msgspec has refused the body, takes such an escape."""
        try:
            text_guard.check(json.loads(await self.body()))
        except UnstorableText:
            return True  # or a NUL, which msgspec takes: it did not refuse for that
        except (ValueError, RecursionError):
            pass
        return False


def strict_json_bodies(app: Litestar) -> None:
    """Have every handler taking a JSON body check its types strictly, once Litestar's own
    (lax) validation of the handler's arguments has passed."""
    for route in app.routes:
        for handler in route.route_handlers if isinstance(route, HTTPRoute) else ():
            body = handler.parsed_fn_signature.parameters.get("data")
            if body is None or _media_type(body) != RequestEncodingType.JSON:
                continue
            model = handler.signature_model
            dec_hook = partial(default_deserializer, type_decoders=handler.resolve_type_decoders())
            strict = _strictly(model.parse_values_from_connection_kwargs, body.annotation, dec_hook)
            setattr(model, "parse_values_from_connection_kwargs", staticmethod(strict))  # noqa: B010


def _media_type(body: FieldDefinition) -> str:
    # A body with no Body() marker is JSON.
    definition = body.kwarg_definition
    return definition.media_type if isinstance(definition, BodyKwarg) else RequestEncodingType.JSON


def _strictly(lax: Parse, body_type: Any, dec_hook: Callable[[type, Any], Any]) -> Parse:
    def parse(
        connection: ASGIConnection[Any, Any, Any, Any], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        parsed = lax(connection=connection, kwargs=kwargs)
        if "data" in kwargs:
            try:
                msgspec.convert(kwargs["data"], type=body_type, strict=True, dec_hook=dec_hook)
            except msgspec.ValidationError as exc:
                raise _refused(str(exc)) from None
        return parsed

    return parse


def _refused(message: str) -> ValidationException:
    """The problem Litestar's own validation gives: the message, and the field it is about."""
    where = _WHERE.search(message)
    return ValidationException(
        extra=[
            {
                "message": message[: where.start()] if where else message,
                "key": where.group("path") if where and where.group("path") else "data",
                "source": "body",
            }
        ]
    )
