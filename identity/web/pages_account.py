"""The self-service security page of a signed-in user: /account/security.

Profile (name, sign-in email), password, two-step verification and the list of sessions,
each changed by a plain form post (CSRF-checked), so everything works without JavaScript.
It also lists the accounts the user belongs to, each with a Leave button: the Users page's
own removal of the viewer (identity.web.pages_memberships), which any member may make.
A post that changed something is answered with a redirect (303) to the page, which shows
its notice, or the secret it made (new recovery codes, a set-up's key), once
(identity.web.shown_once): reloading that page never posts the form again. A refused post
is answered with the page again and a translated message. A browser without a session goes
to the login page and comes back here. The work is the domain's:
identity.accounts.self_service, identity.recovery.email_change and identity.mfa.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromQuery
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts import self_service
from identity.accounts.emails import shown_email
from identity.accounts.models import User
from identity.accounts.repository import StoredPassword
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.crypto import digest, digest_matches
from identity.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    PolicyViolation,
    RateLimited,
    UnstorableText,
)
from identity.i18n.moments import shown_minute
from identity.mfa import repository as mfa_repository
from identity.mfa.service import (
    MAX_CODE,
    Enrolment,
    InvalidCode,
    InvalidPassword,
    SecondFactor,
)
from identity.permissions import customer_accounts
from identity.recovery.email_change import request_email_change
from identity.recovery.service import PasswordMismatch
from identity.runtime import Runtime
from identity.sessions import repository as sessions_repository
from identity.sessions.models import BrowserSession
from identity.tokens.subjects import active_user
from identity.web import browser_session, cookies, password_form, shown_once
from identity.web.actors import page_actor
from identity.web.authorization import redirect, sign_in_then, with_query
from identity.web.dependencies import RuntimeDep
from identity.web.forms import (
    INCOMPLETE,
    LOCALE_FIELD,
    MAX_PASSWORD,
    field,
    page_locale,
    read_form,
    refusal,
    sent,
    ticked,
)
from identity.web.head_requests import asked_with_head
from identity.web.rendering import page
from identity.web.retry_after import retry_after

PATH = "/account/security"
MAX_EMAIL = 320
MAX_NAME = 400  # twice the column: longer input gets the "too long" message, not a cut


@dataclass(frozen=True, slots=True)
class Visitor:
    user: User
    browser: BrowserSession


@dataclass(frozen=True, slots=True)
class Posted:
    """One form post to the page, from a signed-in visitor, CSRF already checked."""

    runtime: Runtime
    visitor: Visitor
    form: FormMultiDict
    locale: str
    now: datetime
    # The visitor, from where they are: who the audit log says made a change.
    actor: Actor
    # The post itself: a visitor signed out meanwhile is sent to sign in from its address.
    request: Request[Any, Any, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the security page answers a post: a notice, a message, reasons, a suggestion."""

    notice_id: str | None = None
    notice_values: dict[str, str] = dataclass_field(default_factory=dict)
    message_id: str | None = None
    reasons: list[str] | None = None
    suggest: bool = False
    status: int = 200
    # The browser's session token when the post replaced it (a password change, or signing
    # out everywhere else).
    session_token: str | None = None
    # A secret made by the post, shown once by the page the browser is redirected to:
    # {"codes": [...], "intro": message id} or {"enrolment": digest of the pending secret}.
    secret: dict[str, Any] | None = None
    # Where the page shows what a post left there itself, before its commit: set by a post
    # that a double click may repeat, so that the repeat leads to the same.
    handle: str | None = None
    # A refused post: the ids of the fields its message is about (marked invalid and
    # described by it), and what was typed in the page's text fields, shown again.
    invalid: tuple[str, ...] = ()
    typed: dict[str, str] = dataclass_field(default_factory=dict)
    # A refused post's own headers: a throttled one's Retry-After.
    headers: dict[str, str] = dataclass_field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether the post was carried out (a change, or nothing left to change), to be
        answered with a redirect; a suggestion only fills the form in, nothing changes."""
        return self.status == 200 and not self.suggest


Action = Callable[[AsyncSession, Posted], Awaitable["Outcome | Response[Any]"]]
# An action that verifies or hashes a password: it opens short transactions of its own, so
# that none is held open while argon2 runs.
PasswordAction = Callable[[Posted], Awaitable["Outcome | Response[Any]"]]
Attempt = Callable[[FormMultiDict, str, datetime], Awaitable["Outcome | Response[Any]"]]
# For one form: the ids of the fields each of its refusal messages is about.
AtFault = Mapping[str, tuple[str, ...]]
# The page's text fields a refused post shows again as typed (passwords never are).
TYPED_FIELDS = {"name": MAX_NAME, "email": MAX_EMAIL}


async def _visitor(
    session: AsyncSession,
    request: Request[Any, Any, Any],
    runtime: Runtime,
    now: datetime,
) -> Visitor | None:
    """The signed-in visitor, by the browser's session cookie."""
    browser = await browser_session.signed_in(session, request, runtime, now)
    user = await active_user(session, browser.user_id) if browser else None
    return Visitor(user, browser) if user and browser else None


