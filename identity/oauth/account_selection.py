"""Which customer account an authorization is for: the ``account_id`` request parameter,
the account picker, ``prompt=select_account`` and the OIDC ``account_selection_required``
error (Core §3.1.2.1, §3.1.2.6).

The decision is pure: the caller looks up the accounts the user belongs to and asks.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass

from authlib.oidc.core.errors import AccountSelectionRequiredError

# The authorization request parameter by which a client pre-selects an account.
PARAMETER = "account_id"


@dataclass(frozen=True, slots=True)
class Selection:
    """The account the code is issued for (None: no account claims), or that the user must
    pick one on the account page first."""

    account_id: uuid.UUID | None = None
    must_pick: bool = False


def _as_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def select_account(
    member_of: Collection[uuid.UUID],
    *,
    chosen: str | None,
    requested: str | None,
    prompt: frozenset[str],
    user_chose: bool = False,
) -> Selection:
    """``chosen`` comes from the picker, ``requested`` from the client's ``account_id``;
    either counts only if the user belongs to that account, checked again on every resume.
    ``user_chose``: during this request the user signed in or answered the picker.

    Raises ``account_selection_required`` when the user must pick but ``prompt=none``.
    """
    if "select_account" in prompt and not user_chose:
        # The client asks that the user choose (who is signed in, which account) even where
        # a session, a single account or its own account_id would decide alone. Never with
        # prompt=none: authorize.check_prompt refuses the pair.
        return Selection(must_pick=True)
    picked = _as_uuid(chosen)
    if picked is not None and picked in member_of:
        return Selection(picked)
    # A pick is the user's answer: one they are no longer in (removed while the page was
    # open, or a form edited by hand) asks again below, never given the client's account or
    # their only other one in its place, which they did not choose.
    candidate = _as_uuid(requested)
    if not chosen and candidate is not None and candidate in member_of:
        return Selection(candidate)
    if not member_of:
        # Nothing to choose from: tokens without account claims (also when an account was
        # requested or picked; the token then names none, which the client can see).
        return Selection(None)
    # A request for an account the user is not in is not silently swapped for another one.
    if len(member_of) == 1 and requested is None and not chosen:
        return Selection(next(iter(member_of)))
    if "none" in prompt:
        raise AccountSelectionRequiredError(description="The user must choose an account.")
    return Selection(must_pick=True)
