"""Hosted pages about customer accounts: the account picker at sign-in, an account's Users
page (owners and managers), and accepting an invitation.

They work without JavaScript: every change is a form post carrying the CSRF token, answered
with a redirect back to the page (or the page again with a translated message). Removing a
member takes two: the row's post only asks, on a page naming whom and from where (leaving,
the user's own removal, ends on a page saying so: the Users page is for members). Any member
may leave, from the security page's list of their accounts, though only owners and managers
see the Users page: for anyone else, the question's Cancel and a refusal go back to the
security page instead. Who may do what is decided by identity.permissions.access, the same
matrix the management API uses, with the signed-in browser session as the caller.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromPath, FromQuery
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.emails import normalise_email, shown_email
from identity.accounts.models import User
from identity.accounts.repository import email_exists
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    PolicyViolation,
    RateLimited,
    UnstorableText,
)
from identity.i18n import SUPPORTED_LOCALES
from identity.i18n.moments import shown_minute
from identity.oauth import account_selection
from identity.oauth.interaction import Flow, FlowStore
from identity.permissions import account_roles, customer_accounts, invitations, members, repository
from identity.permissions.access import (
    Action,
    Caller,
    Relation,
    allowed,
    authorize,
    check_manager_edit,
    check_manager_invite,
    delegation_for,
    removal,
)
from identity.permissions.grants import BEYOND_DELEGATION, Grant, RoleGrant, lapsed
from identity.permissions.invitations import ACCEPT_PATH, InvitationRequest
from identity.permissions.models import Membership
from identity.runtime import Runtime
from identity.sessions import service as sessions
from identity.tokens.subjects import active_user
from identity.web import browser_session, client_ip, cookies, password_form, repeated_posts
from identity.web.actors import page_actor
from identity.web.authorization import (
    ACCOUNT_PAGE,
    flow_expired,
    flow_locale,
    proceed,
    redirect,
    resume_once,
    sign_in_then,
    with_query,
)
from identity.web.dependencies import RuntimeDep
from identity.web.forms import (
    LOCALE_FIELD,
    MAX_PASSWORD,
    SIGNED_IN_FIELD,
    csrf_ok,
    field,
    page_locale,
    read_form,
    refusal,
    sent,
    ticked,
)
from identity.web.notices import notice
from identity.web.pages import MAX_EMAIL
from identity.web.pages_account import PATH as SECURITY_PATH
from identity.web.pages_account import refused_page as security_refusal
from identity.web.rendering import error_page, page
from identity.web.retry_after import retry_after

# Notices shown after a change, by the ``done`` query parameter of the redirect.
DONE = frozenset({"invited", "resent", "cancelled", "saved", "removed"})
# The refusals of an invitation that are about its email field.
INVITE_EMAIL_MESSAGES = frozenset({"users.error.email", "users.error.email_taken"})
# The field of a removal's confirming post: the id of the membership the question named.
CONFIRM_FIELD = "confirm"
# A confirmation about a membership that ended, though the person is a member again.
MEMBER_CHANGED_REASON = "member_changed"


def _fields(form: FormMultiDict, name: str) -> list[str]:
    """Every value of a repeated field (ticked boxes), each once: no page sends one twice,
    and a hand-made post that does must not grant or invite the same thing twice over."""
    values = [value[:200] for value in form.getall(name, []) if isinstance(value, str)]
    return list(dict.fromkeys(values))


def _all_permissions(form: FormMultiDict) -> bool:
    """Whether the "all permissions" box is ticked (a box is sent only when it is). Sent
    twice, or with another value, by a hand-made post, it is refused, not read either way."""
    chosen = ticked(form, "all_permissions")
    if chosen is None:
        raise InvalidInput("Tick the box or leave it.", errors=[{"field": "permissions"}])
    return chosen


async def _signed_in(
    session: AsyncSession, request: Request[Any, Any, Any], runtime: Runtime, now: datetime
) -> User | None:
    """The user of the browser's live session, if any (and not disabled)."""
    browser = await browser_session.signed_in(session, request, runtime, now)
    return await active_user(session, browser.user_id) if browser else None


def _caller(user: User) -> Caller:
    # The browser session speaks for the user alone: never staff, never a service, whatever
    # scopes a token of theirs might carry.
    return Caller(user_id=user.id, client_id="", is_staff=False, is_service=False)


