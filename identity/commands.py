"""What the command line does: each operation opens the database, does one thing, closes it."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from alembic.script.revision import ResolutionError
from alembic.util import CommandError as AlembicCommandError
from sqlalchemy import func, make_url, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import User
from identity.audit.service import Actor, readable, record_as
from identity.clock import utcnow
from identity.crypto import DecryptionFailed, Encryptor
from identity.db import migrate as migrations
from identity.db.engine import Database, DatabaseUnavailable, create_engine
from identity.keys.service import create_key, ensure_key, load_keyset, retire_key
from identity.secret_key import SECRET_FILE, resolve_secret_key
from identity.settings import Settings

if TYPE_CHECKING:
    from identity.accounts.password_policy import PasswordPolicy

T = TypeVar("T")
# How a command that changes something prints what it did: called inside the change's
# transaction, so that an output that refuses it (closed, a full disk) rolls the change back
# and a command that exits with an error has changed nothing.
Show = Callable[[dict[str, Any]], None]


class StartupError(Exception):
    """The service cannot start or the command cannot run; ``str()`` says why and what to do."""


def _where(settings: Settings) -> str:
    url = make_url(settings.database_url)
    return (
        str(url.database) if settings.is_sqlite else f"{url.host or 'localhost'}:{url.port or 5432}"
    )


def _first_line(exc: BaseException) -> str:
    """What the driver said, without SQLAlchemy's statement and links below it."""
    reason = getattr(exc, "orig", None) or exc
    return str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__


def _unreachable(settings: Settings, exc: BaseException) -> StartupError:
    # SQLite has no server: a file it cannot write (or open) is this user's rights to it,
    # and to its folder, where SQLite writes its journal.
    advice = (
        "that this user can write to the file and its folder"
        if settings.is_sqlite
        else "that the database server is running"
    )
    return StartupError(
        f"cannot use the database at {_where(settings)} ({_first_line(exc)}); check "
        f"IDENTITY_DATABASE_URL and {advice}."
    )


