"""Settings read once, at start-up, from ``IDENTITY_*`` environment variables.

Every value is parsed and checked here so that a bad one stops the program with a
sentence naming the variable, instead of failing later inside a request.
"""

from __future__ import annotations

import email.policy
import inspect
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.headerregistry import Address, AddressHeader
from pathlib import Path
from typing import TypeVar, cast
from urllib.parse import SplitResult, unquote, urlsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from identity.unreadable import REFUSAL, breaks_reading
from identity.uris import BAD_PORT, ascii_host, has_unusable_port

PREFIX = "IDENTITY_"
PACKAGE_ROOT = Path(__file__).resolve().parent
DEFAULT_POLICIES_DIR = PACKAGE_ROOT.parent / "policies"

T = TypeVar("T")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """A setting has a value we cannot use; ``str()`` is one sentence for a person."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable} {problem}")


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Durations become timedeltas, datetimes, Redis expiries and sleeps: far beyond any sensible
# lifetime, they overflow those (a traceback at start-up, or a 500 on every request).
MAX_DURATION_DAYS = 3650


def parse_duration(raw: str) -> int:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h`` or ``30d``, at most ten years."""
    match = _DURATION.match(raw)
    if not match:
        raise ValueError("must be a whole number of seconds, or a number followed by s, m, h or d")
    digits = match.group(1).lstrip("0") or "0"
    # Counted before int(), which refuses more than 4300 digits.
    seconds = int(digits) * _UNITS[match.group(2)] if len(digits) <= 12 else None
    if seconds is None or seconds > MAX_DURATION_DAYS * 86400:
        raise ValueError(f"must be at most {MAX_DURATION_DAYS}d (ten years)")
    if seconds <= 0:
        raise ValueError("must be longer than zero seconds")
    return seconds