# --- the account picker --------------------------------------------------------------------


async def _picker(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    flow: Flow,
    *,
    message_id: str | None = None,
    status: int = 200,
) -> Response[Any]:
    now = utcnow()
    async with runtime.db.transaction() as session:
        user = await _signed_in(session, request, runtime, now)
        choices = await customer_accounts.accounts_of(session, user.id, now) if user else []
    if user is None:
        # Signed out meanwhile: the authorization step sends the browser to sign in again.
        return await proceed(
            request,
            runtime,
            flow,
            session_token=browser_session.cookie_token(request, runtime.settings),
        )
    requested = flow.request.get(account_selection.PARAMETER)
    mine = {str(c.account.id) for c in choices}
    return page(
        request,
        runtime,
        "login_account.html",
        locale=flow_locale(request, flow),
        status=status,
        context={
            "flow": flow.id,
            "accounts": [(str(c.account.id), c.account.name, c.owner) for c in choices],
            "signed_in_user": str(user.id),
            "signed_in_email": user.email,
            "requested_unknown": requested is not None and requested not in mine,
            # The user's own pick on this page, asked again (``select_account``).
            "chosen_unknown": flow.account_id is not None and flow.account_id not in mine,
            "message_id": message_id,
        },
    )


@get(ACCOUNT_PAGE, include_in_schema=False, cache=False)
async def account_page(
    request: Request[Any, Any, Any], runtime: RuntimeDep, flow: FromQuery[str | None] = None
) -> Response[Any]:
    pending = await FlowStore(runtime.store).load(flow)
    if pending is None or pending.return_to is not None:
        return flow_expired(request, runtime)
    return await _picker(request, runtime, pending)


