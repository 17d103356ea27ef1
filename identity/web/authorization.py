"""The authorization endpoint (GET and POST /authorize) and the resumption of its flows.

``proceed`` is the one path every authorization request takes, first from /authorize and
again from the login, account and consent pages: validate, look at the browser's session,
its accounts and consent, then send the browser to sign in, to pick an account, to consent,
or back to the client with a code. A flow with ``return_to`` is a hosted page's sign-in
instead, and goes back to that page.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from litestar import Request, Response, route
from litestar.datastructures import Cookie, FormMultiDict
from litestar.response import Redirect, Template
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from identity.clock import utcnow
from identity.crypto import digest, random_token
from identity.db.engine import DatabaseUnavailable
from identity.errors import RateLimited
from identity.oauth import account_selection, authorize
from identity.oauth.account_selection import Selection, select_account
from identity.oauth.authorize import Interaction, Step, ValidRequest
from identity.oauth.errors import OAuth2Error, ServerError, TemporarilyUnavailableError
from identity.oauth.id_token_hint import verify_id_token_hint
from identity.oauth.interaction import Flow, FlowStore
from identity.oauth.scopes import SCOPE_ADMIN, for_user
from identity.permissions.customer_accounts import account_ids_of
from identity.runtime import Runtime
from identity.sessions.models import BrowserSession
from identity.sessions.service import Established
from identity.store.base import StoreUnavailable
from identity.store.rate_limit import Limit
from identity.tokens import consents
from identity.tokens.codes import insert_code, is_unredeemed
from identity.tokens.models import AuthorizationCode
from identity.tokens.subjects import active_user
from identity.web import browser_session, cookies, repeated_posts
from identity.web.client_ip import of_request, rate_subject
from identity.web.dependencies import RuntimeDep
from identity.web.forms import page_locale, read_form
from identity.web.rendering import error_page, locale_for
from identity.web.retry_after import retry_after

log = logging.getLogger(__name__)
# Where a user with several accounts picks the one this authorization is for.
ACCOUNT_PAGE = "/login/account"
# New pending sign-ins (flows) one client address may open (IPv6: its /64), per
# IDENTITY_SIGN_IN_LIMIT_PER_IP. Each is kept FLOW_TTL (15 minutes) in the store that also
# holds the rate-limit counters: unbounded, one client knowing a client_id and its redirect
# URI (both public) stored ~500 a second, a gigabyte of Redis in under a minute. With the
# default, 600 per 10 minutes, 15 minutes meet at most three windows, so an address holds at
# most 1,800 flows: about 1 MB of usual ones (~570 bytes), 23 MB of the longest (~13 KB: a
# 32 KiB request head of emoji, stored as UTF-8). An office of hundreds behind one NAT
# signing in around 9 am starts one a second at most; a flow saved again (the login, picker
# and consent pages resuming it) or an answer given at once (a code, prompt=none) stores no
# new one and is not counted.
NEW_FLOWS = "flows-new"


def _given(params: dict[str, str | None]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in params.items() if value is not None]


def with_query(uri: str, params: dict[str, str | None]) -> str:
    """``uri`` with ``params`` added after any query it already has, which stays as written
    (RFC 6749 §3.1.2: retained): decoded and encoded again, ``index.php?/oauth/callback``
    became ``index.php?%2Foauth%2Fcallback=``, a route its app no longer matched.

    Joined as text, not through ``urlunsplit``, which drops an empty query: a logout without
    state sent ``https://app.example/cb?`` back as ``https://app.example/cb``, not the URI
    registered. A query ending in "&" is already separated from what follows."""
    added = urlencode(_given(params), quote_via=quote)
    if not added:
        return uri
    base, hash_, fragment = uri.partition("#")
    if "?" not in base:
        base += "?"
    elif not base.endswith(("?", "&")):
        base += "&"
    return base + added + hash_ + fragment


def with_fragment(uri: str, params: dict[str, str | None]) -> str:
    """``uri`` with ``params`` as its fragment (RFC 6749 §4.2.2); a redirect URI has none.
    The rest stays as written, as in ``with_query``: ``urlunsplit`` dropped an empty query's
    "?"."""
    return f"{uri.partition('#')[0]}#{urlencode(_given(params), quote_via=quote)}"


def redirect(location: str, response_cookies: list[Cookie] | None = None) -> Redirect:
    return Redirect(location, status_code=303, cookies=response_cookies or [])


def error_response(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    exc: OAuth2Error,
    locale: str,
    response_cookies: list[Cookie] | None = None,
) -> Response[Any]:
    """Back to the verified redirect URI when there is one (RFC 9207 ``iss`` included).

    ``response_cookies``: a session established on the way (a sign-in that ends in an
    error) is still the browser's, and the one it replaced is gone: given with the error
    page too, when there is no client left to go back to.
    """
    if exc.redirect_uri:
        # A client that reads its answer from the fragment (``authorize.answers_in_fragment``).
        add = with_fragment if exc.redirect_fragment else with_query
        return redirect(
            add(
                exc.redirect_uri,
                {
                    "error": exc.error,
                    "error_description": exc.description,
                    "state": exc.state,
                    "iss": runtime.settings.issuer,
                },
            ),
            response_cookies,
        )
    return error_page(
        request,
        runtime,
        f"error.oauth.{exc.error}",
        locale=locale,
        error_code=exc.error,
        cookies=response_cookies or (),
    )


async def _still_registered(runtime: Runtime, valid: ValidRequest) -> bool:
    """Whether the client ``valid`` was checked against (from this process's cache, a few
    seconds old at most) is still registered and enabled, read afresh. Asked only after a
    write naming it failed, so that a sign-in pays nothing for it."""
    runtime.clients.forget(valid.client.client_id)
    return await runtime.clients.lookup(runtime.db, valid.client.client_id) is not None


async def scopes_for_user(
    session: AsyncSession, scopes: Sequence[str], user_id: uuid.UUID
) -> tuple[str, ...]:
    """What of ``scopes`` the user's tokens carry (``for_user``), as the consent page lists
    them; the user is read only when identity:admin is asked for."""
    if SCOPE_ADMIN not in scopes:
        return tuple(scopes)
    user = await active_user(session, user_id)
    return for_user(scopes, is_admin=user is not None and user.is_admin)


async def _issue_code(
    session: AsyncSession,
    runtime: Runtime,
    valid: ValidRequest,
    browser: BrowserSession,
    account_id: uuid.UUID | None,
    now: datetime,
) -> str:
    scopes = await scopes_for_user(session, valid.scopes, browser.user_id)
    code = random_token()
    await insert_code(
        session,
        AuthorizationCode(
            code_hash=digest(code),
            client_id=valid.client.client_id,
            user_id=browser.user_id,
            account_id=account_id,
            session_id=browser.id,
            redirect_uri=valid.redirect_uri,
            scope=" ".join(scopes),
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
            valid.id_token_hint,
            await runtime.keyset(),
            runtime.settings.issuer,
            client_id=valid.client.client_id,
        )
    except OAuth2Error as exc:
        raise authorize.redirectable(exc, valid.redirect_uri, valid.state) from None
    return claims["sub"]


async def _consent_covers(
    session: AsyncSession,
    valid: ValidRequest,
    browser: BrowserSession,
    account_id: uuid.UUID | None,
    consent_given: bool | None,
    now: datetime,
) -> bool:
    """Whether remembered consent covers the request, for the account its tokens are for
    (they carry its permissions); records consent just given."""
    if valid.client.first_party:
        return False
    # What the page listed, and the tokens will carry: identity:admin allowed by a user who
    # is not staff was never shown to them, and must not count once they are made staff.
    scopes = await scopes_for_user(session, valid.scopes, browser.user_id)
    client_id = valid.client.client_id
    if consent_given:
        await consents.remember(
            session, browser.user_id, client_id, scopes, now, account_id=account_id
        )
        return True
    return await consents.covers(session, browser.user_id, client_id, scopes, account_id)


async def _select_account(
    session: AsyncSession, valid: ValidRequest, flow: Flow, browser: BrowserSession
) -> Selection:
    # Signing in during this flow is choosing who signs in, as answering the picker is.
    signed_in_now = flow.login_session_id == str(browser.id)
    try:
        return select_account(
            await account_ids_of(session, browser.user_id),
            chosen=flow.account_id,
            requested=flow.request.get(account_selection.PARAMETER),
            prompt=valid.prompt,
            user_chose=flow.user_chose or signed_in_now,
        )
    except OAuth2Error as exc:
        raise authorize.redirectable(exc, valid.redirect_uri, valid.state) from None


async def _next_step(
    session: AsyncSession,
    valid: ValidRequest,
    flow: Flow,
    browser: BrowserSession | None,
    hinted_subject: str | None,
    consent_given: bool | None,
    now: datetime,
) -> tuple[Step, uuid.UUID | None]:
    """``authorize.must_sign_in``, then the customer account picked, then
    ``authorize.after_sign_in`` for it; and that account (None: tokens without account
    claims, or not known yet): the consent asked for, or remembered, is for it."""
    interaction = _interaction(flow, browser, hinted_subject, consent_given)
    if authorize.must_sign_in(valid, interaction, now) or browser is None:
        return Step.LOGIN, None
    # A "Deny" is the answer, even if the account must be picked again since the page.
    authorize.check_not_denied(valid, interaction)
    selection = await _select_account(session, valid, flow, browser)
    if selection.must_pick:
        return Step.ACCOUNT, None
    account_id = selection.account_id
    if consent_given and flow.consent_account_id != _flow_value(account_id):
        # Allowed on a page that named another account (or none): not an answer for this one.
        consent_given = None
    covers = await _consent_covers(session, valid, browser, account_id, consent_given, now)
    answered = replace(interaction, consent_covers=covers, consent_given=consent_given)
    return authorize.after_sign_in(valid, answered), account_id


def _interaction(
    flow: Flow,
    browser: BrowserSession | None,
    hinted_subject: str | None,
    consent_given: bool | None,
) -> Interaction:
    """The sign-in as the authorization rules see it, before consent is looked up."""
    return Interaction(
        auth_time=browser.auth_time if browser else None,
        subject=str(browser.user_id) if browser else None,
        hinted_subject=hinted_subject,
        signed_in_now=browser is not None and flow.login_session_id == str(browser.id),
        consent_covers=False,
        consent_given=consent_given,
    )


def _signed_out_step(
    valid: ValidRequest,
    flow: Flow,
    hinted_subject: str | None,
    consent_given: bool | None,
    now: datetime,
) -> Step:
    """The step of a browser nobody is signed in with, which needs no transaction: the
    login, unless the request may not show it (``login_required`` for prompt=none)."""
    authorize.must_sign_in(valid, _interaction(flow, None, hinted_subject, consent_given), now)
    return Step.LOGIN


def _flow_value(account_id: uuid.UUID | None) -> str | None:
    return str(account_id) if account_id is not None else None


async def _return_to(
    runtime: Runtime,
    flows: FlowStore,
    flow: Flow,
    session_token: str | None,
    browser: BrowserSession | None,
    response_cookies: list[Cookie] | None,
) -> Response[Any]:
    """A hosted page's sign-in: back to the page once signed in, else to the login page."""
    assert flow.return_to is not None
    if browser is None:
        async with runtime.db.transaction() as session:
            browser = await browser_session.live(session, runtime, session_token)
    if browser is None:
        await flows.save(flow)
        return redirect(f"/login?{urlencode({'flow': flow.id})}", response_cookies)
    await flows.end(flow)
    # Back in the language the page sent the browser to sign in with.
    back = with_query(flow.return_to, {"ui_locales": flow.request.get("ui_locales")})
    return redirect(back, response_cookies)


