"""Email addresses as stored and compared: one normal form, so uniqueness ignores case."""

from __future__ import annotations

import re
import unicodedata

from identity.errors import InvalidInput

MAX_EMAIL = 320  # RFC 3696 errata: 64 for the local part + "@" + 255 for the domain
MAX_LOCAL = 64
MAX_DOMAIN = 253  # RFC 1035, as written without the trailing dot
# Local parts as people type them: dot-atom (RFC 5322 §3.4.1), Unicode letters allowed
# (RFC 6531); quoted local parts are legal but only ever seen in abuse, so refused.
_LOCAL = re.compile(r"[\w!#$%&'*+/=?^`{|}~-]+(\.[\w!#$%&'*+/=?^`{|}~-]+)*")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def normalise_email(raw: str) -> str:
    """``raw`` stripped, NFC, lower-cased, its domain in ASCII (IDNA); raises ``InvalidInput``.

    The whole address is lower-cased: RFC 5321 lets a server treat local parts case-
    sensitively, but no real mailbox provider does, and two accounts that differ only by
    case would be a takeover waiting to happen.
    """
    email = unicodedata.normalize("NFC", raw.strip()).lower()
    if len(email) > MAX_EMAIL:
        raise InvalidInput(f"The email address must be at most {MAX_EMAIL} characters.")
    if email.count("@") != 1:
        raise InvalidInput("The email address must contain exactly one @.")
    local, domain = email.split("@")
    if not local or len(local) > MAX_LOCAL or not _LOCAL.fullmatch(local):
        raise InvalidInput("The part of the email address before the @ is not valid.")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidInput("The domain of the email address is not valid.") from None
    labels = ascii_domain.split(".")
    if (
        len(ascii_domain) > MAX_DOMAIN
        or len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise InvalidInput("The domain of the email address is not valid.")
    return f"{local}@{ascii_domain}"