@post(ACCOUNT_PAGE, include_in_schema=False, cache=False)
async def account_submit(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
    form = await read_form(request)
    flows = FlowStore(runtime.store)
    flow_id = field(form, "flow")
    async with runtime.db.transaction() as session:
        user = await _signed_in(session, request, runtime, utcnow())
    # "" is the page's own choice of no account (its one button when there is none to pick).
    chosen = sent(form, account_selection.PARAMETER, 64)
    signed_in = user.id if user else None
    if refused := refusal(request, runtime, form, signed_in, complete=chosen is not None):
        pending = await flows.load(flow_id)
        if pending is None:
            return flow_expired(request, runtime, form)
        return await _picker(
            request, runtime, pending, message_id=refused.message_id, status=refused.status
        )
    assert chosen is not None  # else refused as not complete
    token = browser_session.cookie_token(request, runtime.settings)
    # Signed out since the first post: its sign-in is over, and no repeat brings it back.
    repeat = (
        repeated_posts.key_of(request, runtime, ACCOUNT_PAGE, flow_id, token, chosen)
        if user is not None and token is not None
        else None
    )

    async def pick(pending: Flow) -> Response[Any]:
        if pending.return_to is not None:
            return flow_expired(request, runtime, form)
        # Only a hint: the authorization step accepts it only for an account the user is in.
        pending.account_id = chosen or None
        pending.user_chose = True
        return await proceed(request, runtime, pending, session_token=token)

    picked = await resume_once(request, runtime, flow_id, repeat, pick)
    return picked or flow_expired(request, runtime, form)


# --- the Users page ------------------------------------------------------------------------

USERS_PAGE = "/accounts/{account_id:uuid}/users"


def users_url(account_id: uuid.UUID, done: str | None = None) -> str:
    query = f"?{urlencode({'done': done})}" if done else ""
    return f"/accounts/{account_id}/users{query}"


def _label(texts: dict[str, str], locale: str) -> str:
    return texts.get(locale) or texts["en"]


async def _users_context(
    session: AsyncSession,
    runtime: Runtime,
    viewer: User,
    account_id: uuid.UUID,
    relation: Relation,
    locale: str,
) -> dict[str, Any]:
    now = utcnow()
    catalogue = runtime.catalogue
    account = await customer_accounts.get_account(session, account_id)
    entries = await catalogue.entries(session)
    labels = {info.name: _label(info.label, locale) for info in entries}
    roles = [
        *await account_roles.list_roles(session, None),
        *await account_roles.list_roles(session, account_id),
    ]
    pending = await invitations.pending(session, account_id, now)
    # Offered only where the resend would be sent, not refused after the click.
    resendable = await invitations.resendable(
        session, relation, viewer.id, account_id, pending, now
    )
    listed = []
    for view in await members.list_members(session, account_id, now, catalogue):
        target = view.membership
        listed.append(
            {
                "user_id": str(view.user.id),
                "name": view.user.name,
                "email": shown_email(view.user.email),
                "owner": target.is_owner,
                "disabled": view.user.disabled,
                "all_permissions": target.all_permissions,
                # A lapsed grant gives nothing, so its box is not ticked: ticking it grants
                # the permission again, with no expiry.
                "direct": {g.permission for g in view.permissions if not lapsed(g.expires_at, now)},
                "roles": {str(role.id) for g, role in view.roles if not lapsed(g.expires_at, now)},
                "effective": sorted(labels.get(name, name) for name in view.effective),
                # A manager edits and removes plain members only (check_manager_edit); an
                # owner's grants are everything already, so there is nothing to edit.
                "editable": not target.is_owner,
                "removable": relation is Relation.OWNER or not target.is_owner,
            }
        )
    return {
        "account_id": str(account.id),
        "account_name": account.name,
        "can_grant_all": relation is Relation.OWNER,
        "members": listed,
        "invitations": [
            {
                "id": str(invitation.id),
                "email": shown_email(invitation.email),
                "all_permissions": invitation.all_permissions,
                "permissions": [
                    labels.get(g["name"], g["name"])
                    for g in invitation.grants.get("permissions", [])
                ],
                "expires": shown_minute(invitation.expires_at),
                "resendable": invitation.id in resendable,
            }
            for invitation in pending
        ],
        "permissions": [
            (info.name, _label(info.label, locale), _label(info.description, locale))
            for info in entries
        ],
        "roles": [
            (str(view.role.id), (locale == "es" and view.role.name_es) or view.role.name)
            for view in roles
        ],
        "locales": SUPPORTED_LOCALES,
    }


async def _users_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    user: User,
    account_id: uuid.UUID,
    locale: str,
    *,
    message_id: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    done: str | None = None,
    invite: dict[str, Any] | None = None,
    leaving: bool = False,
) -> Response[Any]:
    """The page, if the user may see it, with a refusal's ``headers``; else the error page
    (404 to anyone outside the account, so ids cannot be probed; 403 to a member without the
    right). A refused ``leaving`` of such a member is told on the security page instead,
    where they pressed Leave."""
    await runtime.catalogue.ensure_templates(runtime.db)
    try:
        async with runtime.db.transaction() as session:
            relation = await authorize(
                session, _caller(user), Action.MEMBER_READ, utcnow(), runtime.catalogue, account_id
            )
            context = await _users_context(session, runtime, user, account_id, relation, locale)
    except NotFound:
        return error_page(request, runtime, "users.not_found", locale=locale, status=404)
    except Forbidden:
        if leaving and message_id is not None:
            return await security_refusal(
                request, runtime, locale, message_id=message_id, status=status, headers=headers
            )
        return error_page(request, runtime, "users.forbidden", locale=locale, status=403)
    shown = page(
        request,
        runtime,
        "users.html",
        locale=locale,
        status=status,
        context=context
        | {
            "wide": True,
            "signed_in_as": shown_email(user.email),
            "signed_in_user": str(user.id),
            "message_id": message_id,
            # Marked invalid and described by the message, for a screen reader on the field.
            "invite_email_at_fault": invite is not None and message_id in INVITE_EMAIL_MESSAGES,
            "done": done if done in DONE else None,
            "invite": invite or {"email": "", "locale": locale, "permissions": [], "roles": []},
        },
    )
    shown.headers.update(headers or {})
    return shown


@get(USERS_PAGE, include_in_schema=False, cache=False)
async def users_page(
    request: Request[Any, Any, Any],
    runtime: RuntimeDep,
    account_id: FromPath[uuid.UUID],
    done: FromQuery[str | None] = None,
) -> Response[Any]:
    locale = page_locale(request)
    async with runtime.db.transaction() as session:
        user = await _signed_in(session, request, runtime, utcnow())
    if user is None:
        return await sign_in_then(request, runtime, users_url(account_id), ui_locales=locale)
    return await _users_page(request, runtime, user, account_id, locale, done=done)