async def sign_in_then(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    return_to: str,
    *,
    login_hint: str | None = None,
    ui_locales: str | None = None,
) -> Response[Any]:
    """For a hosted page that needs a signed-in user: to the login page (in ``ui_locales``,
    the email filled in with ``login_hint``), and back to ``return_to`` (a local path, in
    ``ui_locales`` too) once signed in. A 429 page instead when the browser's address has
    opened its IDENTITY_SIGN_IN_LIMIT_PER_IP of sign-ins already."""
    wanted = {"login_hint": login_hint, "ui_locales": ui_locales}
    params = {name: value for name, value in wanted.items() if value}
    flow = Flow(authorize.AuthorizationRequest(params), return_to=return_to)
    try:
        await _open(request, runtime, flow)
    except RateLimited as exc:
        locale = locale_for(request, ui_locales)
        page = error_page(request, runtime, "error.too_many_sign_ins", locale=locale, status=429)
        page.headers.update(retry_after(exc))
        return page
    return redirect(f"/login?{urlencode({'flow': flow.id})}")


async def _open(request: Request[Any, Any, Any], runtime: Runtime, flow: Flow) -> None:
    """Store a new flow, counted against the client's address: ``RateLimited`` beyond
    IDENTITY_SIGN_IN_LIMIT_PER_IP, and then nothing is stored."""
    address = rate_subject(of_request(request, runtime.settings.trusted_proxies))
    rate = runtime.settings.sign_in_limit_per_ip
    limit = Limit(NEW_FLOWS, rate.count, rate.window)
    await runtime.limiter.spend(limit, address, "Too many sign-ins started; try again later.")
    await FlowStore(runtime.store).save(flow)


