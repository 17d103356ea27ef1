from pathlib import Path

import pytest

from identity.settings import Rate, Settings, SettingsError


def test_defaults_give_the_embedded_sqlite_database_in_the_data_folder(tmp_path: Path) -> None:
    settings = Settings.from_env({"IDENTITY_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/identity.db"
    assert settings.redis_url is None
    assert settings.issuer == "http://127.0.0.1:8000"
    assert settings.outbox_dir == tmp_path / "outbox"
    assert settings.access_token_ttl == 600
    assert settings.authorization_code_ttl == 60
    assert settings.housekeeping_interval == 600
    assert settings.sent_retention == 86400


def test_sign_in_and_reset_limits_default_to_the_documented_values() -> None:
    """The README's tables promise these numbers; the tests that exercise the limits read
    them from the settings, so a changed default would pass those unnoticed."""
    settings = Settings.from_env({})
    assert settings.login_max_failures == 5
    assert settings.login_max_failures_per_ip == 20
    assert settings.login_lockout == 15 * 60
    assert settings.reset_token_ttl == 30 * 60
    assert settings.reset_limit_per_email == Rate(3, 30 * 60)
    assert settings.reset_limit_per_ip == Rate(20, 3600)
    assert settings.reset_limit_global == Rate(1000, 3600)


def test_empty_values_count_as_unset() -> None:
    assert Settings.from_env({"IDENTITY_REDIS_URL": " "}).redis_url is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgresql://u@db/identity", "postgresql+psycopg://u@db/identity"),
        ("postgresql+psycopg://u@db/identity", "postgresql+psycopg://u@db/identity"),
        ("postgresql+asyncpg://u:p@db:5433/x", "postgresql+asyncpg://u:p@db:5433/x"),
        # SQLAlchemy's form for several hosts to fail over between, each named once per host.
        (
            "postgresql+asyncpg://u@/x?host=db1:5432&host=db2:5433",
            "postgresql+asyncpg://u@/x?host=db1%3A5432&host=db2%3A5433",
        ),
        ("sqlite:////var/lib/identity.db", "sqlite+aiosqlite:////var/lib/identity.db"),
    ],
)
def test_database_urls_are_served_through_an_async_driver(raw: str, expected: str) -> None:
    assert Settings.from_env({"IDENTITY_DATABASE_URL": raw}).database_url == expected


def test_issuer_loses_a_trailing_slash_so_it_compares_exactly() -> None:
    assert Settings.from_env({"IDENTITY_ISSUER": "https://id.example.com/"}).issuer == (
        "https://id.example.com"
    )