def _message_for(exc: DomainError, conflict_message: str) -> str:
    """A refusal as a sentence in the page's language (the domain's own text is English)."""
    fields = {str(item.get("field")) for item in exc.extra.get("errors", [])}
    if isinstance(exc, UnstorableText):
        return "form.unstorable"
    if isinstance(exc, RateLimited):
        return "users.error.rate_limited"
    if isinstance(exc, Forbidden):
        if exc.extra.get("reason") == BEYOND_DELEGATION:
            return "users.error.beyond_delegation"
        if exc.extra.get("reason") == invitations.BEYOND_RESENDER_REASON:
            return "users.error.beyond_resender"
        return "users.error.forbidden"
    if isinstance(exc, NotFound):
        return "users.error.not_found"
    if "email" in fields:
        return "users.error.email_taken" if isinstance(exc, Conflict) else "users.error.email"
    if fields & {"permissions", "roles"}:
        return "users.error.grants"
    if isinstance(exc, Conflict):
        if exc.extra.get("reason") == invitations.SENDER_GONE_REASON:
            return "users.error.sender_gone"
        if exc.extra.get("reason") == MEMBER_CHANGED_REASON:
            return "users.error.member_changed"
        if exc.extra.get("reason") == members.LAST_OWNER_REASON:
            return "users.error.last_owner"
        return conflict_message
    return "users.error.invalid"


# What a form post changes: given the session, the acting user, their relation to the
# account, the form and the time; raises a domain error to refuse. Returns the answer, or
# None for the redirect back to the page.
Change = Callable[
    [AsyncSession, Actor, Relation, FormMultiDict, datetime], Awaitable[Response[Any] | None]
]


@dataclass(frozen=True)
class Question:
    """A page asking to confirm a change, shown in place of making it."""

    template: str
    context: dict[str, Any]


# Whether a form post must first be confirmed: given the session, the signed-in user, their
# relation to the account and the form, the question to show, or None to make the change.
# Raises a domain error where the change would be refused anyway.
Ask = Callable[[AsyncSession, User, Relation, FormMultiDict], Awaitable[Question | None]]

# For a form post made again whose first post left the signed-in user outside the account
# (so the matrix refuses them now): given the session, the user and the form, the first
# post's answer; None when the post is no such repeat.
Repeat = Callable[[AsyncSession, User, FormMultiDict], Awaitable[Response[Any] | None]]


async def _change(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    account_id: uuid.UUID,
    action: Action,
    change: Change,
    *,
    done: str,
    conflict_message: str = "users.error.conflict",
    invite_form: bool = False,
    ask: Ask | None = None,
    repeat: Repeat | None = None,
    removing: uuid.UUID | None = None,
) -> Response[Any]:
    """One Users-page form post: sign-in, CSRF, the matrix's verdict, the change (or the
    question ``ask`` puts first), redirect (or the change's own answer). ``removing``: the
    user a removal takes out, whose own is leaving, not ``action``."""
    form = await read_form(request)
    locale = page_locale(request, form)
    now = utcnow()
    async with runtime.db.transaction() as session:
        user = await _signed_in(session, request, runtime, now)
    if user is None:
        # A leave (the form names its viewer as the one it takes out) starts again where a
        # plain member, who may not see the Users page, can press Leave: the security page.
        leave = removing is not None and field(form, SIGNED_IN_FIELD, 64) == str(removing)
        back = SECURITY_PATH if leave else users_url(account_id)
        return await sign_in_then(request, runtime, back, ui_locales=locale)
    if removing is not None:
        action = removal(_caller(user), removing)
    leaving = action is Action.MEMBER_LEAVE
    # On a refused invitation the form comes back filled in, so nothing is typed twice.
    invite = (
        {
            "email": field(form, "email", MAX_EMAIL),
            "locale": field(form, "locale", 8),
            "permissions": _fields(form, "permission"),
            "roles": _fields(form, "role"),
        }
        if invite_form
        else None
    )
    if refused := refusal(request, runtime, form, user.id):
        return await _users_page(
            request,
            runtime,
            user,
            account_id,
            locale,
            message_id=refused.message_id,
            status=refused.status,
            invite=invite,
            leaving=leaving,
        )
    await runtime.catalogue.ensure_templates(runtime.db)
    try:
        async with runtime.db.transaction() as session:
            if repeat and (again := await repeat(session, user, form)):
                return again
            relation = await authorize(
                session, _caller(user), action, now, runtime.catalogue, account_id
            )
            question = await ask(session, user, relation, form) if ask else None
            answer = None
            if question is None:
                actor = page_actor(request, runtime, user.id)
                answer = await change(session, actor, relation, form, now)
    except DomainError as exc:
        # Outsiders and plain members get the error page from _users_page's own check.
        return await _users_page(
            request,
            runtime,
            user,
            account_id,
            locale,
            message_id=_message_for(exc, conflict_message),
            status=exc.status,
            headers=retry_after(exc),
            invite=invite,
            leaving=leaving,
        )
    if question is not None:
        context = question.context | {"signed_in_user": str(user.id)}
        return page(request, runtime, question.template, locale=locale, context=context)
    runtime.mail.wake()
    return answer or redirect(with_query(users_url(account_id, done), {LOCALE_FIELD: locale}))


