"""Reading the hosted pages' form posts: bounded text fields, the CSRF check, the language."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.datastructures import FormMultiDict
from litestar.enums import RequestEncodingType

from identity.accounts.password_policy import RAW_LENGTH_FACTOR
from identity.accounts.password_policy_file import LONGEST_MAX_LENGTH
from identity.runtime import Runtime
from identity.web import csrf
from identity.web.rendering import locale_for

# A hidden field (and query parameter) that keeps the page's language across posts, as the
# sign-in flow's ui_locales does for the login page.
LOCALE_FIELD = "ui_locales"
# The message of a post that lacks a field the page needs, or repeats one: hand-made.
INCOMPLETE = "form.incomplete"
# A hidden field naming the user a signed-in page was shown to (see ``refusal``).
SIGNED_IN_FIELD = "signed_in_user"


async def read_form(request: Request[Any, Any, Any]) -> FormMultiDict:
    """The posted form when it is urlencoded, as every hosted form (and an OIDC POST
    authorization request, Core §3.1.2.1) sends it; any other body reads as an empty form.

    Litestar decodes each multipart part with the charset the part names: bytes that are not
    UTF-8 or an unknown charset raised out of ``request.form()`` (a 500), and ``punycode``
    or ``idna`` cost quadratic time. An empty form gets the page's answer to missing fields.
    """
    if request.content_type[0] != RequestEncodingType.URL_ENCODED:
        return FormMultiDict()
    return await request.form()


# A password field is read up to one character more than any policy takes as typed (its
# longest maximum, RAW_LENGTH_FACTOR times over before NFKC): the policy then refuses a longer
# one as too long, where a cut would have set, unknown to the user, a shorter password.
MAX_PASSWORD = LONGEST_MAX_LENGTH * RAW_LENGTH_FACTOR + 1


def sent(form: FormMultiDict, name: str, limit: int = 4096) -> str | None:
    """A text field cut to ``limit`` characters; None when absent, sent more than once, or
    a file part. A browser sends every text field of a form once, emptied or not: only a
    hand-made post leaves one out, which must not read as a field the user emptied (a name
    cleared), or repeats one, of whose values none is known to be the user's."""
    values = form.getall(name, [])
    return values[0][:limit] if len(values) == 1 and isinstance(values[0], str) else None


def ticked(form: FormMultiDict, name: str) -> bool | None:
    """Whether the checkbox ``name`` (value "yes") is ticked: a browser sends it once when
    it is, and not at all when it is not. None for a hand-made post that sends it twice or
    with another value, which is no answer either way: the page refuses it."""
    if name not in form:
        return False
    return True if sent(form, name) == "yes" else None


def field(form: FormMultiDict, name: str, limit: int = 4096) -> str:
    """A text field cut to ``limit`` characters; "" when not ``sent``: each page refuses
    an empty field it needs."""
    return sent(form, name, limit) or ""


def csrf_ok(request: Request[Any, Any, Any], runtime: Runtime, form: FormMultiDict) -> bool:
    return csrf.verify(
        request.cookies, runtime.settings, runtime.secret_key, field(form, csrf.FIELD)
    )


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a form post changes nothing: the page shows itself again with this message."""

    message_id: str
    status: int


def refusal(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    form: FormMultiDict,
    signed_in: uuid.UUID | None,
    *,
    complete: bool = True,
) -> Refusal | None:
    """Why a post from a page acting as the ``signed_in`` user (None: nobody is) must change
    nothing, if it must: a bad CSRF token, a page shown to another user, or a form not
    ``complete`` (without the field a button of the page sends, or with it twice). The CSRF
    token is one per browser, so it still matches once another tab has signed in as someone
    else: the page's ``SIGNED_IN_FIELD`` keeps a page left open from acting on that person's
    account."""
    if not csrf_ok(request, runtime, form):
        return Refusal("form.csrf_failed", 400)
    if signed_in is not None and field(form, SIGNED_IN_FIELD, 64) != str(signed_in):
        return Refusal("form.other_user", 409)
    if not complete:
        return Refusal(INCOMPLETE, 400)
    return None


def page_locale(request: Request[Any, Any, Any], form: FormMultiDict | None = None) -> str:
    """The language a form post asked for, else the page link's, else Accept-Language."""
    chosen = field(form, LOCALE_FIELD, 64) if form is not None else ""
    return locale_for(request, chosen or request.query_params.get(LOCALE_FIELD))