@pytest.mark.parametrize(
    ("variable", "value", "phrase"),
    [
        ("IDENTITY_DATABASE_URL", "mysql://x@y/z", "only SQLite and PostgreSQL"),
        ("IDENTITY_DATABASE_URL", "not a url", "is not a database URL"),
        ("IDENTITY_REDIS_URL", "http://localhost", "redis://"),
        ("IDENTITY_ISSUER", "id.example.com", "absolute http or https URL"),
        ("IDENTITY_ISSUER", "https://id.example.com/?a=b", "query or a fragment"),
        ("IDENTITY_ISSUER", "https://admin:pw@id.example.com", "user name or password"),
        ("IDENTITY_SMTP_URL", "smtp://mail:notaport", "port that is not a number from 1"),
        ("IDENTITY_SMTP_URL", "ftp://mail", "smtp://host:port"),
        ("IDENTITY_SMTP_URL", "smtp://mail:99999", "port that is not a number from 1 to 65535"),
        ("IDENTITY_SMTP_URL", "smtps://mailer:p%C3%A4ss@mail:465", "password in ASCII"),
        ("IDENTITY_SMTP_URL", "smtps://mäiler:pass@mail:465", "password in ASCII"),
        ("IDENTITY_SMTP_URL", "smtp://mailer:secret@mail:25", "unencrypted"),
        ("IDENTITY_DATABASE_URL", "postgresql://u@db:five/x", "port that is not a number from"),
        ("IDENTITY_DATABASE_URL", "postgresql://u@db:99999/x", "port that is not a number from"),
        # asyncpg takes the query as keyword arguments: these raised TypeError on connecting.
        ("IDENTITY_DATABASE_URL", "postgresql+asyncpg://u@db/x?sslmode=require", "ssl=require"),
        ("IDENTITY_DATABASE_URL", "postgresql+asyncpg://u@db/x?timeout_s=5", "'timeout_s'"),
        # ... and as text, where these want numbers, flags or one of a few words.
        ("IDENTITY_DATABASE_URL", "postgresql+asyncpg://u@db/x?command_timeout=abc", "seconds"),
        ("IDENTITY_DATABASE_URL", "postgresql+asyncpg://u@db/x?statement_cache_size=x", "whole"),
        ("IDENTITY_DATABASE_URL", "postgresql+asyncpg://u@db/x?ssl=maybe", "verify-full"),
        ("IDENTITY_DATABASE_URL", "postgresql+asyncpg://u@db/x?direct_tls=2", "true or false"),
        ("IDENTITY_DATABASE_URL", "postgresql+asyncpg://u@db/x?ssl=a&ssl=b", "more than once"),
        ("IDENTITY_DATABASE_URL", "postgresql+asyncpg://u@db/x?record_class=x", "in a URL"),
        ("IDENTITY_DATABASE_URL", "postgresql+asyncpg://u@/x?port=abc", "port='abc'"),
        ("IDENTITY_DATABASE_URL", "postgresql+asyncpg://u@/x?host=a&host=b&port=1&port=x", "whole"),
        # The server opens SQLite files itself and takes no option from the URL; the migrations
        # did, and a wrong value (timeout=abc) stopped them with a traceback, a URI filename
        # (uri=true) with "run identity migrate" for ever after.
        ("IDENTITY_DATABASE_URL", "sqlite:////srv/identity.db?timeout=abc", "'timeout'"),
        ("IDENTITY_DATABASE_URL", "sqlite:///file:/srv/identity.db?uri=true", "'uri'"),
        ("IDENTITY_DATABASE_URL", "sqlite:////srv/identity.db?mode=ro", "'mode'"),
        ("IDENTITY_REDIS_URL", "redis://cache:abc/0", "port that is not a number from 1 to"),
        ("IDENTITY_REDIS_URL", "redis://cache:6379/zero", "database number"),
        ("IDENTITY_ISSUER", "https://id.example.com:abc", "port that is not a number from 1"),
        ("IDENTITY_ACCESS_TOKEN_TTL", "ten minutes", "whole number of seconds"),
        ("IDENTITY_ACCESS_TOKEN_TTL", "0", "longer than zero"),
        ("IDENTITY_SENT_RETENTION", "99999999999999d", "at most 3650d"),
        ("IDENTITY_KEYS_REFRESH", "9" * 5000, "at most 3650d"),
        ("IDENTITY_RESET_LIMIT_GLOBAL", "5/3651d", "at most 3650d"),
        ("IDENTITY_MAX_BODY_BYTES", "-5", "greater than zero"),
        ("IDENTITY_TRUSTED_PROXIES", "10.0.0.1,not-an-ip", "not an IP address"),
        ("IDENTITY_LOG_LEVEL", "LOUD", "one of DEBUG"),
        ("IDENTITY_SIGNING_ALG", "HS256", "RS256 or ES256"),
        ("IDENTITY_SECRET_KEY", "short", "at least 32 characters"),
        ("IDENTITY_PASSWORD_POLICY", "/nonexistent/policy.toml", "not a readable file"),
        ("IDENTITY_WEBHOOKS_ALLOW_HTTP_LOOPBACK", "maybe", "true or false"),
        ("IDENTITY_HOUSEKEEPING_INTERVAL", "often", "whole number of seconds"),
        ("IDENTITY_SENT_RETENTION", "0", "longer than zero"),
        ("IDENTITY_REQUEST_READ_TIMEOUT", "0", "longer than zero"),
        ("IDENTITY_SERVER_PROCESSES", "0", "greater than zero"),
        ("IDENTITY_MAIL_FROM", "Identity", "one email address"),
        ("IDENTITY_MAIL_FROM", "Acme, Inc. <no-reply@acme.example>", "one email address"),
        ("IDENTITY_MAIL_FROM", "a@acme.example, b@acme.example", "one email address"),
        ("IDENTITY_MAIL_FROM", "Acme <no-reply@acme.example", "one email address"),
        ("IDENTITY_MAIL_FROM", "Acme\nInc <no-reply@acme.example>", "one email address"),
        ("IDENTITY_MAIL_FROM", "Acme <no-reply@☃.example>", "one email address"),
        # urlsplit drops tabs and line breaks and keeps spaces: such a value passed, and the
        # issuer went as written into discovery, every token's iss and every emailed link.
        ("IDENTITY_ISSUER", "https://id.exa mple.com", "spaces or control characters"),
        ("IDENTITY_ISSUER", "https://id.example.com/a\tb", "spaces or control characters"),
        ("IDENTITY_ISSUER", "https://id.example.com/a\nb", "spaces or control characters"),
        ("IDENTITY_ISSUER", "https://\uff49\uff44.example.com", "ASCII"),
        ("IDENTITY_ISSUER", "https://id.example.com/\u200f", "ASCII"),
        ("IDENTITY_REDIS_URL", "redis://ca che:6379/0", "spaces or control characters"),
        ("IDENTITY_SMTP_URL", "smtp://mail\thost:25", "spaces or control characters"),
        # It is in every email's Subject, where a line break fails every message once queued.
        ("IDENTITY_PRODUCT_NAME", "Acme\r\nBcc: x@evil.example", "line breaks"),
        ("IDENTITY_PRODUCT_NAME", "Acme\u2028Portal", "line breaks"),
        ("IDENTITY_PRODUCT_NAME", "Acme\u202egnillib", "text direction overrides"),
    ],
)
def test_a_bad_value_names_the_variable_in_one_sentence(
    variable: str, value: str, phrase: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    message = str(caught.value)
    assert message.startswith(variable + " ")
    assert phrase in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "sender",
    ["Identity <no-reply@localhost>", "no-reply@id.example.com", '"Acme, Inc." <id@acme.example>'],
)
def test_the_mail_sender_is_one_address_with_or_without_a_name(sender: str) -> None:
    assert Settings.from_env({"IDENTITY_MAIL_FROM": sender}).mail_from == sender