async def _security_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    locale: str,
    outcome: Outcome,
    shown: str | None = None,
) -> Response[Any]:
    """The page, or, when ``shown`` names what a post left for it, that once instead."""
    now = utcnow()
    async with runtime.db.transaction() as session:
        visitor = await _visitor(session, request, runtime, now)
        if visitor is None:
            # Signed out meanwhile: another tab's sign-out, or a password reset.
            return await sign_in_then(request, runtime, PATH, ui_locales=locale)
        user_id = visitor.user.id
        left = await shown_once.take(runtime, shown, user_id) or {}
        secret = None
        if "enrolment" in left:
            secret = await _pending_secret(session, runtime, user_id, left["enrolment"])
            if secret is None:  # replaced by a set-up in another tab, or turned on there
                outcome = Outcome(message_id="enrol.expired")
        if "notice" in left:
            outcome = Outcome(notice_id=left["notice"], notice_values=left["values"])
        mfa = SecondFactor.from_runtime(runtime)
        enrolled = await mfa.is_enrolled(session, user_id)
        recovery_left = await mfa.unused_recovery_codes(session, user_id) if enrolled else 0
        live = await self_service.live_sessions(session, user_id, now)
        accounts = await customer_accounts.accounts_listed_for(session, user_id)
    if "codes" in left:
        return _codes_page(request, runtime, locale, left["codes"], left["intro"])
    if secret is not None:
        # Drawn once the transaction has ended: a long address's QR code takes a while.
        enrolment = await SecondFactor.from_runtime(runtime).enrolment(secret, visitor.user.email)
        return _enrol_page(request, runtime, locale, user_id, enrolment)
    shown = page(
        request,
        runtime,
        "account_security.html",
        locale=locale,
        status=outcome.status,
        scripts=True,
        context={
            "user": visitor.user,
            "email": shown_email(visitor.user.email),
            "enrolled": enrolled,
            "recovery_left": recovery_left,
            "sessions": [_listed(s, s.id == visitor.browser.id, now) for s in live],
            # Leave is offered on every one, the last owner's too: their post says why not.
            "accounts": [{"id": str(a.id), "name": a.name} for a in accounts],
            "notice_id": outcome.notice_id,
            "notice_values": outcome.notice_values,
            "message_id": outcome.message_id,
            "reasons": outcome.reasons,
            "invalid": outcome.invalid,
            "typed": outcome.typed,
            **await password_form.context(
                runtime,
                suggest=outcome.suggest,
                email=visitor.user.email,
                name=visitor.user.name,
            ),
        },
    )
    shown.headers.update(outcome.headers)
    return shown


async def refused_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    locale: str,
    *,
    message_id: str,
    status: int,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    """The page telling why a post it offered elsewhere (a Leave) was refused."""
    outcome = Outcome(message_id=message_id, status=status, headers=headers or {})
    return await _security_page(request, runtime, locale, outcome)


