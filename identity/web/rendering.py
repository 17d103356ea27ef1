"""How every hosted page is rendered: its language, CSRF token and security headers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Request
from litestar.datastructures import Cookie
from litestar.response import Template

from identity.i18n import Messages, negotiate
from identity.runtime import Runtime
from identity.web import csrf

# No script at all, styles only from our own origin, never framed (clickjacking), no <base>
# rewriting. No form-action: Chromium applies it to the redirect that follows a form post,
# which here goes to the client's own redirect URI.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    # X-Content-Type-Options: on every answer (identity.web.request_context).
    # Page URLs carry flow ids; they are nobody else's business.
    "Referrer-Policy": "no-referrer",
    # Pages carry CSRF tokens and personal data: never cached.
    "Cache-Control": "no-store",
}
# Pages where a password is set load /static/password.js (generate, copy, strength meter),
# which calls /api/v1/password/*: scripts from our own origin only, still none inline.
SCRIPT_SECURITY_HEADERS = SECURITY_HEADERS | {
    "Content-Security-Policy": f"{CONTENT_SECURITY_POLICY}; script-src 'self'; connect-src 'self'"
}


def locale_for(request: Request[Any, Any, Any], ui_locales: str | None) -> str:
    return negotiate(ui_locales, request.headers.get("accept-language"))


def page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    template: str,
    *,
    locale: str,
    status: int = 200,
    context: dict[str, Any] | None = None,
    cookies: Sequence[Cookie] = (),
    scripts: bool = False,
) -> Template:
    state = csrf.prepare(request.cookies, runtime.settings, runtime.secret_key)
    messages = Messages(locale)
    return Template(
        template_name=template,
        context={
            "t": messages,
            "lang": messages.locale,
            "product_name": runtime.settings.product_name,
            # Every link, form and script of a page is under it (identity.web.public_path).
            "base": runtime.settings.public_path,
            "csrf_field": csrf.FIELD,
            "csrf_token": state.token,
            **(context or {}),
        },
        status_code=status,
        headers=SCRIPT_SECURITY_HEADERS if scripts else SECURITY_HEADERS,
        cookies=[*cookies, *([state.cookie] if state.cookie else [])],
    )


def error_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    message_id: str,
    *,
    locale: str,
    status: int = 400,
    error_code: str | None = None,
    cookies: Sequence[Cookie] = (),
) -> Template:
    """The error page: a translated sentence for people, the OAuth code for developers."""
    return page(
        request,
        runtime,
        "error.html",
        locale=locale,
        status=status,
        context={"message_id": message_id, "error_code": error_code},
        cookies=cookies,
    )
