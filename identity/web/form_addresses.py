"""A form's own address opened with GET (the address bar, a bookmark, a reload after the
answer was left): the browser is sent to the page the form lives on, in the language the
link asked for, rather than told there is no page at an address that exists.

One rule for every hosted form that posts to an address no page answers GET at: its page
is the nearest address above it that does (``/account/security/totp/confirm`` belongs to
``/account/security``, ``/accounts/{id}/users/{user}/grants`` to ``/accounts/{id}/users``).
Addresses that are nobody's form (a typo) still get the "not found" page.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.response import Redirect

from identity.web.authorization import redirect, with_query
from identity.web.forms import LOCALE_FIELD


def _page_above(path: str, pages: set[str]) -> str | None:
    parts = path.split("/")
    for end in range(len(parts) - 1, 1, -1):
        if (above := "/".join(parts[:end])) in pages:
            return above
    return None


def _back_to(page_segments: int, path: str) -> HTTPRouteHandler:
    @get(path, include_in_schema=False, cache=False)
    async def back_to_the_page(request: Request[Any, Any, Any]) -> Redirect:
        # The page's address is the request's own, cut where the page's template ends: the
        # path parameters (an account's id) are the ones the form's address holds.
        page = "/".join(request.scope["path"].split("/")[:page_segments])
        locale = request.query_params.get(LOCALE_FIELD)
        return redirect(with_query(page, {LOCALE_FIELD: locale[:64] if locale else None}))

    return back_to_the_page


def back_to_their_pages(routes: Iterable[object]) -> Sequence[HTTPRouteHandler]:
    """A GET handler for each form address among ``routes`` (the hosted pages') that has
    none, sending the browser to its page."""
    handlers = [route for route in routes if isinstance(route, HTTPRouteHandler)]
    pages = {path for h in handlers if "GET" in h.http_methods for path in h.paths}
    forms = {path for h in handlers if "POST" in h.http_methods for path in h.paths} - pages
    return [
        _back_to(page.count("/") + 1, form)
        for form in sorted(forms)
        if (page := _page_above(form, pages)) is not None
    ]
