"""Hosted pages of account recovery: forgot password, reset password, confirm a new email.

The work is identity.recovery's; these handlers read the form, check CSRF, and turn each
domain answer into a page in the visitor's language. Links from emails open a page with a
button rather than acting on GET, so a mail scanner that follows links spends nothing.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import FromQuery
from litestar.response import Template

from identity.accounts.emails import shown_email
from identity.clock import utcnow
from identity.errors import Conflict, InvalidInput, PolicyViolation, RateLimited
from identity.recovery.email_change import (
    CONFIRM_PAGE_PATH,
    InvalidConfirmationLink,
    confirm_email_change,
    confirmed_by,
)
from identity.recovery.service import (
    RESET_PAGE_PATH,
    InvalidResetToken,
    PasswordMismatch,
    complete_reset,
    request_reset,
    reset_by,
    reset_token_owner,
)
from identity.runtime import Runtime
from identity.web import browser_session, client_ip, cookies, password_form
from identity.web.actors import request_origin
from identity.web.dependencies import RuntimeDep
from identity.web.forms import MAX_PASSWORD, csrf_ok, field, page_locale, read_form
from identity.web.notices import notice
from identity.web.pages_account import PATH as SECURITY_PATH
from identity.web.rendering import page
from identity.web.retry_after import retry_after

FORGOT_PATH = "/password/forgot"
MAX_EMAIL = 320
# Our tokens are 43 characters; anything much longer is not one of them.
MAX_TOKEN = 200


# --- forgot password ---------------------------------------------------------------------


def _forgot_form(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    locale: str,
    *,
    email: str = "",
    message_id: str | None = None,
    status: int = 200,
) -> Template:
    context = {"email": email, "message_id": message_id}
    return page(request, runtime, "forgot.html", locale=locale, status=status, context=context)


@get(FORGOT_PATH, include_in_schema=False, cache=False)
async def forgot_page(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
    return _forgot_form(request, runtime, page_locale(request))


@post(FORGOT_PATH, include_in_schema=False, cache=False)
async def forgot_submit(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
    form = await read_form(request)
    locale = page_locale(request, form)
    email = field(form, "email", MAX_EMAIL).strip()
    if not csrf_ok(request, runtime, form):
        return _forgot_form(
            request, runtime, locale, email=email, message_id="form.csrf_failed", status=400
        )
    ip = client_ip.rate_subject(client_ip.of_request(request, runtime.settings.trusted_proxies))
    try:
        await request_reset(runtime, email, ip=ip, locale=locale)
    except InvalidInput:
        return _forgot_form(
            request, runtime, locale, email=email, message_id="forgot.invalid_email", status=400
        )
    except RateLimited as exc:
        response = _forgot_form(
            request, runtime, locale, email=email, message_id="forgot.throttled", status=429
        )
        response.headers.update(retry_after(exc))
        return response
    return notice(request, runtime, locale, "forgot.sent_title", "forgot.sent")


# --- reset password ----------------------------------------------------------------------


async def _reset_form(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    locale: str,
    token: str,
    *,
    suggest: bool = False,
    message_id: str | None = None,
    reasons: list[str] | None = None,
    status: int = 200,
) -> Response[Any]:
    async with runtime.db.transaction() as session:
        owner = await reset_token_owner(session, token, utcnow()) if token else None
    if owner is None:
        return _invalid_link(request, runtime, locale)
    return page(
        request,
        runtime,
        "reset.html",
        locale=locale,
        status=status,
        scripts=True,
        context={
            "action": RESET_PAGE_PATH,
            "token": token,
            "message_id": message_id,
            "reasons": reasons,
            **await password_form.context(
                runtime, suggest=suggest, email=owner.email, name=owner.name
            ),
        },
    )


def _invalid_link(request: Request[Any, Any, Any], runtime: Runtime, locale: str) -> Template:
    return notice(
        request,
        runtime,
        locale,
        "reset.invalid_title",
        "reset.invalid",
        link=(FORGOT_PATH, "reset.ask_again"),
        status=400,
    )


@get(RESET_PAGE_PATH, include_in_schema=False, cache=False)
async def reset_page(
    request: Request[Any, Any, Any], runtime: RuntimeDep, token: FromQuery[str] = ""
) -> Response[Any]:
    return await _reset_form(request, runtime, page_locale(request), token[:MAX_TOKEN])


@post(RESET_PAGE_PATH, include_in_schema=False, cache=False)
async def reset_submit(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
    form = await read_form(request)
    locale = page_locale(request, form)
    token = field(form, "token", MAX_TOKEN)
    if not csrf_ok(request, runtime, form):
        return await _reset_form(
            request, runtime, locale, token, message_id="form.csrf_failed", status=400
        )
    if password_form.wants_suggestion(form):
        return await _reset_form(request, runtime, locale, token, suggest=True)
    try:
        await complete_reset(
            runtime.db,
            runtime.store,
            runtime.passwords,
            token,
            field(form, "password", MAX_PASSWORD),
            field(form, "password_confirm", MAX_PASSWORD),
            origin=request_origin(request, runtime),
            product_name=runtime.settings.product_name,
            locale=locale,
        )
    except InvalidResetToken:
        # Spent by this form's first post (a double click): its reset is the answer, with
        # nothing done again.
        async with runtime.db.transaction() as session:
            done = await reset_by(session, runtime.store, token) is not None
        if not done:
            return _invalid_link(request, runtime, locale)
    except PasswordMismatch:
        return await _reset_form(
            request, runtime, locale, token, message_id="reset.mismatch", status=400
        )
    except PolicyViolation as exc:
        reasons = password_form.refusal_reasons(exc, locale)
        return await _reset_form(request, runtime, locale, token, reasons=reasons, status=400)
    runtime.mail.wake()
    return notice(
        request,
        runtime,
        locale,
        "reset.done_title",
        "reset.done",
        link=(SECURITY_PATH, "reset.sign_in"),
        response_cookies=await _dead_session_cookie(request, runtime),
    )


async def _dead_session_cookie(request: Request[Any, Any, Any], runtime: Runtime) -> list[Cookie]:
    """The browser's session cookie, to be dropped, when the reset ended its session (it was
    the user's). A browser signed in as someone else stays so: the reset is not theirs, and
    dropping the cookie would only hide a session that lives on."""
    token = browser_session.cookie_token(request, runtime.settings)
    if token is None:
        return []
    async with runtime.db.transaction() as session:
        live = await browser_session.live(session, runtime, token)
    return [] if live else [cookies.clear_session(runtime.settings)]


# --- confirm a new sign-in email ---------------------------------------------------------


def _confirm_form(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    locale: str,
    token: str,
    *,
    message_id: str | None = None,
    status: int = 200,
) -> Template:
    return page(
        request,
        runtime,
        "confirm_email.html",
        locale=locale,
        status=status,
        context={"action": CONFIRM_PAGE_PATH, "token": token, "message_id": message_id},
    )


@get(CONFIRM_PAGE_PATH, include_in_schema=False, cache=False)
async def confirm_email_page(
    request: Request[Any, Any, Any], runtime: RuntimeDep, token: FromQuery[str] = ""
) -> Response[Any]:
    return _confirm_form(request, runtime, page_locale(request), token[:MAX_TOKEN])


@post(CONFIRM_PAGE_PATH, include_in_schema=False, cache=False)
async def confirm_email_submit(
    request: Request[Any, Any, Any], runtime: RuntimeDep
) -> Response[Any]:
    form = await read_form(request)
    locale = page_locale(request, form)
    token = field(form, "token", MAX_TOKEN)
    if not csrf_ok(request, runtime, form):
        return _confirm_form(
            request, runtime, locale, token, message_id="form.csrf_failed", status=400
        )
    try:
        async with runtime.db.transaction() as session:
            user = await confirm_email_change(
                session,
                runtime.store,
                runtime.settings,
                request_origin(request, runtime),
                token,
                locale,
                utcnow(),
            )
            email = shown_email(user.email)
    except InvalidConfirmationLink:
        # Spent by this form's first post (a double click): its change is the answer.
        async with runtime.db.transaction() as session:
            done = await confirmed_by(session, runtime.store, token)
        if done is None:
            return notice(
                request,
                runtime,
                locale,
                "confirm_email.title",
                "confirm_email.invalid",
                link=(SECURITY_PATH, "security.title"),
                status=400,
            )
        email = shown_email(done.email)
    except Conflict:
        return notice(
            request, runtime, locale, "confirm_email.title", "confirm_email.taken", status=409
        )
    runtime.mail.wake()
    return notice(
        request,
        runtime,
        locale,
        "confirm_email.done_title",
        "confirm_email.done",
        values={"email": email},
        link=(SECURITY_PATH, "security.title"),
    )


ROUTES = [
    forgot_page,
    forgot_submit,
    reset_page,
    reset_submit,
    confirm_email_page,
    confirm_email_submit,
]
