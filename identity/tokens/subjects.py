"""The person a token speaks for, as the token endpoints and userinfo read them."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import User


async def active_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user, or None when deleted or disabled: their tokens stop working at once."""
    user = await session.get(User, user_id)
    return None if user is None or user.disabled else user