def _listed(browser: BrowserSession, this: bool, now: datetime) -> dict[str, Any]:
    """A live session as the page lists it."""
    return {
        "this": this,
        "since": shown_minute(browser.auth_time),
        # Recorded at most once a minute (sessions.service.SEEN_EVERY), and this view's use
        # only once the page has left: this session's last use is now.
        "last_used": shown_minute(now if this else browser.last_seen_at),
        "user_agent": browser.user_agent,
        "ip": browser.ip,
    }


async def _admitted(
    session: AsyncSession,
    request: Request[Any, Any, Any],
    runtime: Runtime,
    form: FormMultiDict,
    locale: str,
    now: datetime,
) -> Posted | Outcome | Response[Any]:
    """The post of a signed-in visitor with a valid CSRF token, or the answer to any other."""
    visitor = await _visitor(session, request, runtime, now)
    if visitor is None:
        return await sign_in_then(request, runtime, PATH, ui_locales=locale)
    if refused := refusal(request, runtime, form, visitor.user.id):
        return Outcome(message_id=refused.message_id, status=refused.status)
    actor = page_actor(request, runtime, visitor.user.id)
    return Posted(runtime, visitor, form, locale, now, actor, request)


async def _act(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    action: Action,
    errors: dict[type[DomainError], str],
    at_fault: AtFault | None = None,
) -> Response[Any]:
    """Run ``action`` for the signed-in visitor in the transaction that found them; see
    ``_answer``."""

    async def in_one_transaction(
        form: FormMultiDict, locale: str, now: datetime
    ) -> Outcome | Response[Any]:
        async with runtime.db.transaction() as session:
            posted = await _admitted(session, request, runtime, form, locale, now)
            if not isinstance(posted, Posted):
                return posted
            result = await action(session, posted)
        return await _see_other(posted, result)

    return await _answer(request, runtime, in_one_transaction, errors, at_fault)


async def _act_on_password(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    action: PasswordAction,
    errors: dict[type[DomainError], str],
    at_fault: AtFault | None = None,
) -> Response[Any]:
    """Run ``action`` for the signed-in visitor once the transaction that found them has
    ended; see ``_answer``."""

    async def after_the_look(
        form: FormMultiDict, locale: str, now: datetime
    ) -> Outcome | Response[Any]:
        async with runtime.db.transaction() as session:
            posted = await _admitted(session, request, runtime, form, locale, now)
        if not isinstance(posted, Posted):
            return posted
        return await _see_other(posted, await action(posted))

    return await _answer(request, runtime, after_the_look, errors, at_fault)


async def _signed_out_meanwhile(posted: Posted) -> Response[Any]:
    """For a change from a browser that another of the user's has signed out since it was
    admitted (maybe the owner's, ending a thief's session): nothing changed, sign in again."""
    return await sign_in_then(posted.request, posted.runtime, PATH, ui_locales=posted.locale)


async def _see_other(posted: Posted, result: Outcome | Response[Any]) -> Outcome | Response[Any]:
    """A post that was carried out: to the page, by a redirect naming what it shows once (a
    post refused, or a suggestion, is answered with the page itself)."""
    if not isinstance(result, Outcome) or not result.changed:
        return result
    what = result.secret
    if what is None and result.notice_id is not None:
        what = {"notice": result.notice_id, "values": result.notice_values}
    query = {LOCALE_FIELD: posted.locale}
    if what is not None:
        user_id = posted.visitor.user.id
        query[shown_once.PARAMETER] = await shown_once.leave(posted.runtime, user_id, what)
    elif result.handle is not None:
        query[shown_once.PARAMETER] = result.handle
    token = result.session_token
    replaced = [cookies.session(posted.runtime.settings, token)] if token else None
    return redirect(with_query(PATH, query), replaced)


