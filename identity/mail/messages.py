"""The emails we send, rendered in the recipient's language with both a text and an HTML part.

Texts come from the catalogues in identity/i18n (``emails.<lang>.toml``) by stable id;
templates in identity/templates/email give them two shapes: an *action* (a link to follow,
printed in full as well for mail clients that break links) and a *notice* (something
happened to your account). The HTML part is autoescaped, so an email address or a product
name can never inject markup.
"""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from identity.i18n import Messages
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


def _render(shape: str, prefix: str, to: Recipient, product: str, **context: object) -> Message:
    t = Messages(to.locale)
    values = {"t": t, "lang": t.locale, "product": product, "prefix": prefix, **context}
    subject = t(f"{prefix}.subject", product=product)
    values["subject"] = subject
    return Message(
        to=to.address,
        subject=subject,
        text=_TEMPLATES.get_template(f"{shape}.txt").render(values),
        html=_TEMPLATES.get_template(f"{shape}.html").render(values),
    )


def _minutes(seconds: int) -> str:
    return str(max(1, seconds // 60))


def password_reset(to: Recipient, product: str, link: str, ttl_seconds: int) -> Message:
    return _render("action", "email.reset", to, product, link=link, minutes=_minutes(ttl_seconds))


def password_changed(to: Recipient, product: str) -> Message:
    return _render("notice", "email.password_changed", to, product, values={})


def email_change_confirmation(to: Recipient, product: str, link: str, ttl_seconds: int) -> Message:
    """To the new address: follow the link to make it the sign-in email."""
    return _render(
        "action", "email.email_change", to, product, link=link, minutes=_minutes(ttl_seconds)
    )


def email_changed(to: Recipient, product: str, old: str, new: str) -> Message:
    """To the old address and, after assisted recovery, the new one: the change happened."""
    return _render("notice", "email.email_changed", to, product, values={"old": old, "new": new})


def second_factor_removed(to: Recipient, product: str) -> Message:
    return _render("notice", "email.second_factor_removed", to, product, values={})
