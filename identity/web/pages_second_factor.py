"""The second step of signing in, for users with two-step verification on.

The login page calls ``requires_code`` once the password is right and, when it does, sends
the browser here with ``ask_for_code`` instead of opening a session: the user the password
proved, and which of their passwords it was, are remembered beside the flow (in the shared
store, as long as the flow lives) for the browser that passed the password only, and the
session is established only once a code is
accepted, with ``amr`` ["pwd", "otp"], and only if the password has not changed and the
user has not been disabled since. Codes are checked by identity.mfa (one use each,
failures throttled per user).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.params import FromQuery
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.repository import PasswordChanged, check_password_unchanged_since
from identity.accounts.service import Authenticated
from identity.accounts.throttle import SignInThrottle
from identity.clock import utcnow
from identity.crypto import digest, digest_matches
from identity.errors import NotFound, RateLimited
from identity.mfa.service import MAX_CODE, InvalidCode, SecondFactor
from identity.oauth.interaction import FLOW_TTL, Flow, FlowStore
from identity.runtime import Runtime
from identity.sessions import service as sessions
from identity.web import browser_session, client_ip, cookies, repeated_posts
from identity.web.authorization import (
    FlowTaken,
    flow_expired,
    flow_locale,
    handing_over,
    redirect,
    signed_in,
    signed_in_before,
)
from identity.web.dependencies import RuntimeDep
from identity.web.forms import csrf_ok, field, read_form
from identity.web.rendering import page
from identity.web.retry_after import retry_after

PATH = "/login/second-factor"
# Not the "second-factor:" nor "second-factor-proof:" of releases that kept less there (the
# user id; then not the browser): a process of one release must not read the other's
# entries (it would misread them, or take them for any browser's), only miss them.
_PENDING = "second-factor-browser-proof:"


async def requires_code(session: AsyncSession, user_id: uuid.UUID) -> bool:
    return await SecondFactor.is_enrolled(session, user_id)


@dataclass(frozen=True, slots=True)
class PasswordProof:
    user_id: uuid.UUID
    # When the password proved was set: a reset or change after it ends the proof.
    password_set_at: datetime


def _browser_seed(request: Request[Any, Any, Any], runtime: Runtime) -> str:
    """What tells the browser apart: its CSRF seed, an HttpOnly cookie that every post of
    the sign-in carries already ("" for none, which no post gets past the CSRF check with)."""
    return cookies.read(request.cookies, runtime.settings, cookies.CSRF) or ""


async def ask_for_code(
    request: Request[Any, Any, Any], runtime: Runtime, flow: Flow, proved: Authenticated
) -> Redirect:
    """Remember who the password proved, and which password, for this flow and this browser
    only, and go to the code page.

    The flow's id is in the code page's address, where history, logs and screenshots keep
    it: bound to the flow alone, the proof let whoever had the id and a code skip the
    password. Only the seed's digest is kept, as for any secret of the browser's."""
    browser = digest(_browser_seed(request, runtime))
    proof = f"{proved.user_id} {proved.password_set_at.isoformat()} {browser}"
    await runtime.store.set(_PENDING + flow.id, proof.encode(), FLOW_TTL)
    await FlowStore(runtime.store).save(flow)
    return redirect(f"{PATH}?{urlencode({'flow': flow.id})}")


async def _pending_proof(
    request: Request[Any, Any, Any], runtime: Runtime, flow: Flow
) -> PasswordProof | None:
    """The proof the password step left for this flow, if it was this browser's."""
    raw = await runtime.store.get(_PENDING + flow.id)
    if raw is None:
        return None
    user_id, password_set_at, browser = raw.decode().split(" ")
    if not digest_matches(_browser_seed(request, runtime), browser):
        return None
    return PasswordProof(uuid.UUID(user_id), datetime.fromisoformat(password_set_at))


def _code_form(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    flow: Flow,
    *,
    message_id: str | None = None,
    status: int = 200,
) -> Template:
    return page(
        request,
        runtime,
        "second_factor.html",
        locale=flow_locale(request, flow),
        status=status,
        context={"flow": flow.id, "message_id": message_id},
    )


@get(PATH, include_in_schema=False, cache=False)
async def second_factor_page(
    request: Request[Any, Any, Any], runtime: RuntimeDep, flow: FromQuery[str | None] = None
) -> Response[Any]:
    pending = await FlowStore(runtime.store).load(flow)
    proof = await _pending_proof(request, runtime, pending) if pending else None
    if pending is None or proof is None or not await _can_still_finish(runtime, pending, proof):
        return flow_expired(request, runtime)
    return _code_form(request, runtime, pending)