def flow_locale(request: Request[Any, Any, Any], flow: Flow | None) -> str:
    """The language of a sign-in's pages: its ``ui_locales``, then Accept-Language."""
    return locale_for(request, flow.request.get("ui_locales") if flow else None)


class FlowTaken(Exception):
    """Another post of the same sign-in step claimed the flow first."""


Claim = Callable[[str], Awaitable[Flow]]


@asynccontextmanager
async def handing_over(
    runtime: Runtime, repeat: str | None, wait: repeated_posts.Wait
) -> AsyncIterator[Claim]:
    """Around the check and the transaction of the one post of a sign-in step that hands its
    flow over (opens the session, goes on to a code); yields ``claim``, which takes the flow
    out of the store once that post's password or code has proved right, before anything is
    written.

    Two posts at once (a double click, a tab with the app's code beside one with a recovery
    code) both find the flow when they start, and would otherwise both sign in and both get
    a code; of racing claims one wins, the other raises ``FlowTaken`` and answers as for a
    used flow (``flow_expired``), unless it is the same post again (``signed_in_before``).
    When the transaction fails after the claim (a password changed meanwhile, the database
    gone), nothing was handed over: the flow goes back, so the user may post the step again.

    ``repeat`` is the post's ``repeated_posts`` key, marked under way on entry, before what
    is checked inside: the same post again waits here for this one's answer and raises
    ``FlowTaken``, rather than spend an attempt of its own on the code this one is spending
    (at the last attempt, it was told "too many codes" while this one signed in). A post
    that hands nothing over (a wrong code, a failure) withdraws the mark on its way out, and
    a repeat waiting for it is then checked as any post. ``wait`` is the post's one wait for
    the first: what it spends here, ``signed_in_before`` does not wait again.
    """
    # Marked before the flow is taken, not in between: the same post again, landing between
    # the two, would find neither the flow nor the mark and be told to start again; and it
    # must not take a flow the first post has handed on to the next step under the same id
    # (consent), nor sign in a second time.
    if repeat is not None and not await repeated_posts.take_turn(runtime, repeat, wait):
        raise FlowTaken()
    flows = FlowStore(runtime.store)
    taken: list[Flow] = []

    async def claim(flow_id: str) -> Flow:
        flow = await flows.consume(flow_id)
        if flow is None:
            raise FlowTaken(flow_id)
        taken.append(flow)
        return flow

    try:
        yield claim
    except (Exception, asyncio.CancelledError):
        # Cancelled too (a stop): a mark left behind would hold the same post again for
        # seconds, and then send it to start again.
        for flow in taken:
            await flows.save(flow)
        if repeat is not None:
            await repeated_posts.withdraw(runtime, repeat)
        raise
    if repeat is not None and not taken:
        await repeated_posts.withdraw(runtime, repeat)


