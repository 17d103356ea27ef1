"""Email addresses: one stored form, and a clear sentence for each kind of bad one."""

from __future__ import annotations

import pytest

from identity.accounts.emails import (
    deliverable_email,
    mailable_email,
    normalise_email,
    shown_email,
)
from identity.errors import InvalidInput


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("  Ana@Example.COM \n", "ana@example.com"),
        ("ana@bücher.de", "ana@xn--bcher-kva.de"),
        ("jose.garci\u0301a@ejemplo.es", "jose.garcía@ejemplo.es"),  # NFC composes the accent
        ("o'brien+news@mail.example.org", "o'brien+news@mail.example.org"),
    ],
)
def test_email_is_stored_trimmed_composed_and_lower_case(raw: str, stored: str) -> None:
    assert normalise_email(raw) == stored


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("ana@xn--strae-oqa.de", "ana@straße.de"),
        ("jürgen@mail.xn--hxarsa0b.gr", "jürgen@mail.ελλάς.gr"),
        ("ana@example.com", "ana@example.com"),
        # Not an A-label IDNA2008 decodes: shown as stored, never as a guess.
        ("ana@xn--zz.example.com", "ana@xn--zz.example.com"),
        ("ana@xn--wgv71a119e.jp", "ana@日本語.jp"),
        # A Cyrillic "а" among Latin letters, as a look-alike of example.com is made: shown
        # as stored, as browsers show such a name, so that it does not pass for the other.
        ("bob@xn--exmple-4nf.com", "bob@xn--exmple-4nf.com"),
        ("bob@mail.xn--exmple-4nf.com", "bob@mail.xn--exmple-4nf.com"),
    ],
)
def test_a_stored_address_is_shown_with_its_domain_in_unicode(stored: str, shown: str) -> None:
    assert shown_email(stored) == shown
    assert normalise_email(shown) == stored or shown == stored


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("ana@straße.de", "ana@xn--strae-oqa.de"),
        ("ana@STRASSE.de", "ana@strasse.de"),
        ("ana@ελλάς.gr", "ana@xn--hxarsa0b.gr"),  # final sigma, not σ (xn--hxarsa5b)
    ],
)
def test_a_domain_is_named_as_mail_servers_name_it(raw: str, stored: str) -> None:
    """IDNA2008 as UTS #46 maps it, without the transitional mappings, as browsers and mail
    providers do: straße.de and strasse.de are two domains with two owners, and Python's
    own "idna" codec (IDNA2003) turned the first into the second, so mail for an address at
    one (a reset link) went to the other, and the two addresses counted as one."""
    assert normalise_email(raw) == stored
    assert deliverable_email(raw) == stored


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("ana.example.com", "exactly one @"),
        ("ana@@example.com", "exactly one @"),
        ("@example.com", "before the @"),
        ("a b@example.com", "before the @"),
        ("ana.@example.com", "before the @"),
        ("a\x00b@example.com", "before the @"),
        ("x" * 65 + "@example.com", "before the @"),
        ("ana@localhost", "domain"),
        ("ana@-example.com", "domain"),
        ("ana@example..com", "domain"),
        ("ana@10.0.0.1", "domain"),
        ("ana@" + "a" * 64 + ".com", "domain"),
        ("a@" + ("b" * 60 + ".") * 6 + "com", "at most 320"),
    ],
)
def test_bad_email_is_invalid_input_saying_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        normalise_email(raw)


DOMAIN_189 = ".".join(["b" * 63, "c" * 63, "d" * 57, "com"])


def test_an_address_too_long_to_receive_mail_is_refused_as_a_new_one_but_still_found() -> None:
    """RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its angle brackets, so 254 for
    the address (octets, RFC 6531 §3.3: an accented letter counts two). The 320 that a local
    part and a domain may each reach together let longer ones in, and no email to them could
    be sent. An address stored before is still looked up (sign-in, forgot password)."""
    longest = "a" * 64 + "@" + DOMAIN_189
    assert len(longest) == 254
    assert deliverable_email(longest) == longest
    one_more = longest.replace("d" * 57, "d" * 58)
    for too_long in (one_more, "a" * 63 + "\u00e9@" + DOMAIN_189):
        with pytest.raises(InvalidInput, match="254"):
            deliverable_email(too_long)
    assert normalise_email(one_more) == one_more


@pytest.mark.parametrize(
    "raw", ["=?utf-8?q?olga=40example=2ecom?=@example.com", "ana.=?utf-8?b?b2xnYQ==?=@example.com"]
)
def test_an_encoded_word_in_the_local_part_is_refused_as_a_new_address(raw: str) -> None:
    """Legal characters, but mail software decodes an encoded word (RFC 2047, which forbids
    one in an address): emails to it would reach the mailbox it decodes to."""
    with pytest.raises(InvalidInput, match="encoded"):
        deliverable_email(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "\u017fam@example.com",  # ſ, the long s: NFKC reads it as s
        "\uff53am@example.com",  # ｓ, full-width, as a CJK input method types it
        "\ufb01nance@example.com",  # ﬁ, one ligature character for "fi"
        "ana\u00b2@example.com",  # ², a superscript two
    ],
)
def test_a_look_alike_of_a_plain_address_is_refused_as_a_new_address(raw: str) -> None:
    """NFC keeps compatibility characters, so "ſam@" was stored beside "sam@": two accounts
    that read the same in a members list or an invitation. A new address takes the plain
    letters; one stored before this rule still signs in."""
    with pytest.raises(InvalidInput, match="plain form") as refused:
        deliverable_email(raw)
    assert "sam@" not in refused.value.detail  # says what to write, not the address itself
    assert normalise_email(raw) == raw


def test_a_unicode_local_part_without_compatibility_characters_is_a_new_address() -> None:
    assert deliverable_email("josé.garcía@ejemplo.es") == "josé.garcía@ejemplo.es"
    assert deliverable_email("张伟@例子.中国") == "张伟@xn--fsqu00a.xn--fiqs8s"


def test_an_address_stored_before_the_rules_is_mailable_while_mail_can_reach_it() -> None:
    """Invitations to an existing user's address ask only what mail needs: a look-alike
    stored before that rule is reachable, one too long or spelled as an encoded word is not."""
    assert mailable_email("\u017fAM@example.com") == "\u017fam@example.com"
    with pytest.raises(InvalidInput, match="254"):
        mailable_email("a" * 64 + "@" + DOMAIN_189.replace("d" * 57, "d" * 58))
    with pytest.raises(InvalidInput, match="encoded"):
        mailable_email("=?utf-8?q?olga=40example=2ecom?=@example.com")
