"""The recovery emails and settings, without a database: languages, escaping, the link."""

from __future__ import annotations

import pytest

from identity.mail import messages
from identity.mail.messages import Recipient
from identity.settings import Rate, Settings, SettingsError

LINK = "https://id.example.com/reset-password?token=abc&x=1"


def test_the_reset_email_has_the_link_as_a_button_and_written_out_in_both_parts() -> None:
    message = messages.password_reset(Recipient("ana@example.com", "en"), "Acme", LINK, 1800)
    assert message.to == "ana@example.com"
    assert message.subject == "Change your Acme password"
    # The page the link opens speaks the email's language.
    link = LINK + "&ui_locales=en"
    assert link in message.text
    assert "expires in 30 minutes" in message.text
    assert "ignore this email" in message.text
    assert message.html is not None
    escaped = link.replace("&", "&amp;")
    assert f'href="{escaped}"' in message.html
    assert message.html.count(escaped) == 2  # the button and the address written out


@pytest.mark.parametrize(
    ("locale", "lang", "subject"),
    [
        ("es", "es", "Cambia tu contraseña de Acme"),
        ("en", "en", "Change your Acme password"),
        ("fr", "en", "Change your Acme password"),  # not served: English
    ],
)
def test_the_reset_email_speaks_the_recipients_language(
    locale: str, lang: str, subject: str
) -> None:
    message = messages.password_reset(Recipient("a@example.com", locale), "Acme", LINK, 600)
    assert message.subject == subject
    assert message.html is not None and f'<html lang="{lang}">' in message.html


def test_every_email_exists_in_english_and_spanish_with_both_parts() -> None:
    for locale in ("en", "es"):
        to = Recipient("a@example.com", locale)
        for message in (
            messages.password_reset(to, "Acme", LINK, 1800),
            messages.password_changed(to, "Acme", everywhere=True),
            messages.password_changed(to, "Acme", everywhere=False),
            messages.email_change_confirmation(to, "Acme", LINK, 3600),
            messages.email_changed(to, "Acme", "old@example.com", "new@example.com"),
            messages.second_factor_added(to, "Acme"),
            messages.second_factor_removed(to, "Acme"),
            messages.recovery_codes_replaced(to, "Acme"),
        ):
            assert message.subject and "Acme" in message.subject
            assert message.text.strip() and message.html
            assert "email." not in message.text  # no raw catalogue id left over


def test_addresses_and_the_product_name_cannot_inject_markup() -> None:
    message = messages.email_changed(
        Recipient("a@example.com", "en"), "<b>Acme</b>", "old@example.com", "<img src=x>@evil"
    )
    assert message.html is not None
    assert "<img" not in message.html and "&lt;img src=x&gt;@evil" in message.html
    assert "<b>Acme" not in message.html
    assert "<img src=x>@evil" in message.text  # plain text is shown as text


@pytest.mark.parametrize(
    ("raw", "rate"),
    [("3/hour", Rate(3, 3600)), ("20/15m", Rate(20, 900)), ("1000/day", Rate(1000, 86400))],
)
def test_reset_limits_are_read_as_a_count_per_period(raw: str, rate: Rate) -> None:
    settings = Settings.from_env({"IDENTITY_RESET_LIMIT_PER_IP": raw})
    assert settings.reset_limit_per_ip == rate


def test_reset_settings_have_safe_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.reset_limit_per_email == Rate(3, 1800)
    assert settings.reset_token_ttl == 1800


def test_an_address_limit_counting_longer_than_a_link_lives_is_refused() -> None:
    # Someone else can use up an address's requests; its owner then relies on the links
    # those requests sent. Counted over longer than a link lives, the owner would be left
    # for the rest of the window with no working link and no way to ask for one.
    with pytest.raises(SettingsError, match="IDENTITY_RESET_LIMIT_PER_EMAIL") as refused:
        Settings.from_env(
            {"IDENTITY_RESET_LIMIT_PER_EMAIL": "3/hour", "IDENTITY_RESET_TOKEN_TTL": "30m"}
        )
    assert "IDENTITY_RESET_TOKEN_TTL" in str(refused.value)
    accepted = Settings.from_env(
        {"IDENTITY_RESET_LIMIT_PER_EMAIL": "3/hour", "IDENTITY_RESET_TOKEN_TTL": "1h"}
    )
    assert accepted.reset_limit_per_email == Rate(3, 3600)


@pytest.mark.parametrize("raw", ["3", "0/hour", "3/fortnight", "x/hour"])
def test_a_malformed_reset_limit_names_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="IDENTITY_RESET_LIMIT_PER_EMAIL"):
        Settings.from_env({"IDENTITY_RESET_LIMIT_PER_EMAIL": raw})


@pytest.mark.parametrize(
    ("locale", "seconds", "line"),
    [
        ("en", 60, "expires in 1 minute."),
        ("es", 90, "caduca en 1 minuto."),
        ("en", 3600, "expires in 1 hour."),
        ("es", 3600, "caduca en 1 hora."),
        ("en", 86400, "expires in 24 hours."),
        ("es", 7200, "caduca en 2 horas."),
        ("es", 5400, "caduca en 90 minutos."),
    ],
)
def test_the_expiry_line_agrees_with_its_number(locale: str, seconds: int, line: str) -> None:
    """IDENTITY_RESET_TOKEN_TTL may be a minute or a day: never "1 minutes" or "1440 minutes"."""
    message = messages.password_reset(Recipient("a@example.com", locale), "Acme", LINK, seconds)
    assert line in message.text
    assert message.html is not None and line in message.html