def parse_positive_int(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError("must be a whole number") from None
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


@dataclass(frozen=True, slots=True)
class SessionLifetime:
    """A browser session lasts ``ttl`` seconds from its sign-in at most, and ends once
    unused for ``idle`` seconds."""

    ttl: int
    idle: int

    def expiry(self, signed_in: datetime, used: datetime) -> datetime:
        """When a session signed in at ``signed_in`` and last used at ``used`` ends."""
        return min(signed_in + timedelta(seconds=self.ttl), used + timedelta(seconds=self.idle))


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` events per ``window`` seconds."""

    count: int
    window: int


_RATE_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_rate(raw: str) -> Rate:
    """``3/hour``, ``20/15m`` or ``1000/1d``: a count, a slash, then a period or a duration."""
    count, slash, period = raw.partition("/")
    if not slash:
        raise ValueError("must be a count per period such as 3/hour or 20/15m")
    window = _RATE_PERIODS.get(period.strip().lower())
    return Rate(parse_positive_int(count), window or parse_duration(period))


def parse_mail_from(raw: str) -> str:
    """The sender of every email: one address, with or without a display name. Checked here,
    since a sender the mail server refuses would fail every email only once queued."""
    sender = raw.strip()
    refusal = ValueError(
        "must be one email address, such as Identity <no-reply@id.example.com> "
        '(quote a name with a comma: "Acme, Inc." <no-reply@acme.example>)'
    )
    try:
        header = cast(AddressHeader, email.policy.default.header_factory("From", sender))
        addresses = header.addresses
    except ValueError:  # a line break, in the words of the email package
        raise refusal from None
    if header.defects or len(addresses) != 1 or not addresses[0].domain:
        raise refusal
    address = addresses[0]
    if address.domain.isascii():
        return sender
    # As mail servers name it: in Unicode, the envelope needs SMTPUTF8 (which most relays do
    # not offer) and the Message-ID, made of this domain, cannot be written at all.
    try:
        domain = ascii_host(address.domain)
    except UnicodeError:
        raise refusal from None
    return str(Address(address.display_name, address.username, domain))


def _split_url(raw: str) -> SplitResult:
    # urlsplit drops tabs and line breaks and keeps spaces, so the value used afterwards,
    # as written, would not be the URL that was checked.
    if any(ord(character) <= 0x20 or ord(character) == 0x7F for character in raw.strip()):
        raise ValueError("must not contain spaces or control characters")
    try:
        return urlsplit(raw.strip())
    except ValueError:  # its words ("Invalid IPv6 URL") would follow the variable's name
        raise ValueError(
            "is not a valid URL: check its host, and the [ ] around an IPv6 address"
        ) from None


def _check_port(parts: SplitResult) -> None:
    if has_unusable_port(parts):
        raise ValueError(BAD_PORT)


def parse_issuer(raw: str) -> str:
    parts = _split_url(raw)
    if not raw.isascii():
        # Clients compare it byte for byte with the URL they were given, which browsers and
        # HTTP libraries spell in ASCII: a look-alike or invisible character never matches.
        raise ValueError(
            "must be written in ASCII: an international domain name in its xn-- form, "
            "other characters percent-encoded"
        )
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http or https URL such as https://id.example.com")
    _check_port(parts)
    if parts.query or parts.fragment:
        raise ValueError("must not contain a query or a fragment (OpenID Connect Discovery §3)")
    if parts.username is not None or parts.password is not None:
        # It would be published in discovery and written into every emailed link.
        raise ValueError("must not contain a user name or password (OpenID Connect Discovery §3)")
    # Clients compare the issuer byte for byte, so one canonical form: scheme and host in
    # lower case, as browsers and clients write them (RFC 3986 §6.2.2.1), no trailing slash.
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path}".rstrip("/")


def parse_database_url(raw: str) -> str:
    try:
        url = make_url(raw.strip())
    except ArgumentError:
        raise ValueError(
            "is not a database URL (expected e.g. postgresql+psycopg://host/db)"
        ) from None
    except ValueError:  # SQLAlchemy's int() of the port
        raise ValueError(BAD_PORT) from None
    if url.port is not None and not 0 < url.port < 65536:
        raise ValueError(BAD_PORT)
    # First, so that a database we do not serve is named as such: asked for its driver,
    # SQLAlchemy looks a URL without one ("redis://") up among its dialects, and one it has
    # none for stopped the command with a traceback.
    url = async_database_url(url)
    _check_asyncpg_options(url)
    if url.get_backend_name() == "sqlite" and url.query:
        # The server opens the file itself (identity.db.sqlite_inline) and would ignore them,
        # while the migrations' driver read them: a bad value stopped it with a traceback,
        # and uri=true made it look for a file other commands do not.
        raise ValueError(
            f"has the option {next(iter(url.query))!r}, which an SQLite URL does not take; "
            "name the file alone, such as sqlite:////var/lib/identity/identity.db"
        )
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        # Each command, and each server process, would open one of its own, empty.
        raise ValueError(
            "names an in-memory SQLite database, which nothing outlives; name a file, "
            "such as sqlite:////var/lib/identity/identity.db"
        )
    return url.render_as_string(hide_password=False)


# Query options SQLAlchemy's asyncpg dialect takes itself rather than passing them on.
_ASYNCPG_DIALECT_OPTIONS = frozenset({"prepared_statement_cache_size"})


def _check_asyncpg_options(url: URL) -> None:
    """asyncpg takes the URL's query as keyword arguments: one it does not know (libpq's
    sslmode, a typo) raised TypeError at the first connection, a traceback."""
    if url.get_driver_name() != "asyncpg":
        return
    import asyncpg  # only for a URL that names it

    from identity.db import asyncpg_options

    known = _ASYNCPG_DIALECT_OPTIONS | set(inspect.signature(asyncpg.connect).parameters)
    for option in url.query:
        if option not in known:
            hint = (
                "; asyncpg takes ssl=require where libpq takes sslmode" if "ssl" in option else ""
            )
            raise ValueError(f"has the option {option!r}, which asyncpg does not take{hint}")
    asyncpg_options.converted(url.query)


def async_database_url(url: URL) -> URL:
    """The same database through an asyncio driver: we serve with SQLAlchemy's async API."""
    backend = url.get_backend_name()
    # The driver as written: SQLAlchemy's default for a bare "postgresql://" has changed
    # between releases, so a bare URL is made explicit.
    driver = url.drivername.partition("+")[2]
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        if driver in ("psycopg", "asyncpg"):
            return url
        if driver in ("psycopg2", "pg8000", "psycopg2cffi", ""):
            return url.set(drivername="postgresql+psycopg")
        raise ValueError(f"uses the PostgreSQL driver {driver!r}; use psycopg or asyncpg")
    if backend == "postgres":
        # libpq's and many hosts' spelling, which SQLAlchemy no longer takes.
        raise ValueError("starts with postgres://; write postgresql:// for PostgreSQL")
    raise ValueError(f"names the database {backend!r}; only SQLite and PostgreSQL are supported")


def parse_redis_url(raw: str) -> str:
    parts = _split_url(raw)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.netloc or parts.path):
        raise ValueError("must be a redis:// or rediss:// URL such as redis://127.0.0.1:6379/0")
    _check_port(parts)
    # redis-py ignores a path that is not a number and uses database 0 instead.
    database = parts.path.strip("/")
    if parts.scheme != "unix" and database and not (database.isascii() and database.isdigit()):
        raise ValueError("must end with a database number, such as redis://127.0.0.1:6379/0")
    return raw.strip()


def parse_smtp_url(raw: str) -> str:
    parts = _split_url(raw)
    if parts.scheme not in ("smtp", "smtps", "smtp+starttls") or not parts.hostname:
        raise ValueError(
            "must be smtp://host:port, smtp+starttls://host:port or smtps://user:pass@host:port"
        )
    _check_port(parts)
    # Python's mail client sends both as ASCII whatever the login method: with any other
    # character every login fails, and every email stays queued, only once mail is sent.
    if not (unquote(parts.username or "") + unquote(parts.password or "")).isascii():
        raise ValueError("must give its user name and password in ASCII")
    # Plain smtp:// would send the password unencrypted, readable (and, by anyone who can
    # answer for the server, collectable) on the way.
    if parts.scheme == "smtp" and (parts.username or parts.password):
        raise ValueError(
            "would send its password unencrypted; use smtp+starttls:// or smtps:// with a "
            "user name and password"
        )
    return raw.strip()


def parse_networks(raw: str) -> tuple[IpNetwork, ...]:
    networks = []
    for item in raw.split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"has {item.strip()!r}, which is not an IP address or network"
                ) from None
    return tuple(networks)


def parse_log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
    return level


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ValueError("must be true or false")
    return value in ("true", "1", "yes", "on")


def parse_signing_alg(raw: str) -> str:
    alg = raw.strip().upper()
    if alg not in ("RS256", "ES256"):
        raise ValueError("must be RS256 or ES256")
    return alg


# The product name is the issuer of the TOTP enrolment QR code, in which it appears twice,
# percent-encoded (up to 12 bytes a character). Beside the longest email (318 characters,
# 64 of them up to 4 bytes), 51 characters still fit a QR code (version 40, level M,
# 2331 bytes); 52 made segno raise on the enrolment page.
MAX_PRODUCT_NAME = 50


def parse_product_name(raw: str) -> str:
    name = raw.strip()
    if len(name) > MAX_PRODUCT_NAME:
        raise ValueError(f"must be at most {MAX_PRODUCT_NAME} characters")
    # It is in every email's Subject: a line break there would fail every message once
    # queued, never at start-up.
    if breaks_reading(name):
        raise ValueError(REFUSAL)
    return name


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str
    redis_url: str | None = None
    redis_key_prefix: str = "identity:"
    issuer: str = "http://127.0.0.1:8000"
    smtp_url: str | None = None
    mail_outbox: Path | None = None
    mail_from: str = "Identity <no-reply@localhost>"
    product_name: str = "Identity"
    secret_key: str | None = None
    policies_dir: Path = DEFAULT_POLICIES_DIR
    password_policy: Path | None = None
    log_level: str = "INFO"
    max_body_bytes: int = 64 * 1024
    # A client must send its whole request within this many seconds (identity/bounded_http.py).
    request_read_timeout: int = 60
    db_pool_size: int = 10
    # Server processes sharing the Redis, every machine's together: while it is down each
    # counts rate limits alone, allowing its share (rate_limit.py). ``serve`` sets its workers.
    server_processes: int = 1
    trusted_proxies: tuple[IpNetwork, ...] = field(default_factory=tuple)
    signing_alg: str = "RS256"
    access_token_ttl: int = 600
    id_token_ttl: int = 3600
    authorization_code_ttl: int = 60
    refresh_token_ttl: int = 30 * 86400
    session_ttl: int = 12 * 3600
    # A browser session unused this long ends, however long it had left (Keycloak's "SSO
    # Session Idle"): a computer left signed in is signed out of the hosted pages.
    session_idle: int = 30 * 60
    # How often each process rereads the signing keys, so a rotation reaches all of them.
    keys_refresh: int = 30
    # Webhooks may go to http://127.0.0.1 (and other loopback) only when this is on: for
    # development and tests; production subscriptions must use https.
    webhooks_allow_http_loopback: bool = False
    login_max_failures: int = 5
    login_max_failures_per_ip: int = 20
    login_lockout: int = 15 * 60
    reset_token_ttl: int = 30 * 60
    reset_limit_per_email: Rate = Rate(3, 30 * 60)
    reset_limit_per_ip: Rate = Rate(20, 3600)
    reset_limit_global: Rate = Rate(1000, 3600)
    sign_in_limit_per_ip: Rate = Rate(600, 600)
    # How often each process deletes rows that can no longer matter (identity.housekeeping).
    housekeeping_interval: int = 600
    # How long sent (or given-up) emails and webhook deliveries stay for an operator to see.
    sent_retention: int = 86400

    def __post_init__(self) -> None:
        # Anyone can use up an address's reset requests; its owner then relies on the links
        # those requests mailed. A fixed window no longer than a link lives means a refused
        # request always leaves one of them working in the owner's inbox.
        if self.reset_limit_per_email.window > self.reset_token_ttl:
            raise SettingsError(
                PREFIX + "RESET_LIMIT_PER_EMAIL",
                f"must count over no longer than {PREFIX}RESET_TOKEN_TTL "
                f"({self.reset_token_ttl} seconds): once someone else used up an address's "
                "requests, its owner would be left with no working link until the count ends",
            )

    @property
    def session_lifetime(self) -> SessionLifetime:
        return SessionLifetime(self.session_ttl, self.session_idle)

    @property
    def outbox_dir(self) -> Path:
        return self.mail_outbox or self.data_dir / "outbox"

    @property
    def password_policy_path(self) -> Path:
        return self.password_policy or self.policies_dir / "password.toml"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def public_path(self) -> str:
        """The issuer's path (``/auth`` of ``https://host/auth``, else empty): a proxy takes it
        off before a request reaches us, so our own addresses must put it back."""
        return urlsplit(self.issuer).path

    @property
    def https(self) -> bool:
        """Browsers reach us over https: cookies are Secure and answers carry HSTS."""
        return self.issuer.startswith("https://")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from a mapping such as ``os.environ``; raises ``SettingsError``."""

        def read(name: str, parse: Callable[[str], T], default: T) -> T:
            variable = PREFIX + name
            raw = environ.get(variable)
            if raw is None or raw.strip() == "":
                return default
            # Bytes that are not UTF-8 arrive as lone surrogates (PEP 383), which pass every
            # check here and then fail wherever the value is encoded: a page, a token, a key.
            try:
                raw.encode("utf-8")
            except UnicodeEncodeError:
                raise SettingsError(variable, "is not valid UTF-8 text") from None
            try:
                return parse(raw)
            except ValueError as exc:
                raise SettingsError(variable, str(exc)) from None
            except OSError as exc:  # a path's checks: a name too long, a folder we may not enter
                raise SettingsError(
                    variable, f"names a path that cannot be looked up ({exc.strerror})"
                ) from None

        def path(raw: str) -> Path:
            return Path(raw).expanduser()

        def folder(raw: str) -> Path:
            """A folder that is made when first needed, so it need not exist yet."""
            candidate = path(raw)
            if candidate.exists() and not candidate.is_dir():
                raise ValueError(f"names {raw!r}, which is a file, not a folder")
            return candidate

        data_dir = read("DATA_DIR", folder, Path("."))
        default_db = f"sqlite+aiosqlite:///{(data_dir / 'identity.db').resolve()}"

        def existing_file(raw: str) -> Path:
            candidate = path(raw)
            if not candidate.is_file():
                raise ValueError(f"names {raw!r}, which is not a readable file")
            return candidate

        def existing_dir(raw: str) -> Path:
            candidate = path(raw)
            if not candidate.is_dir():
                raise ValueError(f"names {raw!r}, which is not a folder")
            return candidate

        def secret(raw: str) -> str:
            if len(raw.strip()) < 32:
                raise ValueError("must be at least 32 characters of random text")
            return raw.strip()

        return cls(
            data_dir=data_dir,
            database_url=read("DATABASE_URL", parse_database_url, default_db),
            redis_url=read("REDIS_URL", parse_redis_url, None),
            redis_key_prefix=read("REDIS_KEY_PREFIX", str.strip, "identity:"),
            issuer=read("ISSUER", parse_issuer, "http://127.0.0.1:8000"),
            smtp_url=read("SMTP_URL", parse_smtp_url, None),
            mail_outbox=read("MAIL_OUTBOX", folder, None),
            mail_from=read("MAIL_FROM", parse_mail_from, "Identity <no-reply@localhost>"),
            product_name=read("PRODUCT_NAME", parse_product_name, "Identity"),
            secret_key=read("SECRET_KEY", secret, None),
            policies_dir=read("POLICIES_DIR", existing_dir, DEFAULT_POLICIES_DIR),
            password_policy=read("PASSWORD_POLICY", existing_file, None),
            log_level=read("LOG_LEVEL", parse_log_level, "INFO"),
            max_body_bytes=read("MAX_BODY_BYTES", parse_positive_int, 64 * 1024),
            request_read_timeout=read("REQUEST_READ_TIMEOUT", parse_duration, 60),
            db_pool_size=read("DB_POOL_SIZE", parse_positive_int, 10),
            server_processes=read("SERVER_PROCESSES", parse_positive_int, 1),
            trusted_proxies=read("TRUSTED_PROXIES", parse_networks, ()),
            signing_alg=read("SIGNING_ALG", parse_signing_alg, "RS256"),
            access_token_ttl=read("ACCESS_TOKEN_TTL", parse_duration, 600),
            id_token_ttl=read("ID_TOKEN_TTL", parse_duration, 3600),
            authorization_code_ttl=read("AUTHORIZATION_CODE_TTL", parse_duration, 60),
            refresh_token_ttl=read("REFRESH_TOKEN_TTL", parse_duration, 30 * 86400),
            session_ttl=read("SESSION_TTL", parse_duration, 12 * 3600),
            session_idle=read("SESSION_IDLE", parse_duration, 30 * 60),
            keys_refresh=read("KEYS_REFRESH", parse_duration, 30),
            webhooks_allow_http_loopback=read("WEBHOOKS_ALLOW_HTTP_LOOPBACK", parse_bool, False),
            login_max_failures=read("LOGIN_MAX_FAILURES", parse_positive_int, 5),
            login_max_failures_per_ip=read("LOGIN_MAX_FAILURES_PER_IP", parse_positive_int, 20),
            login_lockout=read("LOGIN_LOCKOUT", parse_duration, 15 * 60),
            reset_token_ttl=read("RESET_TOKEN_TTL", parse_duration, 30 * 60),
            reset_limit_per_email=read("RESET_LIMIT_PER_EMAIL", parse_rate, Rate(3, 30 * 60)),
            reset_limit_per_ip=read("RESET_LIMIT_PER_IP", parse_rate, Rate(20, 3600)),
            reset_limit_global=read("RESET_LIMIT_GLOBAL", parse_rate, Rate(1000, 3600)),
            sign_in_limit_per_ip=read("SIGN_IN_LIMIT_PER_IP", parse_rate, Rate(600, 600)),
            housekeeping_interval=read("HOUSEKEEPING_INTERVAL", parse_duration, 600),
            sent_retention=read("SENT_RETENTION", parse_duration, 86400),
        )
