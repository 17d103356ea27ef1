"""The authorization endpoint (GET and POST /authorize) and the resumption of its flows.

``proceed`` is the one path every authorization request takes, first from /authorize and
again from the login and consent pages: validate, look at the browser's session and
consent, then send the browser to sign in, to consent, or back to the client with a code.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from litestar import Request, Response, route
from litestar.datastructures import Cookie
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession

from identity.clients.repository import get_client
from identity.clock import utcnow
from identity.crypto import digest, random_token
from identity.db.engine import DatabaseUnavailable
from identity.oauth import authorize
from identity.oauth.authorize import Interaction, Step, ValidRequest
from identity.oauth.errors import OAuth2Error, ServerError, TemporarilyUnavailableError
from identity.oauth.id_token_hint import verify_id_token_hint
from identity.oauth.interaction import Flow, FlowStore
from identity.runtime import Runtime
from identity.sessions import service as sessions
from identity.sessions.models import BrowserSession
from identity.store.base import StoreUnavailable
from identity.tokens import consents
from identity.tokens.codes import insert_code
from identity.tokens.models import AuthorizationCode
from identity.web import cookies
from identity.web.dependencies import RuntimeDep
from identity.web.rendering import error_page, locale_for

log = logging.getLogger(__name__)


def with_query(uri: str, params: dict[str, str | None]) -> str:
    """``uri`` with ``params`` added to any query it already has (RFC 6749 §3.1.2)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(name, value) for name, value in params.items() if value is not None]
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def redirect(location: str, response_cookies: list[Cookie] | None = None) -> Redirect:
    return Redirect(location, status_code=303, cookies=response_cookies or [])


def error_response(
    request: Request[Any, Any, Any], runtime: Runtime, exc: OAuth2Error, locale: str
) -> Response[Any]:
    """Back to the verified redirect URI when there is one (RFC 9207 ``iss`` included)."""
    if exc.redirect_uri:
        return redirect(
            with_query(
                exc.redirect_uri,
                {
                    "error": exc.error,
                    "error_description": exc.description,
                    "state": exc.state,
                    "iss": runtime.settings.issuer,
                },
            )
        )
    return error_page(
        request, runtime, f"error.oauth.{exc.error}", locale=locale, error_code=exc.error
    )


async def _issue_code(
    session: AsyncSession,
    runtime: Runtime,
    valid: ValidRequest,
    browser: BrowserSession,
    now: datetime,
) -> str:
    code = random_token()
    await insert_code(
        session,
        AuthorizationCode(
            code_hash=digest(code),
            client_id=valid.client.client_id,
            user_id=browser.user_id,
            session_id=browser.id,
            redirect_uri=valid.redirect_uri,
            scope=valid.scope,
            resources=list(valid.resources),
            nonce=valid.nonce,
            code_challenge=valid.code_challenge,
            code_challenge_method=valid.code_challenge_method,
            auth_time=browser.auth_time,
            amr=list(browser.amr),
            created_at=now,
            expires_at=now + timedelta(seconds=runtime.settings.authorization_code_ttl),
        ),
    )
    return code


async def _hinted_subject(runtime: Runtime, valid: ValidRequest) -> str | None:
    if valid.id_token_hint is None:
        return None
    try:
        claims = verify_id_token_hint(
            valid.id_token_hint, await runtime.keyset(), runtime.settings.issuer
        )
    except OAuth2Error as exc:
        raise authorize.redirectable(exc, valid.redirect_uri, valid.state) from None
    return claims["sub"]


async def _consent_covers(
    session: AsyncSession,
    valid: ValidRequest,
    browser: BrowserSession | None,
    consent_given: bool | None,
    now: datetime,
) -> bool:
    """Whether remembered consent covers the request; records consent just given."""
    if browser is None or valid.client.first_party:
        return False
    if consent_given:
        await consents.remember(session, browser.user_id, valid.client.client_id, valid.scopes, now)
        return True
    granted = await consents.granted_scopes(session, browser.user_id, valid.client.client_id)
    return set(valid.scopes) <= granted


async def proceed(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    flow: Flow,
    *,
    session_token: str | None,
    consent_given: bool | None = None,
    response_cookies: list[Cookie] | None = None,
) -> Response[Any]:
    """Take the authorization request in ``flow`` one step further."""
    locale = locale_for(request, flow.request.get("ui_locales"))
    now = utcnow()
    flows = FlowStore(runtime.store)
    valid: ValidRequest | None = None
    try:
        async with runtime.db.transaction() as session:
            client_id = flow.request.get("client_id")
            client = await get_client(session, client_id) if client_id else None
            valid = authorize.validate(flow.request, client)
            hinted_subject = await _hinted_subject(runtime, valid)
            browser = await sessions.current(session, session_token, now)
            covers = await _consent_covers(session, valid, browser, consent_given, now)
            step = authorize.next_step(
                valid,
                Interaction(
                    auth_time=browser.auth_time if browser else None,
                    subject=str(browser.user_id) if browser else None,
                    hinted_subject=hinted_subject,
                    signed_in_now=browser is not None and flow.login_session_id == str(browser.id),
                    consent_covers=covers,
                    consent_given=consent_given,
                ),
                now,
            )
            if step is Step.ISSUE and browser is not None:
                code = await _issue_code(session, runtime, valid, browser, now)
    except OAuth2Error as exc:
        return error_response(request, runtime, exc, locale)
    except Exception as exc:
        if valid is None:
            raise
        # The client is known and its redirect URI verified: tell it, as RFC 6749 §4.1.2.1
        # asks, rather than leaving the user on a JSON problem page.
        if isinstance(exc, DatabaseUnavailable | StoreUnavailable):
            log.error("authorization unavailable: %s", type(exc).__name__)
            error: OAuth2Error = TemporarilyUnavailableError("Please try again shortly.")
        else:
            log.exception("authorization failed")
            error = ServerError("An unexpected error occurred.")
        redirectable = authorize.redirectable(error, valid.redirect_uri, valid.state)
        return error_response(request, runtime, redirectable, locale)

    if step is Step.ISSUE:
        await flows.delete(flow.id)
        location = with_query(
            valid.redirect_uri,
            {"code": code, "state": valid.state, "iss": runtime.settings.issuer},
        )
        return redirect(location, response_cookies)
    await flows.save(flow)
    page = "/login" if step is Step.LOGIN else "/consent"
    return redirect(f"{page}?{urlencode({'flow': flow.id})}", response_cookies)


def _parameters(items: Any) -> list[tuple[str, str]]:
    # Form bodies may hold file parts; no authorization parameter is a file.
    return [(name, value) for name, value in items if isinstance(value, str)]


@route("/authorize", http_method=["GET", "POST"], include_in_schema=False, cache=False)
async def authorization_endpoint(
    request: Request[Any, Any, Any], runtime: RuntimeDep
) -> Response[Any]:
    if request.method == "POST":
        items = _parameters((await request.form()).multi_items())
    else:
        items = _parameters(request.query_params.multi_items())
    return await proceed(
        request,
        runtime,
        Flow(authorize.parse(items)),
        session_token=cookies.read(request.cookies, runtime.settings, cookies.SESSION),
    )
