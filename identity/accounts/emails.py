"""Email addresses as stored and compared: one normal form, so uniqueness ignores case."""

from __future__ import annotations

import re
import unicodedata

from identity.errors import InvalidInput
from identity.uris import ascii_host, unicode_host

MAX_EMAIL = 320  # a local part (64) and a domain (255) as long as each may be, read at all
# RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its angle brackets (RFC 3696 errata
# 1690); octets, not characters, for a Unicode local part too (RFC 6531 §3.3).
MAX_DELIVERABLE = 254
MAX_LOCAL = 64
MAX_DOMAIN = 253  # RFC 1035, as written without the trailing dot
# Local parts as people type them: dot-atom (RFC 5322 §3.4.1), Unicode letters allowed
# (RFC 6531); quoted local parts are legal but only ever seen in abuse, so refused.
_LOCAL = re.compile(r"[\w!#$%&'*+/=?^`{|}~-]+(\.[\w!#$%&'*+/=?^`{|}~-]+)*")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# An RFC 2047 encoded word, "=?charset?b-or-q?text?=": made of characters a local part may
# hold, but mail software decodes it wherever it appears, so it would name another mailbox.
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bq]\?[^?]*\?=")


def _ascii_domain(domain: str) -> str:
    # Mail for straße.example must not go to strasse.example (see ``ascii_host``).
    try:
        return ascii_host(domain)
    except UnicodeError:
        raise InvalidInput("The domain of the email address is not valid.") from None


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
    ascii_domain = _ascii_domain(domain)
    labels = ascii_domain.split(".")
    if (
        len(ascii_domain) > MAX_DOMAIN
        or len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise InvalidInput("The domain of the email address is not valid.")
    return f"{local}@{ascii_domain}"


def shown_email(email: str) -> str:
    """A stored address as its owner writes it, for pages: its domain in Unicode again
    (straße.de, stored as xn--strae-oqa.de), so that one address reads the same everywhere."""
    local, at, domain = email.rpartition("@")
    return f"{local}{at}{unicode_host(domain)}"


def searched_forms(part: str) -> list[str]:
    """The forms a part of an address takes as ``normalise_email`` stores it: NFC and lower
    case, and also, when what follows its last @ (or the whole part, with none) is a
    Unicode domain, with that domain in IDNA. Staff type an address as the customer spells
    it (jan@straße.de), but the domain is stored as mail servers name it (xn--strae-oqa.de).
    The form as typed is kept: a Unicode local part is stored as it is. Spaces around the
    part are dropped, as from an address being stored: no stored address holds one."""
    typed = unicodedata.normalize("NFC", part.strip()).lower()
    before, at, domain = typed.rpartition("@")
    if domain.isascii():
        return [typed]
    try:
        return [typed, f"{before}{at}{ascii_host(domain)}"]
    except UnicodeError:  # not a domain, or only part of one: the typed form alone
        return [typed]


def deliverable_email(raw: str) -> str:
    """``mailable_email``, for an address about to be stored (a new user, an invitation to
    an address no user has, a changed sign-in email).
    Nor may it hold a compatibility character (the long s, a full-width or ligature letter,
    a superscript): NFC keeps them, so "ſam@" would be a second account beside "sam@" that
    reads the same in a members list or an invitation. The domain needs no such rule: IDNA
    maps its full-width letters to the plain ones.
    Look-ups use ``normalise_email``, so an address stored before these rules still signs in."""
    email = mailable_email(raw)
    local = email.rpartition("@")[0]
    if unicodedata.normalize("NFKC", local) != local:
        raise InvalidInput(
            "The part of the email address before the @ holds a full-width, ligature or other "
            "compatibility character: write its letters in their plain form."
        )
    return email


def mailable_email(raw: str) -> str:
    """``normalise_email``, for an address an email is about to be sent to: it must fit in
    an SMTP path, or every email to it fails, and hold no encoded word, or emails to it go to
    another mailbox (``identity.mail.transport`` gives such a message up). An address stored
    before ``deliverable_email``'s rules may fail this."""
    email = normalise_email(raw)
    if _ENCODED_WORD.search(email.rpartition("@")[0]):
        raise InvalidInput(
            "The part of the email address before the @ may not hold an encoded word (=?...?=)."
        )
    if len(email.encode()) > MAX_DELIVERABLE:
        raise InvalidInput(
            f"The email address is too long to receive mail: at most {MAX_DELIVERABLE} "
            "characters (an accented letter counts as two)."
        )
    return email