async def _answer(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    attempt: Attempt,
    errors: dict[type[DomainError], str],
    at_fault: AtFault | None,
) -> Response[Any]:
    """Run ``attempt`` on the posted form, then answer with its redirect or the page; a domain
    error named in ``errors`` (its transaction rolled back) shows that message, tied to the
    fields ``at_fault`` names for it, above the form as it was typed."""
    form = await read_form(request)
    locale = page_locale(request, form)
    result: Outcome | Response[Any]
    try:
        result = await attempt(form, locale, utcnow())
    except PolicyViolation as exc:
        result = Outcome(reasons=password_form.refusal_reasons(exc, locale), status=400)
    except UnstorableText:
        result = Outcome(message_id="form.unstorable", status=400)
    except DomainError as exc:
        message_id = next((m for kind, m in errors.items() if isinstance(exc, kind)), None)
        if message_id is None:
            raise
        result = Outcome(
            message_id=message_id,
            status=429 if exc.status == 429 else 400,
            headers=retry_after(exc),
        )
    runtime.mail.wake()
    if isinstance(result, Response):
        return result
    # A page shown to another user (another tab signed in) gets nothing typed for the first.
    if result.message_id not in (None, "form.other_user"):
        typed = {name: field(form, name, limit) for name, limit in TYPED_FIELDS.items()}
        result = dataclasses.replace(
            result,
            invalid=(at_fault or {}).get(result.message_id, ()),
            typed={name: value for name, value in typed.items() if name in form},
        )
    return await _security_page(request, runtime, locale, result)


@get(PATH, include_in_schema=False, cache=False)
async def security_page(
    request: Request[Any, Any, Any], runtime: RuntimeDep, shown: FromQuery[str | None] = None
) -> Response[Any]:
    # A HEAD (a link checker, a prefetch) has no body to show it in: what was left stays for
    # the GET, or new recovery codes would be spent unseen.
    if asked_with_head(request):
        shown = None
    return await _security_page(request, runtime, page_locale(request), Outcome(), shown)


# --- profile -----------------------------------------------------------------------------


async def _change_name(session: AsyncSession, posted: Posted) -> Outcome:
    name = sent(posted.form, "name", MAX_NAME)
    if name is None:
        raise InvalidInput("The form has no name field.")
    await self_service.change_name(session, posted.visitor.user, name)
    return Outcome(notice_id="security.name_saved")


