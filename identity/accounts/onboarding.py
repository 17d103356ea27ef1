"""Staff create a user for a new customer, who then chooses their own password.

As Keycloak's "create user, then execute actions email: update password" and Ory's
"create identity, then recovery link": staff never know the password, and a billing system
can onboard a customer with two calls (this, then an account with them as owner).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import User
from identity.accounts.service import create_user, passwordless_user, record_created
from identity.audit.service import Actor
from identity.recovery.service import send_welcome_link
from identity.settings import Settings


async def onboard_user(
    session: AsyncSession,
    settings: Settings,
    actor: Actor,
    *,
    email: str,
    name: str,
    is_admin: bool,
    locale: str | None,
    now: datetime,
) -> User:
    """A verified user with no password, audited, and the email with their link queued, all in
    the caller's transaction; call ``runtime.mail.wake()`` after the commit.

    The email is verified as the command line's users are: staff vouch for it, and the link
    proves it again when it is used. Raises ``InvalidInput`` (email, name) or ``Conflict``
    (email taken, whatever its case), each naming the field.
    """
    user = await create_user(
        session, passwordless_user(email=email, name=name), is_admin=is_admin, locale=locale
    )
    await record_created(session, actor, user)
    await send_welcome_link(session, settings, user, now)
    return user