def _role_ids(form: FormMultiDict) -> list[uuid.UUID]:
    try:
        # Once each also when one id is spelled two ways ("{...}", upper case).
        return list(dict.fromkeys(uuid.UUID(value) for value in _fields(form, "role")))
    except ValueError:
        raise InvalidInput("Unknown role.", errors=[{"field": "roles"}]) from None


@post(f"{USERS_PAGE}/invite", include_in_schema=False, cache=False)
async def invite_submit(
    request: Request[Any, Any, Any], runtime: RuntimeDep, account_id: FromPath[uuid.UUID]
) -> Response[Any]:
    async def change(
        session: AsyncSession, actor: Actor, relation: Relation, form: FormMultiDict, now: datetime
    ) -> None:
        all_permissions = _all_permissions(form)
        check_manager_invite(relation, all_permissions=all_permissions)
        locale = field(form, "locale", 8)
        try:
            await invitations.invite(
                session,
                actor,
                account_id,
                InvitationRequest(
                    email=field(form, "email", MAX_EMAIL),
                    all_permissions=all_permissions,
                    # "All" covers every permission, so single ones would only be noise.
                    permissions=[]
                    if all_permissions
                    else [Grant(n) for n in _fields(form, "permission")],
                    roles=[RoleGrant(role_id) for role_id in _role_ids(form)],
                    locale=locale if locale in SUPPORTED_LOCALES else None,
                ),
                catalogue=runtime.catalogue,
                limiter=runtime.limiter,
                settings=runtime.settings,
                now=now,
                delegation=await delegation_for(session, actor.user_id, relation, account_id, now),
            )
        except invitations.AlreadyInvited as exc:
            # Sent by this form's first post (a double click): answered as that one was.
            if not exc.just_sent:
                raise

    return await _change(
        request,
        runtime,
        account_id,
        Action.INVITATION_WRITE,
        change,
        done="invited",
        invite_form=True,
    )


@post(f"{USERS_PAGE}/{{user_id:uuid}}/grants", include_in_schema=False, cache=False)
async def grants_submit(
    request: Request[Any, Any, Any],
    runtime: RuntimeDep,
    account_id: FromPath[uuid.UUID],
    user_id: FromPath[uuid.UUID],
) -> Response[Any]:
    async def change(
        session: AsyncSession, actor: Actor, relation: Relation, form: FormMultiDict, now: datetime
    ) -> None:
        # Only an owner is shown the "all permissions" box (``can_grant_all``): anyone
        # else's form lacks it, which leaves it as it is rather than taking it away unseen.
        ticked = _all_permissions(form)
        all_permissions = ticked if ticked or relation is Relation.OWNER else None
        target = await members.membership_of(session, account_id, user_id)
        check_manager_edit(relation, target, all_permissions=all_permissions)
        # Grants that stay keep their expiry dates; the page sets no new ones. A lapsed one
        # ticked again is a new grant (the page showed it unticked).
        view = await members.member(session, account_id, user_id, now, runtime.catalogue)
        live = [g for g in view.permissions if not lapsed(g.expires_at, now)]
        live_roles = [g for g, _ in view.roles if not lapsed(g.expires_at, now)]
        kept = {g.permission: g.expires_at for g in live}
        kept_roles = {g.role_id: g.expires_at for g in live_roles}
        await members.set_grants(
            session,
            actor,
            account_id,
            user_id,
            all_permissions=all_permissions,
            permissions=[Grant(n, kept.get(n)) for n in _fields(form, "permission")],
            roles=[RoleGrant(r, kept_roles.get(r)) for r in _role_ids(form)],
            catalogue=runtime.catalogue,
            now=now,
            delegation=await delegation_for(session, actor.user_id, relation, account_id, now),
            judge=partial(check_manager_edit, relation, all_permissions=all_permissions),
        )

    return await _change(request, runtime, account_id, Action.MEMBER_GRANTS, change, done="saved")