def flow_expired(
    request: Request[Any, Any, Any], runtime: Runtime, form: FormMultiDict | None = None
) -> Template:
    """The page for a sign-in whose pending request is gone: expired, used, or never was.
    Its ui_locales went with it, so a posted form's own copy tells the language."""
    return error_page(request, runtime, "error.flow_expired", locale=page_locale(request, form))


async def _ended(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    flows: FlowStore,
    flow: Flow,
    exc: OAuth2Error,
    locale: str,
    response_cookies: list[Cookie] | None,
) -> Response[Any]:
    """The authorization request ends in ``exc``: its pending flow goes with it, so that
    nothing resumes a sign-in the client (or the page) was told had ended. With the store
    out of reach the flow cannot be read either; the error is still told."""
    with suppress(StoreUnavailable):
        await flows.end(flow)
    return error_response(request, runtime, exc, locale, response_cookies)


async def _unexpected(runtime: Runtime, valid: ValidRequest, exc: Exception) -> OAuth2Error:
    """The OAuth error for a failure that is not one, once the redirect URI is verified."""
    if isinstance(exc, IntegrityError) and not await _still_registered(runtime, valid):
        # Deleted through another process while this one's cache still held it: the
        # code's or consent's foreign key refused the write. Its redirect URIs went with
        # it, so the page an unknown client_id gets, never a redirect.
        return authorize.unknown_client()
    # The client is known and its redirect URI verified: tell it, as RFC 6749 §4.1.2.1
    # asks, rather than leaving the user on a JSON problem page.
    if isinstance(exc, DatabaseUnavailable | StoreUnavailable):
        log.error("authorization unavailable: %s", type(exc).__name__)
        error: OAuth2Error = TemporarilyUnavailableError("Please try again shortly.")
    else:
        log.exception("authorization failed")
        error = ServerError("An unexpected error occurred.")
    return authorize.redirectable(error, valid.redirect_uri, valid.state)


