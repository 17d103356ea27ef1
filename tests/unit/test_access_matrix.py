"""The authorization matrix as data: the rules the README states, checked cell by cell."""

from __future__ import annotations

import uuid

import pytest

from identity.errors import Forbidden
from identity.permissions.access import (
    MATRIX,
    Action,
    Caller,
    Relation,
    allowed,
    check_manager_edit,
    removal,
)
from identity.permissions.models import Membership

STAFF_ONLY = {
    Action.ACCOUNT_CREATE,
    Action.ACCOUNT_LIST_ALL,
    Action.MEMBER_ADD,
    Action.TEMPLATE_WRITE,
    Action.PERMISSION_REGISTER,
    Action.USER_READ,
    Action.USER_WRITE,
    Action.AUDIT_READ_ALL,
    Action.CLIENT_MANAGE,
}


def test_every_action_has_a_row() -> None:
    assert set(MATRIX) == set(Action)


@pytest.mark.parametrize("action", sorted(STAFF_ONLY))
def test_staff_only_actions_admit_nobody_else(action: Action) -> None:
    assert MATRIX[action] == {Relation.STAFF}


@pytest.mark.parametrize("action", sorted(set(Action) - {Action.OWNERSHIP_HAND_OVER}))
def test_staff_may_do_everything_except_hand_over_an_ownership_they_lack(action: Action) -> None:
    assert allowed(action, Relation.STAFF)


@pytest.mark.parametrize("action", list(Action))
def test_a_plain_member_may_only_read_the_account_itself_and_leave_it(action: Action) -> None:
    assert allowed(action, Relation.MEMBER) == (
        action in {Action.ACCOUNT_READ, Action.MEMBER_LEAVE}
    )


@pytest.mark.parametrize(
    "action",
    [a for a in Action if MATRIX[a] & {Relation.OWNER, Relation.MANAGER, Relation.MEMBER}],
)
def test_nobody_outside_an_account_acts_on_it(action: Action) -> None:
    assert not allowed(action, Relation.OTHER_USER)
    assert not allowed(action, Relation.SERVICE)


def test_managers_manage_members_invitations_and_roles_but_not_owners_or_the_log() -> None:
    manager = {a for a in Action if allowed(a, Relation.MANAGER)}
    assert manager == {
        Action.ACCOUNT_READ,
        Action.MEMBER_READ,
        Action.MEMBER_GRANTS,
        Action.MEMBER_REMOVE,
        Action.MEMBER_LEAVE,
        Action.INVITATION_READ,
        Action.INVITATION_WRITE,
        Action.ACCOUNT_ROLE_READ,
        Action.ACCOUNT_ROLE_WRITE,
    }


def test_owners_add_ownership_and_the_accounts_audit_log_to_what_managers_do() -> None:
    owner = {a for a in Action if allowed(a, Relation.OWNER)}
    manager = {a for a in Action if allowed(a, Relation.MANAGER)}
    assert owner - manager == {
        Action.ACCOUNT_RENAME,
        Action.OWNERSHIP_CHANGE,
        Action.OWNERSHIP_HAND_OVER,
        Action.ACCOUNT_AUDIT_READ,
    }


def test_services_may_only_ask_for_decisions_and_read_the_catalogue() -> None:
    assert {a for a in Action if allowed(a, Relation.SERVICE)} == {
        Action.AUTHZ_CHECK,
        Action.PERMISSION_READ,
    }


def _membership(owner: bool) -> Membership:
    return Membership(account_id=uuid.uuid4(), user_id=uuid.uuid4(), is_owner=owner)


def test_a_manager_cannot_change_an_owner_nor_grant_everything() -> None:
    with pytest.raises(Forbidden):
        check_manager_edit(Relation.MANAGER, _membership(owner=True))
    with pytest.raises(Forbidden):
        check_manager_edit(Relation.MANAGER, _membership(owner=False), all_permissions=True)
    check_manager_edit(Relation.MANAGER, _membership(owner=False), all_permissions=False)
    check_manager_edit(Relation.OWNER, _membership(owner=True), all_permissions=True)


def test_taking_oneself_out_is_leaving_and_anyone_else_a_removal() -> None:
    me, someone = uuid.uuid4(), uuid.uuid4()
    member = Caller(me, "app", is_staff=False, is_service=False)
    service = Caller(None, "billing", is_staff=False, is_service=True)
    assert removal(member, me) is Action.MEMBER_LEAVE
    assert removal(member, someone) is Action.MEMBER_REMOVE
    assert removal(service, someone) is Action.MEMBER_REMOVE
