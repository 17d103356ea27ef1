"""The account-selection rules, as a table: memberships, picked, requested, prompt."""

from __future__ import annotations

import uuid

import pytest
from authlib.oidc.core.errors import AccountSelectionRequiredError

from identity.oauth.account_selection import Selection, select_account

A, B, C = (uuid.UUID(int=n) for n in (1, 2, 3))


@pytest.mark.parametrize(
    ("member_of", "chosen", "requested", "expected"),
    [
        (set(), None, None, Selection(None)),
        (set(), None, str(C), Selection(None)),
        ({A}, None, None, Selection(A)),
        ({A}, None, str(C), Selection(must_pick=True)),
        ({A}, None, "not-a-uuid", Selection(must_pick=True)),
        ({A, B}, None, None, Selection(must_pick=True)),
        ({A, B}, None, str(B), Selection(B)),
        ({A, B}, str(A), str(B), Selection(A)),
        ({A, B}, str(C), None, Selection(must_pick=True)),
        ({A, B}, str(C), str(B), Selection(must_pick=True)),
        ({A}, str(C), None, Selection(must_pick=True)),
        (set(), str(C), None, Selection(None)),
        ({A}, "not-a-uuid", None, Selection(must_pick=True)),
    ],
)
def test_selection(
    member_of: set[uuid.UUID], chosen: str | None, requested: str | None, expected: Selection
) -> None:
    assert (
        select_account(member_of, chosen=chosen, requested=requested, prompt=frozenset())
        == expected
    )


def test_prompt_none_cannot_show_the_picker() -> None:
    with pytest.raises(AccountSelectionRequiredError):
        select_account({A, B}, chosen=None, requested=None, prompt=frozenset({"none"}))
    assert select_account(
        {A, B}, chosen=None, requested=str(A), prompt=frozenset({"none"})
    ) == Selection(A)
    # A pick no longer valid asks again, which prompt=none cannot: never a page.
    with pytest.raises(AccountSelectionRequiredError):
        select_account({A}, chosen=str(C), requested=None, prompt=frozenset({"none"}))


SELECT = frozenset({"select_account"})


@pytest.mark.parametrize(
    ("member_of", "chosen", "requested"),
    [(set(), None, None), ({A}, None, None), ({A, B}, None, str(B))],
)
def test_select_account_asks_until_the_user_chose(
    member_of: set[uuid.UUID], chosen: str | None, requested: str | None
) -> None:
    asked = select_account(member_of, chosen=chosen, requested=requested, prompt=SELECT)
    assert asked == Selection(must_pick=True)


@pytest.mark.parametrize(
    ("member_of", "chosen", "expected"),
    [(set(), None, Selection(None)), ({A}, str(A), Selection(A)), ({A, B}, str(B), Selection(B))],
)
def test_select_account_is_satisfied_once_the_user_chose(
    member_of: set[uuid.UUID], chosen: str | None, expected: Selection
) -> None:
    answered = select_account(
        member_of, chosen=chosen, requested=None, prompt=SELECT, user_chose=True
    )
    assert answered == expected