async def proceed(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    flow: Flow,
    *,
    session_token: str | None,
    browser: BrowserSession | None = None,
    consent_given: bool | None = None,
    response_cookies: list[Cookie] | None = None,
) -> Response[Any]:
    """Take the authorization request in ``flow`` one step further.

    ``browser`` is the session behind ``session_token`` when the caller has it already
    (``signed_in`` has just established it, the consent page has just read it): it is not
    read back from the database.
    """
    flows = FlowStore(runtime.store)
    if flow.return_to is not None:
        return await _return_to(runtime, flows, flow, session_token, browser, response_cookies)
    locale = flow_locale(request, flow)
    now = utcnow()
    valid: ValidRequest | None = None
    try:
        client_id = flow.request.get("client_id")
        # From the clients the token endpoint also reads, a few seconds fresh: every
        # sign-in passes here twice (authorize, then the login that resumes it).
        client = await runtime.clients.lookup(runtime.db, client_id) if client_id else None
        valid = authorize.validate(flow.request, client)
        hinted_subject = await _hinted_subject(runtime, valid)
        if browser is None and not session_token:
            # No session cookie, so nobody to read: a sign-in's first request opens no
            # transaction, which costs a session, its begin and its commit even when empty.
            step = _signed_out_step(valid, flow, hinted_subject, consent_given, now)
            account_id = None
        else:
            async with runtime.db.transaction() as session:
                if browser is None:
                    browser = await browser_session.live(session, runtime, session_token, now)
                step, account_id = await _next_step(
                    session, valid, flow, browser, hinted_subject, consent_given, now
                )
                if step is Step.ISSUE and browser is not None:
                    code = await _issue_code(session, runtime, valid, browser, account_id, now)
    except OAuth2Error as exc:
        return await _ended(request, runtime, flows, flow, exc, locale, response_cookies)
    except Exception as exc:
        if valid is None:
            raise
        error = await _unexpected(runtime, valid, exc)
        return await _ended(request, runtime, flows, flow, error, locale, response_cookies)

    if step is Step.ISSUE:
        await flows.end(flow)
        location = with_query(
            valid.redirect_uri,
            {"code": code, "state": valid.state, "iss": runtime.settings.issuer},
        )
        return redirect(location, response_cookies)
    if step is Step.CONSENT:
        flow.consent_account_id = _flow_value(account_id)
    try:
        await (flows.save(flow) if flow.stored else _open(request, runtime, flow))
    except RateLimited:
        # RFC 6749 §4.1.2.1: the server is "temporarily overloaded"; the client may retry.
        busy = TemporarilyUnavailableError("Too many sign-ins started; try again later.")
        error = authorize.redirectable(busy, valid.redirect_uri, valid.state)
        return error_response(request, runtime, error, locale, response_cookies)
    page = {Step.LOGIN: "/login", Step.ACCOUNT: ACCOUNT_PAGE, Step.CONSENT: "/consent"}[step]
    return redirect(f"{page}?{urlencode({'flow': flow.id})}", response_cookies)