def test_durations_accept_units() -> None:
    settings = Settings.from_env(
        {
            "IDENTITY_REFRESH_TOKEN_TTL": "30d",
            "IDENTITY_SESSION_TTL": "8h",
            "IDENTITY_SESSION_IDLE": "45m",
            "IDENTITY_ID_TOKEN_TTL": "15m",
            "IDENTITY_HOUSEKEEPING_INTERVAL": "5m",
            "IDENTITY_SENT_RETENTION": "7d",
            "IDENTITY_REQUEST_READ_TIMEOUT": "2m",
        }
    )
    assert settings.refresh_token_ttl == 30 * 86400
    assert settings.session_ttl == 8 * 3600
    assert settings.session_idle == 45 * 60
    assert settings.id_token_ttl == 900
    assert settings.housekeeping_interval == 300
    assert settings.sent_retention == 7 * 86400
    assert settings.request_read_timeout == 120
    assert Settings.from_env({"IDENTITY_SESSION_TTL": "3650d"}).session_ttl == 3650 * 86400


def test_trusted_proxies_parse_addresses_and_networks() -> None:
    settings = Settings.from_env({"IDENTITY_TRUSTED_PROXIES": "10.0.0.0/8, ::1"})
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "::1/128"]


def test_cookies_are_secure_exactly_when_the_issuer_is_https() -> None:
    assert Settings.from_env({"IDENTITY_ISSUER": "https://id.example.com"}).https
    assert not Settings.from_env({}).https


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("1", True), ("off", False)])
def test_http_webhooks_to_loopback_are_off_unless_asked_for(raw: str, expected: bool) -> None:
    assert Settings.from_env({}).webhooks_allow_http_loopback is False
    variable = "IDENTITY_WEBHOOKS_ALLOW_HTTP_LOOPBACK"
    assert Settings.from_env({variable: raw}).webhooks_allow_http_loopback is expected


