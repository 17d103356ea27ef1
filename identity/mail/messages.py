"""The emails we send, rendered in the recipient's language with both a text and an HTML part.

Texts come from the catalogues in identity/i18n (``emails.<lang>.toml``) by stable id;
templates in identity/templates/email give them two shapes: an *action* (a link to follow,
printed in full as well for mail clients that break links) and a *notice* (something
happened to your account). The HTML part is autoescaped, so an email address or a product
name can never inject markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from identity.accounts.emails import shown_email
from identity.i18n import Messages
from identity.i18n.moments import shown_minute
from identity.mail.outbox import Message
from identity.settings import PACKAGE_ROOT

_TEMPLATES = Environment(
    loader=FileSystemLoader(PACKAGE_ROOT / "templates" / "email"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    locale: str


def _render(
    shape: str, prefix: str, to: Recipient, product: str, values: dict[str, str], **context: object
) -> Message:
    """``values`` fill the placeholders of the subject and of the message's own sentence."""
    t = Messages(to.locale)
    context.setdefault("subject_id", f"{prefix}.subject")
    subject = t(str(context["subject_id"]), product=product, **values)
    context |= {"t": t, "lang": t.locale, "product": product, "prefix": prefix}
    context.setdefault("body_id", f"{prefix}.body")
    context.setdefault("intro_id", f"{prefix}.intro")
    context |= {"values": values, "subject": subject}
    return Message(
        to=to.address,
        subject=subject,
        text=_TEMPLATES.get_template(f"{shape}.txt").render(context),
        html=_TEMPLATES.get_template(f"{shape}.html").render(context),
    )


def _action(
    prefix: str, to: Recipient, product: str, link: str, values: dict[str, str], **context: object
) -> Message:
    """An email whose link (a token in its query) opens a hosted page: the page speaks the
    email's language (``ui_locales``, which every such page reads), not whatever the browser
    that follows the link prefers."""
    language = Messages(to.locale).locale
    link = f"{link}&{urlencode({'ui_locales': language})}"
    return _render("action", prefix, to, product, values, link=link, **context)


def _expires_in(seconds: int) -> dict[str, object]:
    """An action's expiry line for a link that lives minutes or hours (the reset link's
    lifetime is the operator's choice): in whole hours when it is some, else in minutes
    (rounded down: never promised longer than it works), the noun singular for one."""
    hours, minutes = divmod(max(60, seconds) // 60, 60)
    unit, count = ("hours", hours) if hours and not minutes else ("minutes", hours * 60 + minutes)
    expiry_id = f"email.link_expiry.{unit}" if count > 1 else f"email.link_expiry.{unit[:-1]}"
    return {"expiry_id": expiry_id, "expiry": {"count": str(count)}}


def password_reset(to: Recipient, product: str, link: str, ttl_seconds: int) -> Message:
    return _action("email.reset", to, product, link, {}, **_expires_in(ttl_seconds))


def password_changed(to: Recipient, product: str, *, everywhere: bool) -> Message:
    """``everywhere``: every device was signed out (a reset); else the one that made the change
    stays signed in, and the notice must say so: an owner told that every device was signed
    out would think an intruder who changed it was signed out too."""
    body_id = "email.password_changed.body" if everywhere else "email.password_changed.body_kept"
    return _render("notice", "email.password_changed", to, product, {}, body_id=body_id)


def email_change_confirmation(to: Recipient, product: str, link: str, ttl_seconds: int) -> Message:
    """To the new address: follow the link to make it the sign-in email."""
    return _action("email.email_change", to, product, link, {}, **_expires_in(ttl_seconds))


def _expires_at(prefix: str, expires: datetime) -> dict[str, object]:
    """The expiry line of a link that lives days: a moment rather than a number of minutes."""
    return {
        "expiry_id": f"{prefix}.expiry",
        "expiry": {"expires": shown_minute(expires)},
    }


def welcome(to: Recipient, product: str, link: str, expires: datetime) -> Message:
    """To a user staff created without a password: follow the link to choose one."""
    return _action("email.welcome", to, product, link, {}, **_expires_at("email.welcome", expires))


def invitation(
    to: Recipient, product: str, link: str, *, inviter: str | None, account: str, expires: datetime
) -> Message:
    """To an invited address: follow the link to join ``account``. ``inviter`` is the person
    who sent it; ``None`` for a client acting for itself (a staff console), whose email then
    names no sender rather than putting something else where a person's name belongs."""
    expiry = _expires_at("email.invitation", expires)
    if inviter is None:
        return _action(
            "email.invitation",
            to,
            product,
            link,
            {"account": account},
            subject_id="email.invitation.subject_no_inviter",
            intro_id="email.invitation.intro_no_inviter",
            **expiry,
        )
    values = {"inviter": inviter, "account": account}
    return _action("email.invitation", to, product, link, values, **expiry)


def email_changed(to: Recipient, product: str, old: str, new: str) -> Message:
    """To the old address and, after assisted recovery, the new one: the change happened.
    Both addresses are named as their owner writes them, as the pages name them."""
    values = {"old": shown_email(old), "new": shown_email(new)}
    return _render("notice", "email.email_changed", to, product, values)


def second_factor_added(to: Recipient, product: str) -> Message:
    return _render("notice", "email.second_factor_added", to, product, {})


def second_factor_removed(to: Recipient, product: str) -> Message:
    return _render("notice", "email.second_factor_removed", to, product, {})


def recovery_codes_replaced(to: Recipient, product: str) -> Message:
    return _render("notice", "email.recovery_codes_replaced", to, product, {})