async def signed_in(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    flow: Flow,
    established: Established,
    repeat: str | None = None,
) -> Response[Any]:
    """Resume ``flow`` with the session a sign-in (password, or second factor) just
    established, and give the browser its cookie. ``repeat``: the key of the post that
    signed in, for ``signed_in_before`` to answer the same post again."""
    flow.login_session_id = str(established.session.id)
    # An account picked earlier in this flow was the previous user's answer ("Use another
    # user" after the picker): whoever signs in now chooses for themselves.
    flow.account_id = None
    if repeat is not None:
        await repeated_posts.answered(runtime, repeat, flow, established.token)
    return await proceed(
        request,
        runtime,
        flow,
        session_token=established.token,
        browser=established.session,
        response_cookies=[cookies.session(runtime.settings, established.token)],
    )


async def signed_in_before(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    repeat: str | None,
    wait: repeated_posts.Wait,
) -> Response[Any] | None:
    """The answer to a sign-in post made again (``repeated_posts``): its flow resumed with
    the session the first post opened, now the browser's, or the code page the first post
    went on to, once it has answered within what is left of ``wait``; None when it is no
    repeat."""
    first = await repeated_posts.first_post(runtime, repeat, wait)
    if first is None:
        return None
    if first.session_token is None:
        # A password step of a two-step account: the code page asks this browser alone.
        return redirect(first.location) if first.location is not None else None
    return await proceed(
        request,
        runtime,
        first.flow,
        session_token=first.session_token,
        browser=first.browser,
        response_cookies=[cookies.session(runtime.settings, first.session_token)],
    )


async def resume_once(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    flow_id: str,
    repeat: str | None,
    resume: Callable[[Flow], Awaitable[Response[Any]]],
) -> Response[Any] | None:
    """The answer to a post of a step that hands its flow on without signing in (the
    account picker, consent): ``resume`` with the flow, taken, not read, so that of two
    posts at once one resumes it. The same post again (``repeat``, its ``repeated_posts``
    key) waits for the first's answer and gets the same redirect: one answer gives the app
    one code. None when the flow is gone for this post."""
    if repeat is not None and not await repeated_posts.under_way(runtime, repeat):
        return await _answered_before(request, runtime, repeat)
    flow = await FlowStore(runtime.store).consume(flow_id)
    recorded = False
    try:
        if flow is None:
            return None
        response = await resume(flow)
        if repeat is not None and isinstance(response, Redirect):
            await repeated_posts.answered(runtime, repeat, flow, location=response.url)
            recorded = True
        return response
    finally:
        if repeat is not None and not recorded:
            # Nothing handed on (the flow gone, a page rather than a redirect, a failure):
            # the same post again is answered as any other.
            await repeated_posts.withdraw(runtime, repeat)


async def _answered_before(
    request: Request[Any, Any, Any], runtime: Runtime, repeat: str
) -> Response[Any] | None:
    first = await repeated_posts.first_post(runtime, repeat, repeated_posts.Wait())
    if first is None or first.location is None:
        return None
    code = dict(parse_qsl(urlsplit(first.location).query)).get("code")
    if code is not None:
        async with runtime.db.transaction() as session:
            unredeemed = await is_unredeemed(session, digest(code), utcnow())
        if not unredeemed:
            # The app has it (or it expired): presenting it again would revoke what the
            # app was given, and a new one would be a second code for one answer.
            return error_page(
                request,
                runtime,
                "error.already_answered",
                locale=flow_locale(request, first.flow),
                status=409,
            )
    return redirect(first.location)


def _parameters(items: Any) -> list[tuple[str, str]]:
    # Form bodies may hold file parts; no authorization parameter is a file.
    return [(name, value) for name, value in items if isinstance(value, str)]


@route("/authorize", http_method=["GET", "POST"], include_in_schema=False, cache=False)
async def authorization_endpoint(
    request: Request[Any, Any, Any], runtime: RuntimeDep
) -> Response[Any]:
    session_token = browser_session.cookie_token(request, runtime.settings)
    if request.method == "POST":
        items = _parameters((await read_form(request)).multi_items())
        known = [
            (name, value)
            for name, value in items
            if name in authorize.PARAMETERS or name in authorize.REPEATABLE
        ]
        if session_token is None and known:
            # A relying party posts from its own site, so the browser left its SameSite=Lax
            # session cookie behind: ask again as a GET navigation, which brings it, rather
            # than treat a signed-in user as signed out (prompt=none: login_required).
            return redirect(f"/authorize?{urlencode(known, quote_via=quote)}")
    else:
        items = _parameters(request.query_params.multi_items())
    return await proceed(
        request, runtime, Flow(authorize.parse(items)), session_token=session_token
    )
