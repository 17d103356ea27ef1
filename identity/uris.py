"""Checks of URIs that settings and client registration share, and host names as DNS,
browsers and mail servers spell them."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import SplitResult

import idna

BAD_PORT = "has a port that is not a number from 1 to 65535"
# The ``user:password@`` of an authority: up to its last "@", as ``urlsplit`` reads it.
_USERINFO = re.compile(r"^((?:[^:/?#]+:)?//)[^/?#]*@")


def has_unusable_port(parts: SplitResult) -> bool:
    """A port no browser or socket can use, which ``urlsplit`` keeps without a word (it reads
    the port only when asked): the library or browser given the URI later fails instead, with
    a traceback or a message of its own."""
    try:
        return parts.port == 0
    except ValueError:  # not a number, or out of range
        return True


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (as ``urlsplit`` reads it) is this machine: ``localhost`` or a loopback
    address, where plain http never leaves the machine."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def without_credentials(uri: str) -> str:
    """``uri`` as a message may quote it: without any ``user:password@``, which would end up in
    logs and terminals. It works on the text, so also on a URI ``urlsplit`` cannot parse."""
    return _USERINFO.sub(r"\1", uri, count=1)


def ascii_host(host: str) -> str:
    """``host`` as DNS knows it: IDNA2008 as UTS #46 maps it, without the transitional
    mappings, as the WHATWG URL standard (browsers) and mail providers spell it. Python's
    own "idna" codec is IDNA2003, which spells straße.example as strasse.example and ς as
    σ: other names, with other owners. An ASCII host is returned as it is. Raises
    ``UnicodeError`` (``idna.IDNAError`` is one) for a name IDNA2008 does not allow."""
    if host.isascii():
        return host
    return idna.encode(host, uts46=True, transitional=False).decode("ascii")


def decoded_host(host: str) -> str:
    """``host`` with the ``xn--`` labels ``ascii_host`` stored decoded (IDNA2008, which
    Python's own codec is not: it cannot read back a label with ß or a final ς). A name
    with none, or one that does not decode, is returned as it is."""
    if "xn--" not in host.lower():
        return host
    try:
        return idna.decode(host)
    except UnicodeError:
        return host


def unicode_host(host: str) -> str:
    """``host`` as people write it, for showing a name ``ascii_host`` stored: ``decoded_host``
    unless that could pass for another name, so that nothing is ever shown as something it
    is not."""
    decoded = decoded_host(host)
    # A label mixing scripts (a Cyrillic "а" among Latin letters) is how a look-alike of
    # another name is made; browsers show such a name as stored, and so do we. Scripts a
    # language mixes (Japanese kanji and kana) are shown as stored too: safe, if less kind.
    if any(len(_scripts(label)) > 1 for label in decoded.split(".")):
        return host
    return decoded


def _scripts(label: str) -> set[str]:
    """The scripts of ``label``'s letters, by the first word of their Unicode names
    (LATIN, CYRILLIC, GREEK, CJK...): close enough to UAX #24 for telling mixtures apart."""
    return {unicodedata.name(char, "?").split()[0] for char in label if char.isalpha()}