@post(f"{USERS_PAGE}/{{user_id:uuid}}/remove", include_in_schema=False, cache=False)
async def remove_submit(
    request: Request[Any, Any, Any],
    runtime: RuntimeDep,
    account_id: FromPath[uuid.UUID],
    user_id: FromPath[uuid.UUID],
) -> Response[Any]:
    async def ask(
        session: AsyncSession, viewer: User, relation: Relation, form: FormMultiDict
    ) -> Question | None:
        if _confirmed(form) is not None:
            return None
        target = await members.membership_of(session, account_id, user_id)
        check_manager_edit(relation, target)
        return await _removal_question(session, viewer, relation, target)

    async def left(session: AsyncSession, form: FormMultiDict) -> Response[Any]:
        # Not the Users page, which is for members only; shown, not redirected to, as a
        # page to redirect to would name the account to anyone not in it. A reload posts
        # the confirmation again, which answers the same (see repeat).
        account = await customer_accounts.get_account(session, account_id)
        return notice(
            request,
            runtime,
            page_locale(request, form),
            "users.left_title",
            "users.left",
            values={"account": account.name},
            link=(SECURITY_PATH, "security.title"),
        )

    async def repeat(
        session: AsyncSession, viewer: User, form: FormMultiDict
    ) -> Response[Any] | None:
        if viewer.id != user_id or _confirmed(form) is None:
            return None
        if await repository.get_membership(session, account_id, viewer.id) is not None:
            return None
        if not await members.left_on_their_own(session, account_id, viewer.id):
            return None  # never a member: the matrix's 404, naming nothing
        return await left(session, form)

    async def change(
        session: AsyncSession, actor: Actor, relation: Relation, form: FormMultiDict, now: datetime
    ) -> Response[Any] | None:
        asked_about = _confirmed(form)

        def judge(membership: Membership) -> None:
            check_manager_edit(relation, membership)
            if membership.id != asked_about:
                raise Conflict("Not the membership confirmed.", reason=MEMBER_CHANGED_REASON)

        # Gone already, by this confirmation posted a moment ago (a double click, a reload)
        # or by someone else: what was confirmed is done, so it answers as done, with
        # nothing recorded or announced twice.
        with suppress(NotFound):
            await members.remove_member(session, actor, account_id, user_id, now, judge=judge)
        return await left(session, form) if actor.user_id == user_id else None

    return await _change(
        request,
        runtime,
        account_id,
        Action.MEMBER_REMOVE,
        change,
        done="removed",
        ask=ask,
        repeat=repeat,
        removing=user_id,
    )


def _confirmed(form: FormMultiDict) -> uuid.UUID | None:
    """The membership a removal's confirming post names; None for the row's first post
    (or a hand-made one naming none), which only asks."""
    try:
        return uuid.UUID(field(form, CONFIRM_FIELD, 64))
    except ValueError:
        return None


async def _removal_question(
    session: AsyncSession, viewer: User, relation: Relation, target: Membership
) -> Question:
    """Whom the removal takes out of which account, named as the Users page names them;
    Cancel goes back to the Users page, or for a member who may not see it (one leaving from
    the security page), to the security page."""
    person = await session.get(User, target.user_id)
    account = await customer_accounts.get_account(session, target.account_id)
    if person is None:  # the membership's foreign key keeps the user while it exists
        raise NotFound("This user is not a member of the account.")
    email = shown_email(person.email)
    return Question(
        "users_remove.html",
        {
            "account_id": str(account.id),
            "account_name": account.name,
            "member_id": str(person.id),
            "membership_id": str(target.id),
            "named": person.name or email,
            "who": f"{person.name} ({email})" if person.name else email,
            "yourself": person.id == viewer.id,
            "cancel": users_url(account.id)
            if allowed(Action.MEMBER_READ, relation)
            else SECURITY_PATH,
        },
    )