@pytest.mark.parametrize("variable", ["IDENTITY_DATA_DIR", "IDENTITY_MAIL_OUTBOX"])
def test_a_folder_setting_that_names_a_file_is_refused(variable: str, tmp_path: Path) -> None:
    # Every email would otherwise fail and be retried, and the data folder fail each command.
    a_file = tmp_path / "a-file"
    a_file.write_text("", encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: str(a_file)})
    assert str(caught.value) == f"{variable} names {str(a_file)!r}, which is a file, not a folder"


def test_folder_settings_may_name_folders_still_to_be_made(tmp_path: Path) -> None:
    settings = Settings.from_env({"IDENTITY_MAIL_OUTBOX": str(tmp_path / "new" / "outbox")})
    assert settings.outbox_dir == tmp_path / "new" / "outbox"


@pytest.mark.parametrize(
    "variable", ["IDENTITY_SECRET_KEY", "IDENTITY_PRODUCT_NAME", "IDENTITY_ISSUER"]
)
def test_a_value_that_is_not_utf8_is_refused_as_such(variable: str) -> None:
    # Python hands such bytes over as lone surrogates (PEP 383), which fail much later: the
    # secret key with a traceback in every command, the others in pages and tokens.
    value = {"IDENTITY_ISSUER": "https://id.example.com/\udcff"}.get(variable, "\udcff" * 40)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    assert str(caught.value) == f"{variable} is not valid UTF-8 text"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("IDENTITY_ISSUER", "https://[::1"),
        ("IDENTITY_REDIS_URL", "redis://[::1/0"),
        ("IDENTITY_SMTP_URL", "smtp://[mail.example:25"),
    ],
)
def test_a_url_that_cannot_be_parsed_is_refused_in_a_sentence(variable: str, value: str) -> None:
    # urlsplit's own words ("Invalid IPv6 URL") followed the variable's name: no sentence.
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    assert str(caught.value).startswith(f"{variable} is not a valid URL")


@pytest.mark.parametrize(
    "variable",
    [
        "IDENTITY_DATA_DIR",
        "IDENTITY_MAIL_OUTBOX",
        "IDENTITY_POLICIES_DIR",
        "IDENTITY_PASSWORD_POLICY",
    ],
)
def test_a_path_the_system_cannot_look_up_is_refused_in_a_sentence(variable: str) -> None:
    # Path.exists() and its kin raise on a name longer than the system takes (or under a
    # folder we may not enter): a traceback, where a missing path was a sentence.
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: "/tmp/" + "a" * 300})
    assert (
        str(caught.value)
        == f"{variable} names a path that cannot be looked up (File name too long)"
    )


def test_an_issuer_in_capitals_is_written_as_clients_see_it_and_counts_as_https() -> None:
    # Scheme and host are case-insensitive (RFC 3986 §6.2.2.1): browsers and clients lower
    # them, and "HTTPS://" was taken for http: cookies without Secure, answers without HSTS.
    settings = Settings.from_env({"IDENTITY_ISSUER": "HTTPS://ID.Example.COM:8443/Tenant/"})
    assert settings.issuer == "https://id.example.com:8443/Tenant"
    assert settings.https


def test_the_sign_in_limit_per_address_is_a_count_per_period() -> None:
    assert Settings.from_env({}).sign_in_limit_per_ip == Rate(600, 600)
    raised = Settings.from_env({"IDENTITY_SIGN_IN_LIMIT_PER_IP": "5000/10m"})
    assert raised.sign_in_limit_per_ip == Rate(5000, 600)
    with pytest.raises(SettingsError, match="IDENTITY_SIGN_IN_LIMIT_PER_IP"):
        Settings.from_env({"IDENTITY_SIGN_IN_LIMIT_PER_IP": "600"})