def _make_folder(folder: Path, what: str, variable: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(
            f"cannot create the {what} {folder} ({exc.strerror}); check {variable}."
        ) from None


def _make_data_dir(settings: Settings) -> None:
    """The embedded database's folder, made before the engine would make it, so that a
    folder that cannot be made is named as such, not as a database out of reach."""
    if settings.is_sqlite:
        _make_folder(settings.data_dir, "data folder", "IDENTITY_DATA_DIR")


def _make_mail_outbox(settings: Settings) -> None:
    """With no SMTP URL every email is written there: a folder that cannot be made failed
    each one, retried to no end, while the server answered as if all were well."""
    if not settings.smtp_url:
        _make_folder(settings.outbox_dir, "mail outbox folder", "IDENTITY_MAIL_OUTBOX")


def _refused_a_statement(exc: DBAPIError) -> bool:
    """The server answered and refused a statement: not a connection problem. Connecting
    (SQLite's pragmas included, which meet a file that is not a database) has none."""
    return exc.statement is not None and not exc.connection_invalidated


def migrate(settings: Settings) -> None:
    _make_data_dir(settings)
    try:
        migrations.upgrade(settings)
    except DBAPIError as exc:
        if _refused_a_statement(exc):
            raise StartupError(
                f"the migration of the database at {_where(settings)} failed "
                f"({_first_line(exc)}); the database refused one of its statements: it may hold "
                "tables no migration made, or its user may lack the rights to create them."
            ) from None
        raise _unreachable(settings, exc) from None
    except (PoolTimeout, OSError) as exc:
        raise _unreachable(settings, exc) from None
    except AlembicCommandError as exc:
        # A release rolled back after a newer one migrated: Alembic cannot place the
        # database's revision among ours.
        if not isinstance(exc.__cause__, ResolutionError):
            raise
        raise _from_newer_version(settings, exc.__cause__.argument) from None


def _from_newer_version(settings: Settings, revision: str) -> StartupError:
    return StartupError(
        f"the database at {_where(settings)} is at migration '{revision}', which this "
        "version does not know: a newer version migrated it; run that version, or restore a "
        "backup from before it."
    )


async def _check_not_newer(settings: Settings, session: AsyncSession) -> None:
    """Refuse a database a newer version migrated (a release rolled back): its tables may
    not have the shape this version reads and writes. ``migrate`` (and so ``serve``) hears
    it from Alembic; every other command asks here before its work."""
    known = migrations.known_revisions()
    for revision in await migrations.database_revisions(session):
        if revision not in known:
            raise _from_newer_version(settings, revision)


# A table or column this version's SQL names is missing (PostgreSQL's SQLSTATEs; SQLite
# says it in words): the database is older than the code, not out of reach.
_MISSING_SCHEMA_SQLSTATES = ("42P01", "42703")
_MISSING_SCHEMA_SQLITE = ("no such table", "no such column")


def _is_missing_schema(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    if getattr(exc.orig, "sqlstate", None) in _MISSING_SCHEMA_SQLSTATES:
        return True
    return str(exc.orig).startswith(_MISSING_SCHEMA_SQLITE)


def _not_migrated(settings: Settings) -> StartupError:
    return StartupError(
        f"the database at {_where(settings)} has no tables yet or is not at the latest "
        "migration; run `identity migrate` first."
    )


def _require_embedded_database(settings: Settings) -> None:
    """The embedded database's file, which only ``migrate`` makes: opening a missing one,
    SQLite makes it empty, and the file left behind looked like a database."""
    if not settings.is_sqlite:
        return
    database = make_url(settings.database_url).database
    if database not in (None, "", ":memory:") and not Path(database).exists():
        raise _not_migrated(settings)


async def _with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    _make_data_dir(settings)
    _require_embedded_database(settings)
    db = Database(create_engine(settings))
    try:
        async with db.transaction() as session:
            await _check_not_newer(settings, session)
            return await work(session)
    except DatabaseUnavailable as exc:
        cause = exc.__cause__ or exc
        if _is_missing_schema(cause):  # SQLite's OperationalError counts as unavailable
            raise _not_migrated(settings) from None
        raise _unreachable(settings, cause) from None
    except DBAPIError as exc:
        if _is_missing_schema(exc):
            raise _not_migrated(settings) from None
        if not _refused_a_statement(exc):
            raise _unreachable(settings, exc) from None
        raise
    finally:
        await db.dispose()


def _command_line_actor() -> Actor:
    """Who runs this command, for the audit log: the login name (the environment's, as
    ``getpass`` reads it: a record of who said they ran it, not proof) and the machine."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry: a bare container
        who = f"uid {os.getuid()}"
    return Actor(command_line=f"{readable(who)}@{readable(socket.gethostname())}")


def _signing_key(kid: str) -> tuple[str, str]:
    return ("signing_key", kid)


def _secret_key(settings: Settings) -> str:
    """The secret key, or a ``StartupError`` naming the file and what to do about it."""
    try:
        return resolve_secret_key(settings)
    except OSError as exc:
        raise StartupError(
            f"cannot read or create the secret key {settings.data_dir / SECRET_FILE} "
            f"({exc.strerror}); check IDENTITY_DATA_DIR or set IDENTITY_SECRET_KEY."
        ) from None
    except ValueError as exc:
        raise StartupError(f"{exc}; restore the key it held, or set IDENTITY_SECRET_KEY.") from None


def _key_encryptor(settings: Settings) -> Encryptor:
    return Encryptor(_secret_key(settings), "signing-keys")


async def _check_keys_open(session: AsyncSession, encryptor: Encryptor) -> None:
    """The stored signing keys open with this secret key: with another one the server would
    answer 500 to every token and JWKS request, and a rotation would add a key beside ones
    nothing can use."""
    try:
        await load_keyset(session, encryptor, utcnow())
    except DecryptionFailed:
        raise StartupError(
            "the signing keys in the database do not open with this secret key; set "
            "IDENTITY_SECRET_KEY (or secret.key in IDENTITY_DATA_DIR) to the one they were "
            "made with."
        ) from None


def load_password_policy(settings: Settings) -> PasswordPolicy:
    """The policy file in force, or a ``StartupError`` naming the file and the key."""
    from identity.accounts.password_policy_file import PolicyFileError, load_policy

    try:
        return load_policy(settings.password_policy_path)
    except PolicyFileError as exc:
        raise StartupError(f"{exc}; fix the password policy file.") from None


def _check_policy_files(settings: Settings) -> None:
    """The password policy, permission catalogue and role templates, read once before the
    workers start: a wrong key then stops ``serve`` with a sentence, where the workers that
    read them again could only fail with a traceback in the log."""
    from identity.permissions.catalogue import CatalogueError, load_policies

    load_password_policy(settings)
    try:
        load_policies(settings.policies_dir)
    except CatalogueError as exc:
        raise StartupError(f"{exc}; fix the policies file.") from None


def prepare(settings: Settings) -> int:
    """Everything ``serve`` needs before it listens; returns how many users exist."""
    _check_policy_files(settings)
    _secret_key(settings)
    _make_mail_outbox(settings)
    migrate(settings)
    encryptor = _key_encryptor(settings)

    async def work(session: AsyncSession) -> int:
        # Checked after ensure_key, which waits for a first key another server may be making:
        # checked before, with no key yet, a server whose secret key differs passed and
        # then served the other's key, which it cannot open.
        await ensure_key(session, encryptor, settings.signing_alg)
        await _check_keys_open(session, encryptor)
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)

    return asyncio.run(_with_session(settings, work))


async def rotate_signing_key(settings: Settings, alg: str, show: Show) -> str:
    encryptor = _key_encryptor(settings)

    async def work(session: AsyncSession) -> str:
        await _check_keys_open(session, encryptor)
        kid = (await create_key(session, encryptor, alg)).kid
        await record_as(
            session,
            _command_line_actor(),
            "signing_key.created",
            account_id=None,
            target=_signing_key(kid),
            new={"alg": alg},
        )
        show({"kid": kid, "alg": alg})
        return kid

    return await _with_session(settings, work)


async def retire_signing_key(settings: Settings, kid: str, show: Show) -> None:
    from identity.errors import InvalidInput

    async def work(session: AsyncSession) -> None:
        await retire_key(session, kid)
        await record_as(
            session,
            _command_line_actor(),
            "signing_key.retired",
            account_id=None,
            target=_signing_key(kid),
        )
        show({"retired": kid})

    try:
        await _with_session(settings, work)
    except InvalidInput as exc:
        raise StartupError(exc.detail) from None


async def create_user(
    settings: Settings, email: str, password: str, name: str, *, is_admin: bool, show: Show
) -> User:
    from identity.accounts.passwords import Passwords
    from identity.accounts.service import create_user as create
    from identity.accounts.service import prepare_user, record_created
    from identity.errors import DomainError, PolicyViolation

    passwords = Passwords.from_policy(load_password_policy(settings), settings.product_name)
    try:
        # Hashed before the database is opened, so no transaction waits for argon2.
        new_user = await prepare_user(passwords, email=email, password=password, name=name)

        async def work(session: AsyncSession) -> User:
            user = await create(session, new_user, is_admin=is_admin)
            await record_created(session, _command_line_actor(), user)
            show({"id": str(user.id), "email": user.email})
            return user

        return await _with_session(settings, work)
    except PolicyViolation as exc:
        reasons = " ".join(reason["messages"]["en"] for reason in exc.extra["reasons"])
        raise StartupError(f"the password was refused by the password policy. {reasons}") from None
    except DomainError as exc:
        raise StartupError(exc.detail) from None


async def create_client(settings: Settings, args: argparse.Namespace, show: Show) -> None:
    """Register the client and ``show`` it, secret included (shown only once)."""
    from identity.clients.service import ClientSpec, register_client
    from identity.errors import InvalidInput

    spec = ClientSpec(
        name=args.name,
        redirect_uris=args.redirect_uris,
        post_logout_redirect_uris=args.post_logout_redirect_uris,
        public=args.public,
        first_party=args.first_party,
        grant_types=args.grant_types or ["authorization_code", "refresh_token"],
        scope=args.scope,
        resources=args.resources,
        require_pkce=not args.no_require_pkce,
    )

    async def work(session: AsyncSession) -> None:
        show(await register_client(session, _command_line_actor(), spec))

    try:
        await _with_session(settings, work)
    except InvalidInput as exc:
        raise StartupError(exc.detail) from None
