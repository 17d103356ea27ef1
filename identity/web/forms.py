"""Reading the hosted pages' form posts: bounded text fields, the CSRF check, the language."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import FormMultiDict

from identity.runtime import Runtime
from identity.web import csrf
from identity.web.rendering import locale_for

# A hidden field (and query parameter) that keeps the page's language across posts, as the
# sign-in flow's ui_locales does for the login page.
LOCALE_FIELD = "ui_locales"


def field(form: FormMultiDict, name: str, limit: int = 4096) -> str:
    """A text field cut to ``limit`` characters; "" when absent or a file part."""
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def csrf_ok(request: Request[Any, Any, Any], runtime: Runtime, form: FormMultiDict) -> bool:
    return csrf.verify(
        request.cookies, runtime.settings, runtime.secret_key, field(form, csrf.FIELD)
    )


def page_locale(request: Request[Any, Any, Any], form: FormMultiDict | None = None) -> str:
    """The language a form post asked for, else the page link's, else Accept-Language."""
    chosen = field(form, LOCALE_FIELD, 64) if form is not None else ""
    return locale_for(request, chosen or request.query_params.get(LOCALE_FIELD))
