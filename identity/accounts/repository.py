"""All SQL for users and their password credentials."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, false, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import PasswordCredential, User
from identity.clock import utcnow
from identity.db.engine import Database
from identity.db.row_locks import lock_rows


class EmailTaken(Exception):
    """Another user holds the email (the unique index said so, perhaps after a race)."""


async def email_exists(session: AsyncSession, email: str) -> bool:
    found = await session.scalar(select(User.id).where(User.email == email))
    return found is not None


async def user_with_password(
    session: AsyncSession, email: str
) -> tuple[User, PasswordCredential | None] | None:
    row = (
        await session.execute(
            select(User, PasswordCredential)
            .outerjoin(PasswordCredential, PasswordCredential.user_id == User.id)
            .where(User.email == email)
        )
    ).first()
    return (row[0], row[1]) if row else None


# Built once, and only the columns a sign-in needs: asked on every login, where building
# the statement and loading two whole entities cost more than running it.
_SIGN_IN_CREDENTIALS = (
    select(User.id, User.disabled, PasswordCredential.hash, PasswordCredential.changed_at)
    .outerjoin(PasswordCredential, PasswordCredential.user_id == User.id)
    .where(User.email == bindparam("email"))
)


async def sign_in_credentials(
    db: Database, email: str
) -> tuple[uuid.UUID, bool, str | None, datetime | None] | None:
    """(id, disabled, stored hash or None, when that password was set) of the user with this
    normalised email, or None; a lone read (``Database.first``), since a sign-in reads
    nothing else before argon2."""
    row = await db.first(_SIGN_IN_CREDENTIALS, {"email": email})
    return None if row is None else (row[0], row[1], row[2], row[3])


async def insert_user(session: AsyncSession, user: User, password_hash: str | None) -> None:
    """Store ``user``, with a password unless ``password_hash`` is None (the user then signs
    in only once they have chosen one by an emailed link)."""
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        # The caller's transaction is now unusable: it must end (rolled back) with this error.
        raise EmailTaken from None
    if password_hash is not None:
        session.add(PasswordCredential(user_id=user.id, hash=password_hash, changed_at=utcnow()))
        await session.flush()


@dataclass(frozen=True, slots=True)
class StoredPassword:
    hash: str
    # When this password was set (its changed_at): what proving it allowed ends with a
    # later change (see ``check_password_unchanged_since``).
    set_at: datetime


async def stored_password(session: AsyncSession, user_id: uuid.UUID) -> StoredPassword | None:
    """The user's password as stored; None for a user without one."""
    row = (
        await session.execute(
            select(PasswordCredential.hash, PasswordCredential.changed_at).where(
                PasswordCredential.user_id == user_id
            )
        )
    ).first()
    return StoredPassword(row[0], row[1]) if row else None


class PasswordChanged(Exception):
    """The password a sign-in proved has been replaced, or the user disabled, since."""


async def check_password_unchanged_since(
    session: AsyncSession, user_id: uuid.UUID, since: datetime
) -> None:
    """Raise ``PasswordChanged`` unless the user is enabled and their password is still the
    one set at ``since``; it then stays so until the caller's transaction ends.

    ``since`` is the ``changed_at`` the sign-in read with the hash it verified
    (``Authenticated.password_set_at``), not a clock read of its own: a change stamps its
    ``changed_at`` before it commits, so a sign-in that read the old hash in between would
    have a later clock time and pass, its session outliving the change. It is matched
    exactly, not as "no later change": a change stamped by a server whose clock is behind
    the one that set the proved password has an earlier ``changed_at``, and is another
    password all the same.

    A sign-in proves the password with no transaction open, then opens its session: a
    change, reset or disable (each ends every session) committing in between would miss
    that session, which would outlive it. Call this after the transaction's first write
    (the session's INSERT): on SQLite that write took the one write lock (Python's sqlite3
    begins a transaction only there), so nothing else commits before this one does; on
    PostgreSQL both rows are share-locked, so a change in progress is waited for and then
    seen, and one that starts later waits for the caller.
    """
    found = await session.scalar(_UNCHANGED_SINCE, {"user_id": user_id, "since": since})
    if found is None:
        raise PasswordChanged