@post(f"{PATH}/name", include_in_schema=False, cache=False)
async def change_name(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
    at_fault = {"security.name_invalid": ("name",), "form.unstorable": ("name",)}
    return await _act(
        request, runtime, _change_name, {InvalidInput: "security.name_invalid"}, at_fault
    )


def _current_password_at_fault(field_id: str) -> AtFault:
    """A form's refusals of its current password, tied to its field ``field_id``."""
    return {"security.wrong_password": (field_id,), "security.throttled": (field_id,)}


async def _prove_password(posted: Posted) -> StoredPassword:
    runtime = posted.runtime
    return await self_service.prove_password(
        runtime.db,
        runtime.passwords,
        runtime.limiter,
        runtime.settings,
        posted.visitor.user,
        field(posted.form, "current_password", MAX_PASSWORD),
    )


async def _change_email(posted: Posted) -> Outcome | Response[Any]:
    new_email = field(posted.form, "email", MAX_EMAIL).strip()
    runtime = posted.runtime
    try:
        proven = await _prove_password(posted)
    except RateLimited as exc:
        # Too many wrong passwords, not too many changes (the limit ``errors`` names).
        return Outcome(message_id="security.throttled", status=429, headers=retry_after(exc))
    async with runtime.db.write_transaction() as session:
        pending = await request_email_change(
            session,
            runtime.store,
            runtime.limiter,
            runtime.settings,
            posted.actor,
            posted.visitor.user.id,
            new_email,
            posted.locale,
            posted.now,
            browser_id=posted.visitor.browser.id,
            password_set_at=proven.set_at,
        )
    if pending is None:
        # Signed out (or disabled) while the password was checked: nothing was sent.
        return await sign_in_then(posted.request, runtime, PATH, ui_locales=posted.locale)
    # As stored (no stray capitals) and as people write it, as every page shows an address.
    return Outcome(notice_id="security.email_sent", notice_values={"email": shown_email(pending)})


@post(f"{PATH}/email", include_in_schema=False, cache=False)
async def change_email(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
    errors = {
        InvalidPassword: "security.wrong_password",
        InvalidInput: "security.email_invalid",
        RateLimited: "security.email_throttled",
    }
    at_fault = {
        "security.wrong_password": ("email_password",),
        "security.throttled": ("email_password",),
        "security.email_invalid": ("new_email",),
        "form.unstorable": ("new_email",),
    }
    return await _act_on_password(request, runtime, _change_email, errors, at_fault)


# --- password ----------------------------------------------------------------------------


async def _change_password(posted: Posted) -> Outcome | Response[Any]:
    if password_form.wants_suggestion(posted.form):
        return Outcome(suggest=True)
    runtime = posted.runtime
    try:
        token = await self_service.change_password(
            runtime.db,
            runtime.passwords,
            runtime.limiter,
            runtime.settings,
            posted.visitor.user,
            actor=posted.actor,
            current=field(posted.form, "current_password", MAX_PASSWORD),
            new=field(posted.form, "password", MAX_PASSWORD),
            confirm=field(posted.form, "password_confirm", MAX_PASSWORD),
            keep_session_id=posted.visitor.browser.id,
            locale=posted.locale,
            now=posted.now,
        )
    except self_service.SignedOutMeanwhile:
        return await _signed_out_meanwhile(posted)
    return Outcome(notice_id="security.password_changed", session_token=token)


@post(f"{PATH}/password", include_in_schema=False, cache=False)
async def change_password(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
    return await _act_on_password(
        request,
        runtime,
        _change_password,
        {
            InvalidPassword: "security.wrong_password",
            PasswordMismatch: "reset.mismatch",
            self_service.PasswordUnchanged: "security.password_unchanged",
            RateLimited: "security.throttled",
        },
        _current_password_at_fault("current_password")
        | {"reset.mismatch": ("password_confirm",), "security.password_unchanged": ("password",)},
    )


# --- two-step verification ---------------------------------------------------------------


def _enrol_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    locale: str,
    user_id: uuid.UUID,
    enrolment: Enrolment,
    *,
    message_id: str | None = None,
    status: int = 200,
    sign_out_others: bool = True,
) -> Response[Any]:
    """The set-up; shown again after a wrong code, with the box as the user left it."""
    return page(
        request,
        runtime,
        "totp_enrol.html",
        locale=locale,
        status=status,
        context={
            "secret": enrolment.secret,
            "qr_svg": enrolment.qr_svg,
            "enrolment": digest(enrolment.secret),
            "signed_in_user": user_id,
            "message_id": message_id,
            "sign_out_others": sign_out_others,
        },
    )


@post(f"{PATH}/totp", include_in_schema=False, cache=False)
async def begin_totp(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
    async def begin(posted: Posted) -> Outcome | Response[Any]:
        # A second factor that only a session thief's phone holds locks the owner out.
        await _prove_password(posted)
        mfa = SecondFactor.from_runtime(posted.runtime)
        try:
            async with runtime.db.transaction() as session:
                secret = await mfa.start_enrolment(session, posted.visitor.user, posted.now)
        except Conflict:
            return Outcome()  # already on (turned on in another tab): the page says so
        return Outcome(secret={"enrolment": digest(secret)})

    errors = {InvalidPassword: "security.wrong_password", RateLimited: "security.throttled"}
    return await _act_on_password(
        request, runtime, begin, errors, _current_password_at_fault("enable_password")
    )


async def _set_up_secret(
    session: AsyncSession, runtime: Runtime, user_id: uuid.UUID, enrolment: str
) -> tuple[str, bool] | None:
    """The user's secret and whether it is on, when ``enrolment`` is its digest: from the
    set-up page that showed it (posted back), or left by the post that began the set-up
    (shown_once); None for another secret, or none."""
    stored = await mfa_repository.get_secret(session, user_id)
    if stored is None:
        return None
    secret = SecondFactor.from_runtime(runtime).encryptor.decrypt(stored.secret_encrypted)
    return (secret, stored.confirmed_at is not None) if digest_matches(secret, enrolment) else None


async def _pending_secret(
    session: AsyncSession, runtime: Runtime, user_id: uuid.UUID, enrolment: str
) -> str | None:
    """The pending secret, when ``enrolment`` is its digest (see ``_set_up_secret``).

    Only beginning a set-up asks for the current password, and a set-up left pending stays:
    a session alone must neither read its secret (a wrong first code shows the page again)
    nor turn it on with a code from an app of its own, locking the owner out.
    """
    found = await _set_up_secret(session, runtime, user_id, enrolment)
    return found[0] if found is not None and not found[1] else None


def _codes_handle(enrolment: str) -> str:
    """Where the page shows the recovery codes that turning ``enrolment`` on made: known to
    whoever posts its confirmation, so a second post (a double click, whose answer is the
    one the browser shows) leads to the codes the first one stored, not to a refusal."""
    return digest(f"enrolment-codes:{enrolment}")


async def _turned_on_by(session: AsyncSession, posted: Posted, enrolment: str) -> bool:
    """Whether the user's secret is on and ``enrolment`` is its digest: this very set-up's
    confirmation was posted before (a double click)."""
    found = await _set_up_secret(session, posted.runtime, posted.visitor.user.id, enrolment)
    return found is not None and found[1]


async def _confirmed_again(session: AsyncSession, posted: Posted, enrolment: str) -> Outcome:
    """A confirmation that found no set-up pending: when this set-up's first post turned it
    on, the way to its codes (gone once seen: the page then says it is on)."""
    if await _turned_on_by(session, posted, enrolment):
        return Outcome(handle=_codes_handle(enrolment))
    return Outcome(message_id="enrol.expired", status=400)


# The set-up's box, ticked by default: turning two-step on because the password may be
# known is when a thief's session must end (Keycloak's "Sign out from other devices").
SIGN_OUT_OTHERS = "sign_out_others"


@post(f"{PATH}/totp/confirm", include_in_schema=False, cache=False)
async def confirm_totp(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
    async def confirm(session: AsyncSession, posted: Posted) -> Outcome | Response[Any]:
        user_id = posted.visitor.user.id
        enrolment = field(posted.form, "enrolment", 64)
        secret = await _pending_secret(session, posted.runtime, user_id, enrolment)
        if secret is None:
            return await _confirmed_again(session, posted, enrolment)
        mfa = SecondFactor.from_runtime(posted.runtime)

        async def shown_again(message_id: str, sign_out_others: bool = True) -> Response[Any]:
            enrolment_page = await mfa.enrolment(secret, posted.visitor.user.email)
            return _enrol_page(
                request,
                posted.runtime,
                posted.locale,
                user_id,
                enrolment_page,
                message_id=message_id,
                status=400,
                sign_out_others=sign_out_others,
            )

        sign_out_others = ticked(posted.form, SIGN_OUT_OTHERS)
        if sign_out_others is None:
            return await shown_again(INCOMPLETE)  # before the code is spent
        code = field(posted.form, "code", MAX_CODE + 1)
        browser = posted.visitor.browser.id
        if not await sessions_repository.lock_user_signed_in(session, user_id, browser):
            return await _signed_out_meanwhile(posted)
        try:
            codes = await mfa.confirm_enrolment(
                session, posted.actor, user_id, code, posted.now, locale=posted.locale
            )
        except NotFound:
            return await _confirmed_again(session, posted, enrolment)
        except InvalidCode:
            # Its code spent by a post of the same form that committed while this one
            # waited to turn it on.
            if await _turned_on_by(session, posted, enrolment):
                return Outcome(handle=_codes_handle(enrolment))
            return await shown_again("enrol.invalid", sign_out_others)
        intro = "enrol.codes_intro"
        if sign_out_others:
            # This browser keeps its token, unlike "sign out everywhere else": a double
            # click's second post carries the cookie the first was made with, and must find
            # this browser still signed in to be led to the codes.
            await self_service.end_other_sessions(
                session, posted.actor, user_id, browser, posted.now
            )
            intro = "enrol.codes_intro_signed_out"
        # Left before the commit, not after as a secret: the commit lets a second post of
        # this form through, whose answer sends the browser to the codes at once.
        codes_shown = {"codes": codes, "intro": intro}
        handle = await shown_once.leave(
            posted.runtime, user_id, codes_shown, _codes_handle(enrolment)
        )
        return Outcome(handle=handle)

    return await _act(request, runtime, confirm, {})


def _codes_page(
    request: Request[Any, Any, Any], runtime: Runtime, locale: str, codes: list[str], intro_id: str
) -> Response[Any]:
    """Recovery codes, shown this once: after turning two-step on, or new ones."""
    context = {"codes": codes, "intro_id": intro_id}
    return page(request, runtime, "totp_codes.html", locale=locale, context=context)


@post(f"{PATH}/recovery-codes", include_in_schema=False, cache=False)
async def replace_recovery_codes(
    request: Request[Any, Any, Any], runtime: RuntimeDep
) -> Response[Any]:
    async def replace(posted: Posted) -> Outcome:
        # With the session alone, a thief could keep a way past the second factor.
        await _prove_password(posted)
        user = posted.visitor.user
        codes = await SecondFactor.from_runtime(runtime).replace_recovery_codes(
            runtime.db, posted.actor, user, posted.locale, posted.now
        )
        return Outcome(secret={"codes": codes, "intro": "enrol.codes_replaced"})

    errors = {
        InvalidPassword: "security.wrong_password",
        RateLimited: "security.throttled",
        NotFound: "security.recovery_codes_off",
    }
    return await _act_on_password(
        request, runtime, replace, errors, _current_password_at_fault("codes_password")
    )


async def _disable_totp(posted: Posted) -> Outcome:
    runtime = posted.runtime
    # Off already (a double click's second post, or another tab's): what the user asked for
    # is done, so the answer is the first post's, not a refusal.
    with suppress(NotFound):
        await SecondFactor.from_runtime(runtime).disable(
            runtime.db,
            runtime.passwords,
            posted.actor,
            posted.visitor.user,
            field(posted.form, "password", MAX_PASSWORD),
            field(posted.form, "code", MAX_CODE + 1),
            posted.now,
            locale=posted.locale,
        )
    return Outcome(notice_id="security.totp_disabled")


@post(f"{PATH}/totp/disable", include_in_schema=False, cache=False)
async def disable_totp(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
    return await _act_on_password(
        request,
        runtime,
        _disable_totp,
        {
            InvalidPassword: "security.totp_invalid",
            InvalidCode: "security.totp_invalid",
            RateLimited: "security.throttled",
        },
        {
            # One message for either, as at sign-in: it does not say which was wrong.
            "security.totp_invalid": ("disable_password", "disable_code"),
            "security.throttled": ("disable_password", "disable_code"),
        },
    )


# --- sessions ----------------------------------------------------------------------------


async def _sign_out_others(session: AsyncSession, posted: Posted) -> Outcome | Response[Any]:
    visitor = posted.visitor
    signed_out = await self_service.sign_out_others(
        session, posted.actor, visitor.user.id, visitor.browser.id, posted.now
    )
    if signed_out is None:
        return await _signed_out_meanwhile(posted)
    return Outcome(
        notice_id="security.signed_out_others",
        notice_values={"count": str(signed_out.ended)},
        session_token=signed_out.token,
    )


@post(f"{PATH}/sessions", include_in_schema=False, cache=False)
async def sign_out_others(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
    return await _act(request, runtime, _sign_out_others, {})


ROUTES = [
    security_page,
    change_name,
    change_email,
    change_password,
    begin_totp,
    confirm_totp,
    disable_totp,
    replace_recovery_codes,
    sign_out_others,
]