@post(
    f"{USERS_PAGE}/invitations/{{invitation_id:uuid}}/resend", include_in_schema=False, cache=False
)
async def resend_submit(
    request: Request[Any, Any, Any],
    runtime: RuntimeDep,
    account_id: FromPath[uuid.UUID],
    invitation_id: FromPath[uuid.UUID],
) -> Response[Any]:
    async def change(
        session: AsyncSession, actor: Actor, relation: Relation, form: FormMultiDict, now: datetime
    ) -> None:
        await invitations.resend(
            session,
            actor,
            account_id,
            invitation_id,
            relation=relation,
            limiter=runtime.limiter,
            settings=runtime.settings,
            now=now,
        )

    return await _change(
        request,
        runtime,
        account_id,
        Action.INVITATION_WRITE,
        change,
        done="resent",
        conflict_message="users.error.invitation_closed",
    )


@post(
    f"{USERS_PAGE}/invitations/{{invitation_id:uuid}}/cancel", include_in_schema=False, cache=False
)
async def cancel_submit(
    request: Request[Any, Any, Any],
    runtime: RuntimeDep,
    account_id: FromPath[uuid.UUID],
    invitation_id: FromPath[uuid.UUID],
) -> Response[Any]:
    async def change(
        session: AsyncSession, actor: Actor, relation: Relation, form: FormMultiDict, now: datetime
    ) -> None:
        try:
            await invitations.cancel(session, actor, account_id, invitation_id, now)
        except NotFound:
            # Cancelled already, by this form posted a moment ago (a double click, a reload)
            # or by someone else: what was asked is done, so it answers as done, with nothing
            # recorded twice. One accepted or expired is not found, as in the API.
            if not await invitations.cancelled_already(session, account_id, invitation_id):
                raise

    return await _change(
        request,
        runtime,
        account_id,
        Action.INVITATION_WRITE,
        change,
        done="cancelled",
        conflict_message="users.error.invitation_closed",
    )


# --- accepting an invitation ---------------------------------------------------------------


# The accept page's messages about its name field: the field is marked invalid and
# described by the message (the password fields' own errors are _password_fields.html's).
NAME_MESSAGES = frozenset({"invite.name_required", "invite.name_invalid", "form.unstorable"})


def _accept_url(token: str) -> str:
    return f"{ACCEPT_PATH}?{urlencode({'token': token})}"


def _closed(
    request: Request[Any, Any, Any], runtime: Runtime, exc: DomainError, locale: str
) -> Response[Any]:
    """Unknown, used, cancelled, expired, or the visitor a member already: one clear
    sentence, and what to do next."""
    reason = exc.extra.get("reason", "invalid")
    status = 404 if reason == "invalid" else 410
    return error_page(request, runtime, f"invite.{reason}", locale=locale, status=status)


async def _accept_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    token: str,
    locale: str,
    *,
    name: str = "",
    message_id: str | None = None,
    reasons: list[str] | None = None,
    suggest: bool = False,
    status: int = 200,
) -> Response[Any]:
    now = utcnow()
    async with runtime.db.transaction() as session:
        try:
            found = await invitations.invitation_for_token(session, token, now)
        except (NotFound, Conflict) as exc:
            return _closed(request, runtime, exc, locale)
        user = await _signed_in(session, request, runtime, now)
        registered = user is None and await email_exists(session, found.invitation.email)
    invitation, account = found.invitation, found.account
    if user is not None:
        # The rule accept_invitation_as_existing_user applies: the invited address only.
        mode = "confirm" if normalise_email(user.email) == invitation.email else "wrong_user"
    elif registered:
        return await sign_in_then(
            request, runtime, _accept_url(token), login_hint=invitation.email, ui_locales=locale
        )
    else:
        mode = "new"
    password_fields = (
        await password_form.context(runtime, suggest=suggest, email=invitation.email, name=name)
        if mode == "new"
        else {}
    )
    return page(
        request,
        runtime,
        "invitation_accept.html",
        locale=locale,
        status=403 if mode == "wrong_user" and status == 200 else status,
        scripts=mode == "new",
        context=password_fields
        | {
            "mode": mode,
            "token": token,
            "account_name": account.name,
            "invited_email": shown_email(invitation.email),
            "signed_in_as": shown_email(user.email) if user else None,
            "name": name,
            "message_id": message_id,
            "name_messages": NAME_MESSAGES,
            "reasons": reasons or [],
        },
    )