# Built once: asked on every sign-in.
_UNCHANGED_SINCE = (
    select(PasswordCredential.user_id)
    .join(User, User.id == PasswordCredential.user_id)
    .where(
        PasswordCredential.user_id == bindparam("user_id"),
        PasswordCredential.changed_at == bindparam("since"),
        User.disabled.is_(False),
    )
    .with_for_update(read=True)
)


async def replace_password(
    session: AsyncSession, user_id: uuid.UUID, new_hash: str, *, set_at: datetime | None
) -> bool:
    """A new password (a new hash and a new ``changed_at``), stored only if the password is
    still the one set at ``set_at`` (its ``changed_at``, matched exactly as in
    ``check_password_unchanged_since``), or, for None, the user still has none; otherwise
    nothing is stored and the answer is False.

    The condition sits in the UPDATE itself, like ``swap_hash``'s: checked in a read before
    the write, it would let a change committed in between (READ COMMITTED) be overwritten,
    whereas PostgreSQL evaluates an UPDATE's condition on the newest committed row, after
    waiting for any writer that holds it. That is simpler than a locking read before the
    check, and holds no lock longer than the write's own. The condition is on
    ``changed_at``, not on the hash as in ``swap_hash``: a rehash at sign-in (the same
    password under new parameters) keeps ``changed_at`` and must not end the caller's claim.
    """
    result = await session.execute(
        update(PasswordCredential)
        .where(
            PasswordCredential.user_id == user_id,
            PasswordCredential.changed_at == set_at,
        )
        .values(hash=new_hash, changed_at=utcnow())
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        return True
    if set_at is not None or await stored_password(session, user_id) is not None:
        return False
    # A user without a password gets their first one, unless another first one (a second
    # link used at the same time) is stored meanwhile: on PostgreSQL this insert waits for
    # it and then adds nothing, where a plain insert broke the primary key.
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stored = await session.scalar(
        dialect.insert(PasswordCredential)
        .values(user_id=user_id, hash=new_hash, changed_at=utcnow())
        .on_conflict_do_nothing(index_elements=["user_id"])
        .returning(PasswordCredential.user_id)
    )
    return stored is not None


async def swap_hash(
    session: AsyncSession, user_id: uuid.UUID, old_hash: str, new_hash: str, *, new_password: bool
) -> bool:
    """Store ``new_hash`` only if the stored hash is still ``old_hash``, the one verified
    before the caller's transaction began: a password changed meanwhile by another request
    is left alone, and the answer is False.

    A new password gets a new ``changed_at``, which ends the reset tokens issued before it;
    the same password under new parameters (a rehash) keeps its ``changed_at``.
    """
    values: dict[str, object] = {"hash": new_hash}
    if new_password:
        values["changed_at"] = utcnow()
    result = await session.execute(
        update(PasswordCredential)
        .where(PasswordCredential.user_id == user_id, PasswordCredential.hash == old_hash)
        .values(values)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def set_disabled(session: AsyncSession, user_id: uuid.UUID, disabled: bool) -> bool:
    """Mark the user disabled (or enabled) unless they are already; True if this call changed
    the row.

    Conditional, so that of two disables at once only one goes on to revoke, audit and tell
    consumers: the other waits for its row lock, then finds nothing left to change. A
    disable ends the user's pending email change links for good (``email_change_epoch``,
    which an enable does not lower).
    """
    result = await session.execute(
        update(User)
        .where(User.id == user_id, User.disabled.is_not(disabled))
        .values(disabled=disabled, email_change_epoch=User.email_change_epoch + int(disabled))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def hold_user(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Share-lock the user's row until the caller's transaction ends (PostgreSQL): a change to
    it in progress, such as staff disabling the user, is waited for, and one that starts later
    waits for the caller, so what the caller then reads of the user holds until it commits.
    SQLite takes no row locks and needs none once the caller has written: its one writer at a
    time shuts every other writer out until the commit. Whether the user exists and is not
    disabled, as committed when the lock was taken."""
    disabled = await session.scalar(
        select(User.disabled).where(User.id == user_id).with_for_update(read=True)
    )
    return disabled is False


async def lock_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Take the user's row before a change that reads what it changes, so that two such
    changes of one user run one at a time and the later one sees what the earlier left.

    A change of the sign-in email: two at once (staff twice, or staff and the user's own
    confirmation link) each read the address before the other had replaced it, the audit
    log recorded both as moves away from the first address, and the address in between was
    never told it was left. Ending the user's other sessions: two browsers at once each held
    their own session's row and waited for the other's (``sessions.revocation``).
    A no-op write, exclusive where ``hold_user``'s share lock is not (two share locks, then
    two writes, would deadlock): the row lock on PostgreSQL, not ``FOR UPDATE`` (the email is
    set to itself, no key changes), so inserts of rows that refer to the user go on; the
    write lock on SQLite.
    """
    await lock_rows(session, User.email, User.id == user_id)


async def hold_administrator(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Hold the acting administrator's own row until the caller's transaction ends; whether
    they are still an enabled administrator, as committed when it was taken.

    PostgreSQL: ``FOR KEY SHARE``, which other holds and the updates that touch no key
    (``set_disabled``, a rename) do not wait for, so administrators'
    requests do not queue behind each other through it. A demotion or a
    disable takes its target ``FOR UPDATE`` (``hold_for_demotion``), which does: it waits for
    the administrator's change in progress, and a hold that comes later waits for it and
    reads what it left. SQLite: the one write lock first (a no-op write of the row), so the
    flag is read as last committed and no other writer changes it until the caller commits.
    """
    if session.get_bind().dialect.name == "sqlite":
        await lock_rows(session, User.is_admin, User.id == user_id)
    found = await session.scalar(
        select(User.is_admin)
        .where(User.id == user_id, User.disabled.is_(False))
        # read=True: key_share alone is FOR NO KEY UPDATE, an exclusive lock.
        .with_for_update(read=True, key_share=True)
    )
    return found is True


async def hold_for_demotion(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user as committed, locked ``FOR UPDATE`` until the caller's transaction ends: a
    demotion or a disable waits for the user's staff change in progress
    (``hold_administrator``), and their next one waits for it."""
    return await session.get(User, user_id, populate_existing=True, with_for_update=True)


# The key of the PostgreSQL advisory lock below; any constant no other lock uses.
_ADMINISTRATORS_LOCK = 0x61646D6E  # "admn"


async def lock_administrators(session: AsyncSession) -> None:
    """Serialise changes that may take away the last administrator (demotions and disables),
    until the transaction ends, as ``lock_account`` does for an account's last owner: a
    second one waits for the first to commit and then counts what it left.

    PostgreSQL: an advisory lock, not the administrators' rows. A demotion goes on to wait
    for its target's staff change in progress (``hold_for_demotion``); holding every
    administrator's row meanwhile, it made an administrator's member change, which
    share-locks its own row (``hold_user``) while holding the account, wait for it, and a
    staff change waiting for that account closed the circle: a deadlock. SQLite: a no-op
    write, which takes the one write lock before anything is counted.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(_ADMINISTRATORS_LOCK)))
    else:
        await lock_rows(session, User.is_admin, false())


async def count_active_administrators(session: AsyncSession) -> int:
    """Administrators who can still sign in: a disabled one administers nothing."""
    found = await session.scalar(
        select(func.count()).where(User.is_admin.is_(True), User.disabled.is_(False))
    )
    return int(found or 0)