async def _can_still_finish(runtime: Runtime, flow: Flow, proof: PasswordProof) -> bool:
    """Whether a code could still finish the step: the user still has a second factor, and
    the password has not been changed or reset, nor the user disabled, since it proved
    them. Else opening the page ends it as posting any code would, rather than ask for a
    code no answer can pass."""
    async with runtime.db.transaction() as session:
        if not await requires_code(session, proof.user_id):
            await runtime.store.delete(_PENDING + flow.id)
            return False
        try:
            await check_password_unchanged_since(session, proof.user_id, proof.password_set_at)
        except PasswordChanged:
            return False
    return True


async def _checked_code(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    session: AsyncSession,
    user_id: uuid.UUID,
    code: str,
    now: datetime,
) -> tuple[str, ...]:
    """``SecondFactor.verify``, the attempt counted against the client address as well as
    the user; raises what it raises, or ``RateLimited`` for the address."""
    throttle = SignInThrottle(runtime.limiter, runtime.settings)
    client = client_ip.rate_subject(client_ip.of_request(request, runtime.settings.trusted_proxies))
    await throttle.admit_code(client)
    try:
        amr = await SecondFactor.from_runtime(runtime).verify(session, user_id, code, now)
    except (RateLimited, NotFound):
        # Refused for the user, or no factor left to check: nothing was tried.
        await throttle.not_failed(client)
        raise
    await throttle.not_failed(client)
    return amr


@post(PATH, include_in_schema=False, cache=False)
async def second_factor_submit(
    request: Request[Any, Any, Any], runtime: RuntimeDep
) -> Response[Any]:
    form = await read_form(request)
    flow_id, code = field(form, "flow"), field(form, "code", MAX_CODE + 1)
    # The same browser posting the code that just signed it in, in this flow (a double
    # click): the code is spent and the flow gone, and the first post's answer is the one.
    repeat = repeated_posts.key_of(request, runtime, PATH, flow_id, code)
    # Its one wait for the first post, however many steps below wait for it.
    wait = repeated_posts.Wait()
    pending = await FlowStore(runtime.store).load(flow_id)
    proof = await _pending_proof(request, runtime, pending) if pending else None
    # Only a repeat finds the code step over: the flow gone, or handed on to consent under
    # the same id (one claimed meanwhile shows as FlowTaken below).
    if (
        proof is None
        and csrf_ok(request, runtime, form)
        and (first := await signed_in_before(request, runtime, repeat, wait))
    ):
        return first
    if pending is None or proof is None:
        return flow_expired(request, runtime, form)
    if not csrf_ok(request, runtime, form):
        return _code_form(request, runtime, pending, message_id="form.csrf_failed", status=400)
    settings = runtime.settings
    now = utcnow()
    try:
        # The same post again waits on entry for this one's answer: checked as well, it
        # would be refused the code this one spends, or the attempt (429 at the last one).
        async with (
            handing_over(runtime, repeat, wait) as claim,
            runtime.db.transaction() as session,
        ):
            amr = await _checked_code(request, runtime, session, proof.user_id, code, now)
            # A code that proved right: taking the flow rolls this back (the code unspent)
            # when another post of this step has taken it.
            pending = await claim(pending.id)
            established = await sessions.establish(
                session,
                user_id=proof.user_id,
                amr=list(amr),
                now=now,
                lifetime=settings.session_lifetime,
                previous_token=browser_session.cookie_token(request, settings),
                ip=client_ip.of_request(request, settings.trusted_proxies),
                user_agent=request.headers.get("user-agent"),
            )
            # A reset, a change or a disable since the password step signs out everywhere;
            # a sign-in half done before it must not finish after it (nor spend the code).
            await check_password_unchanged_since(session, proof.user_id, proof.password_set_at)
    except PasswordChanged:
        return flow_expired(request, runtime, form)
    except FlowTaken:
        # Posted again while the first post was under way: its answer, now it has one.
        first = await signed_in_before(request, runtime, repeat, wait)
        return first or flow_expired(request, runtime, form)
    except InvalidCode:
        return _code_form(request, runtime, pending, message_id="second_factor.invalid", status=400)
    except NotFound:
        # The second factor was removed since the password step: no code can pass, so the
        # step ends and the user signs in again, with the password alone this time.
        await runtime.store.delete(_PENDING + pending.id)
        return flow_expired(request, runtime, form)
    except RateLimited as exc:
        response = _code_form(
            request, runtime, pending, message_id="second_factor.throttled", status=429
        )
        response.headers.update(retry_after(exc))
        return response
    await runtime.store.delete(_PENDING + pending.id)
    return await signed_in(request, runtime, pending, established, repeat)


ROUTES = [second_factor_page, second_factor_submit]
