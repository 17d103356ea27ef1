"""The hosted pages: login, consent and logout (RP-initiated, OIDC end_session_endpoint)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post, route
from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromQuery
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.repository import PasswordChanged, check_password_unchanged_since
from identity.accounts.service import authenticate
from identity.accounts.throttle import SignInThrottle
from identity.clients.repository import get_client
from identity.clock import utcnow
from identity.errors import RateLimited
from identity.oauth import logout as logout_rules
from identity.oauth.authorize import unknown_client
from identity.oauth.errors import OAuth2Error
from identity.oauth.id_token_hint import verify_id_token_hint
from identity.oauth.interaction import Flow, FlowStore
from identity.oauth.scopes import SCOPES_SUPPORTED, for_user, requested_at_authorize
from identity.permissions.models import Account
from identity.permissions.repository import get_account
from identity.runtime import Runtime
from identity.sessions import service as sessions
from identity.settings import PACKAGE_ROOT
from identity.web import browser_session, client_ip, cookies, csrf, repeated_posts
from identity.web import pages_second_factor as second_factor
from identity.web.authorization import (
    FlowTaken,
    authorization_endpoint,
    error_response,
    flow_expired,
    flow_locale,
    handing_over,
    proceed,
    redirect,
    resume_once,
    scopes_for_user,
    signed_in,
    signed_in_before,
    with_query,
)
from identity.web.conditional import not_modified_middleware
from identity.web.dependencies import RuntimeDep
from identity.web.forms import MAX_PASSWORD, field, read_form, refusal
from identity.web.rendering import error_page, locale_for, page
from identity.web.retry_after import retry_after

# Long enough for any real address.
MAX_EMAIL = 320
# The login and consent pages; also the names of their posts for repeated_posts.
LOGIN = "/login"
CONSENT = "/consent"
# The consent page's two buttons; the decision is the value of the one pressed.
DECISIONS = frozenset({"allow", "deny"})


# --- login -------------------------------------------------------------------------------


def _login_form(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    flow: Flow,
    *,
    email: str,
    message_id: str | None = None,
    status: int = 200,
) -> Template:
    return page(
        request,
        runtime,
        "login.html",
        locale=flow_locale(request, flow),
        status=status,
        context={"flow": flow.id, "email": email, "message_id": message_id},
    )


@get(LOGIN, include_in_schema=False, cache=False)
async def login_page(
    request: Request[Any, Any, Any], runtime: RuntimeDep, flow: FromQuery[str | None] = None
) -> Response[Any]:
    pending = await FlowStore(runtime.store).load(flow)
    if pending is None:
        return flow_expired(request, runtime)
    return _login_form(request, runtime, pending, email=await _hinted_email(runtime, pending))


async def _hinted_email(runtime: Runtime, flow: Flow) -> str:
    """The email to fill in: the one a valid ``id_token_hint`` of ours carries, else
    ``login_hint`` (as node-oidc-provider and Keycloak fill in the username). Only the
    hint's own claim: whoever holds the token can read it there already, while the user's
    email from the database would tell a client never granted the email scope. A hint
    that is not ours fills in nothing."""
    hint = flow.request.get("id_token_hint")
    if hint is not None:
        try:
            claims = verify_id_token_hint(
                hint,
                await runtime.keyset(),
                runtime.settings.issuer,
                client_id=flow.request.get("client_id"),
            )
        except OAuth2Error:
            claims = {}
        email = claims.get("email")
        if isinstance(email, str) and len(email) <= MAX_EMAIL:
            return email
    return flow.request.get("login_hint") or ""


@post(LOGIN, include_in_schema=False, cache=False)
async def login_submit(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
    form = await read_form(request)
    flows = FlowStore(runtime.store)
    flow_id = field(form, "flow")
    email = field(form, "email", MAX_EMAIL).strip()
    pending = await flows.load(flow_id)
    # The same browser posting the email that just signed it in, in this flow (a double
    # click): once its password proves right again, it continues the first post's sign-in.
    repeat = repeated_posts.key_of(request, runtime, LOGIN, flow_id, email)
    # Its one wait for the first post, however many steps below wait for it.
    wait = repeated_posts.Wait()
    if pending is None and not await repeated_posts.recorded(runtime, repeat):
        return flow_expired(request, runtime, form)

    def refused(
        message_id: str, status: int, headers: dict[str, str] | None = None
    ) -> Response[Any]:
        if pending is None:  # a repeat that is not one after all: its flow is gone
            return flow_expired(request, runtime, form)
        response = _login_form(
            request, runtime, pending, email=email, message_id=message_id, status=status
        )
        response.headers.update(headers or {})
        return response

    settings = runtime.settings
    if not csrf.verify(request.cookies, settings, runtime.secret_key, field(form, csrf.FIELD)):
        return refused("form.csrf_failed", 400)
    ip = client_ip.of_request(request, settings.trusted_proxies)
    throttle = SignInThrottle(runtime.limiter, settings)
    client = client_ip.rate_subject(ip)
    password = field(form, "password", MAX_PASSWORD)
    try:
        last = await throttle.admit(email, client)
    except RateLimited as exc:
        first = await _repeat_beyond_the_limit(request, runtime, repeat, wait, email, password)
        return first or refused("login.throttled", 429, retry_after(exc))
    # For a post that spent the last attempt, until it is marked under way (its password
    # right) or has answered: a copy the throttle refuses meanwhile waits to know which. A
    # post with attempts left behind it has no refused copy to tell: no note, no store trip.
    async with repeated_posts.checking(runtime, repeat if last else None):
        previous = browser_session.cookie_token(request, settings)
        proof = await authenticate(runtime.db, runtime.passwords, email, password)
        if pending is None:
            # Only a repeat gets here (a flow still there was claimed by no post yet, and one
            # claimed meanwhile shows as FlowTaken below): the first post's answer once the
            # password proved right; else another password, or a first sign-in ended since.
            if proof is None:
                throttle.failed()
                return flow_expired(request, runtime, form)
            await throttle.succeeded(email, client)
            first = await signed_in_before(request, runtime, repeat, wait)
            return first or flow_expired(request, runtime, form)
        try:
            # Only a right password marks the post under way: a wrong one, the same post again
            # in the repeat's key, must never be handed the first post's sign-in.
            marked = repeat if proof is not None else None
            async with (
                handing_over(runtime, marked, wait) as claim,
                runtime.db.transaction() as session,
            ):
                needs_code = proof is not None and await second_factor.requires_code(
                    session, proof.user_id
                )
                if proof is not None:
                    # Handed over to a session or to the code step alike: the same post
                    # again gets this one's answer, whichever it is.
                    pending = await claim(pending.id)
                if proof is not None and not needs_code:
                    established = await sessions.establish(
                        session,
                        user_id=proof.user_id,
                        amr=["pwd"],
                        now=utcnow(),
                        lifetime=settings.session_lifetime,
                        previous_token=previous,
                        ip=ip,
                        user_agent=request.headers.get("user-agent"),
                    )
                    await check_password_unchanged_since(
                        session, proof.user_id, proof.password_set_at
                    )
        except PasswordChanged:
            # Changed, and every session ended, while argon2 checked the old one (or before its
            # change had committed); nothing was handed over, and the flow is back for the new
            # password to try.
            proof = None
        except FlowTaken:
            # The password was right: the post that took the flow signs in (or asks for the
            # code), this one made nothing and gives its attempt back; the same post again
            # answers as that one.
            await throttle.succeeded(email, client)
            first = await signed_in_before(request, runtime, repeat, wait)
            return first or flow_expired(request, runtime, form)
        if proof is None:
            throttle.failed()
            # One message for an unknown email, a wrong password and a disabled account.
            return refused("login.invalid", 400)
        await throttle.succeeded(email, client)
        if needs_code:
            asked = await second_factor.ask_for_code(request, runtime, pending, proof)
            if marked is not None:
                await repeated_posts.answered(runtime, marked, pending, location=asked.url)
            return asked
        return await signed_in(request, runtime, pending, established, repeat)


async def _repeat_beyond_the_limit(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    repeat: str | None,
    wait: repeated_posts.Wait,
    email: str,
    password: str,
) -> Response[Any] | None:
    """The answer to a post the throttle refused that is the same post again (a double
    click) as one that spent the last attempt and is signing in: the first post's sign-in,
    once this post's own password proves right too (the key holds no password). None
    otherwise, and then the refusal stands. Not counted, nor counted back: the throttle
    admitted nothing."""
    if not await repeated_posts.check_beyond_limit(runtime, repeat, wait):
        return None
    if await authenticate(runtime.db, runtime.passwords, email, password) is None:
        return None
    return await signed_in_before(request, runtime, repeat, wait)


# --- consent -----------------------------------------------------------------------------


async def _consent_form(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    flow: Flow,
    *,
    message_id: str | None = None,
    status: int = 200,
) -> Response[Any]:
    locale = flow_locale(request, flow)
    async with runtime.db.transaction() as session:
        client = await get_client(session, flow.request.get("client_id") or "")
        browser = await browser_session.signed_in(session, request, runtime)
        asked = requested_at_authorize(flow.request.get("scope") or "")
        # What the tokens will carry, and consent records: a user who is not staff is not
        # asked to allow identity:admin, which their tokens leave out.
        scopes = (
            await scopes_for_user(session, asked, browser.user_id)
            if browser
            else for_user(asked, is_admin=False)
        )
        account = await _consent_account(session, flow)
    if client is None:
        # Deleted or disabled since the sign-in began: the page /authorize shows for it,
        # which ends the sign-in.
        await FlowStore(runtime.store).end(flow)
        return error_response(request, runtime, unknown_client(), locale)
    return page(
        request,
        runtime,
        "consent.html",
        locale=locale,
        status=status,
        context={
            "flow": flow.id,
            "client_name": client.name,
            "scopes": scopes,
            # Each scope we define has its own line in the page's language; others are
            # shown by name.
            "labelled_scopes": SCOPES_SUPPORTED,
            "signed_in_user": browser.user_id if browser else "",
            # The tokens carry this account's permissions: the consent is for it.
            "account_name": account.name if account else None,
            "message_id": message_id,
        },
    )


async def _consent_account(session: AsyncSession, flow: Flow) -> Account | None:
    """The account the page asks about; None for tokens without one, or one deleted since
    (allowing then counts for none: ``proceed`` asks again for the account it picks)."""
    if flow.consent_account_id is None:
        return None
    return await get_account(session, uuid.UUID(flow.consent_account_id))


@get(CONSENT, include_in_schema=False, cache=False)
async def consent_page(
    request: Request[Any, Any, Any], runtime: RuntimeDep, flow: FromQuery[str | None] = None
) -> Response[Any]:
    pending = await FlowStore(runtime.store).load(flow)
    if pending is None:
        return flow_expired(request, runtime)
    return await _consent_form(request, runtime, pending)


@post(CONSENT, include_in_schema=False, cache=False)
async def consent_submit(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
    form = await read_form(request)
    flows = FlowStore(runtime.store)
    flow_id = field(form, "flow")
    token = browser_session.cookie_token(request, runtime.settings)
    async with runtime.db.transaction() as session:
        browser = await browser_session.live(session, runtime, token)
    decision = field(form, "decision")
    # Not a button's: a hand-made post must not end the sign-in as Deny would.
    complete = decision in DECISIONS
    signed_in = browser.user_id if browser else None
    if refused := refusal(request, runtime, form, signed_in, complete=complete):
        pending = await flows.load(flow_id)
        if pending is None:
            return flow_expired(request, runtime, form)
        return await _consent_form(
            request, runtime, pending, message_id=refused.message_id, status=refused.status
        )
    # Signed out since the first post: its sign-in is over, and no repeat brings it back.
    # The decision is not in the key: the first answer is the one, and a second (allow, then
    # deny) is told its outcome rather than the consent and code it already gave.
    repeat = (
        repeated_posts.key_of(request, runtime, CONSENT, flow_id, token)
        if browser is not None and token is not None
        else None
    )

    async def answer(pending: Flow) -> Response[Any]:
        return await proceed(
            request,
            runtime,
            pending,
            session_token=token,
            browser=browser,
            consent_given=decision == "allow",
        )

    answered = await resume_once(request, runtime, flow_id, repeat, answer)
    return answered or flow_expired(request, runtime, form)


# --- logout ------------------------------------------------------------------------------


@route("/logout", http_method=["GET", "POST"], include_in_schema=False, cache=False)
async def logout(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
    form = await read_form(request) if request.method == "POST" else None
    source = form if form is not None else request.query_params
    items = [(name, value) for name, value in source.multi_items() if isinstance(value, str)]
    settings = runtime.settings
    now = utcnow()
    # Read before the checks, so that a refused request is refused in the language it asked.
    locale = locale_for(request, next((v for n, v in items if n == "ui_locales"), None))
    try:
        params = logout_rules.parse(items)
        hint = params.get("id_token_hint")
        claims = (
            verify_id_token_hint(hint, await runtime.keyset(), settings.issuer) if hint else None
        )
        client_id = logout_rules.client_id_of(params, claims)
        async with runtime.db.transaction() as session:
            client = await get_client(session, client_id) if client_id else None
            resolved = logout_rules.check(params, claims, client)
            token = browser_session.cookie_token(request, settings)
            browser = await browser_session.live(session, runtime, token, now)
    except OAuth2Error:
        return error_page(request, runtime, "error.logout_invalid", locale=locale)

    confirmed = form is not None and "confirm" in form
    if form is not None and not confirmed and token is None:
        # A relying party's form post comes from another site, so the browser left its
        # SameSite=Lax session cookie behind: ask again as a GET navigation, which brings
        # it, rather than say "signed out" while the session lives on.
        return redirect(f"/logout?{urlencode(params)}")
    if confirmed and not csrf.verify(
        request.cookies, settings, runtime.secret_key, field(form, csrf.FIELD)
    ):
        return _logout_form(request, runtime, resolved, locale, "form.csrf_failed", 400)
    # Without an ID token for this sign-in, a link alone must not sign anyone out.
    if browser is not None and not (
        confirmed
        or logout_rules.vouches_for(
            resolved, str(browser.user_id), str(browser.sid) if browser.sid else None
        )
    ):
        return _logout_form(request, runtime, resolved, locale, None, 200)

    if browser is not None:
        # Only a live sign-in, which confirmed or vouched for this: a link from any site
        # reaches here unasked when the session has expired, and must not end the refresh
        # tokens that outlive it.
        async with runtime.db.transaction() as session:
            await sessions.end(session, token, now)
    goodbye = [cookies.clear_session(settings)]
    if resolved.post_logout_redirect_uri:
        return redirect(
            with_query(resolved.post_logout_redirect_uri, {"state": resolved.state}), goodbye
        )
    return page(request, runtime, "logged_out.html", locale=locale, cookies=goodbye)


def _logout_form(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    resolved: logout_rules.LogoutRequest,
    locale: str,
    message_id: str | None,
    status: int,
) -> Template:
    return page(
        request,
        runtime,
        "logout.html",
        locale=locale,
        status=status,
        context={
            "client_id": resolved.client.client_id if resolved.client else None,
            "client_name": resolved.client.name if resolved.client else None,
            "post_logout_redirect_uri": resolved.post_logout_redirect_uri,
            "state": resolved.state,
            "ui_locales": locale,
            "message_id": message_id,
        },
    )


def _nameable_file(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """No file is named with a NUL character; asked for one, Litestar's static files router
    let the operating system's ValueError out as a 500."""
    if "\x00" in connection.scope["path"]:
        raise NotFoundException()


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(directory=PACKAGE_ROOT / "templates", engine=JinjaTemplateEngine)


# Everything the browser side serves, for identity.app to mount.
ROUTES = [
    authorization_endpoint,
    login_page,
    login_submit,
    consent_page,
    consent_submit,
    logout,
    create_static_files_router(
        path="/static",
        directories=[PACKAGE_ROOT / "static"],
        include_in_schema=False,
        guards=[_nameable_file],
        middleware=[not_modified_middleware],
    ),
]