@get(ACCEPT_PATH, include_in_schema=False, cache=False)
async def accept_page(
    request: Request[Any, Any, Any], runtime: RuntimeDep, token: FromQuery[str] = ""
) -> Response[Any]:
    return await _accept_page(request, runtime, token[:200], page_locale(request))


@post(ACCEPT_PATH, include_in_schema=False, cache=False)
async def accept_submit(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
    form = await read_form(request)
    token = field(form, "token", 200)
    locale = page_locale(request, form)
    settings = runtime.settings
    # Not cut to the column's size: prepare_sign_up refuses a long name rather than cut it.
    name = field(form, "name").strip()
    if not csrf_ok(request, runtime, form):
        return await _accept_page(
            request, runtime, token, locale, name=name, message_id="form.csrf_failed", status=400
        )
    if password_form.wants_suggestion(form):
        # "Generate" without JavaScript: the same form with a generated password, no action.
        return await _accept_page(request, runtime, token, locale, name=name, suggest=True)
    now = utcnow()
    ip = client_ip.of_request(request, settings.trusted_proxies)
    request_id = request.scope.get("state", {}).get("request_id")
    password = field(form, "password", MAX_PASSWORD)
    previous = browser_session.cookie_token(request, runtime.settings)
    async with runtime.db.transaction() as session:
        signed_in = await _signed_in(session, request, runtime, now)
    if signed_in is None and not name:
        return await _accept_page(
            request, runtime, token, locale, message_id="invite.name_required", status=400
        )
    if signed_in is None and password != field(form, "password_confirm", MAX_PASSWORD):
        return await _accept_page(
            request,
            runtime,
            token,
            locale,
            name=name,
            message_id="invite.password_mismatch",
            status=400,
        )
    try:
        sign_up = None
        if signed_in is None:
            # Checked and hashed before the transaction below, not while it is open.
            sign_up = await invitations.prepare_sign_up(
                runtime.db, runtime.passwords, token, name=name, password=password, now=now
            )
        async with runtime.db.transaction() as session:
            established = None
            user = await _signed_in(session, request, runtime, now)
            if user is not None:
                membership = await invitations.accept_invitation_as_existing_user(
                    session, token, user, now=now, ip=ip, request_id=request_id
                )
            elif sign_up is None:
                # Signed out between the two looks: the checks above did not run.
                raise InvalidInput("A name is required.")
            else:
                user, membership = await invitations.accept_invitation_as_new_user(
                    session, sign_up, now=now, ip=ip, request_id=request_id, locale=locale
                )
                # Signed in at once: the person has just proved they read the invited mailbox
                # and chose the password.
                established = await sessions.establish(
                    session,
                    user_id=user.id,
                    amr=["pwd"],
                    now=now,
                    lifetime=settings.session_lifetime,
                    previous_token=previous,
                    ip=ip,
                    user_agent=request.headers.get("user-agent"),
                )
            account = await customer_accounts.get_account(session, membership.account_id)
    except PolicyViolation as exc:
        reasons = password_form.refusal_reasons(exc, locale)
        return await _accept_page(
            request,
            runtime,
            token,
            locale,
            name=name,
            message_id="invite.password_weak",
            reasons=reasons,
            status=422,
        )
    except Forbidden:
        # Signed in as someone else: the page explains it, naming both addresses.
        return await _accept_page(request, runtime, token, locale, status=403)
    except (NotFound, Conflict) as exc:
        if "reason" in exc.extra:
            return _closed(request, runtime, exc, locale)
        # The invited email got a user of its own meanwhile: they sign in to accept.
        return await _accept_page(request, runtime, token, locale)
    except InvalidInput as exc:
        message_id = "form.unstorable" if isinstance(exc, UnstorableText) else "invite.name_invalid"
        return await _accept_page(
            request, runtime, token, locale, name=name, message_id=message_id, status=422
        )
    return page(
        request,
        runtime,
        "invitation_done.html",
        locale=locale,
        context={"account_name": account.name, "email": shown_email(user.email)},
        cookies=[cookies.session(settings, established.token)] if established else [],
    )


# Everything this module serves, for identity.app to mount.
ROUTES = [
    account_page,
    account_submit,
    users_page,
    invite_submit,
    grants_submit,
    remove_submit,
    resend_submit,
    cancel_submit,
    accept_page,
    accept_submit,
]
