"""A hosted page that says one thing, with an optional link onwards: what a finished step
(a reset, a confirmed email, leaving an account) answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from litestar import Request
from litestar.datastructures import Cookie
from litestar.response import Template

from identity.runtime import Runtime
from identity.web.forms import LOCALE_FIELD
from identity.web.rendering import page


def notice(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    locale: str,
    title_id: str,
    notice_id: str,
    *,
    link: tuple[str, str] | None = None,
    status: int = 200,
    values: dict[str, str] | None = None,
    response_cookies: Sequence[Cookie] = (),
) -> Template:
    """A page that says one thing, with an optional link (path, text id) onwards."""
    href, link_id = link or (None, None)
    return page(
        request,
        runtime,
        "notice.html",
        locale=locale,
        status=status,
        cookies=response_cookies,
        context={
            "title_id": title_id,
            "notice_id": notice_id,
            "values": values,
            "link_href": f"{href}?{urlencode({LOCALE_FIELD: locale})}" if href else None,
            "link_id": link_id,
        },
    )
