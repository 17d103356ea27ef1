"""Hand-made posts to the hosted forms: a field left out, sent twice, empty or oversized.

A browser always sends each field of the page's form once; a post that does not is not the
user's choice, so it is refused with the page's message and changes nothing.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from identity.accounts.models import User
from identity.accounts.service import authenticate
from identity.runtime import Runtime
from tests.browser import add_oauth_client, add_user, form_fields, redirected_to_client, sign_in
from tests.integration.account_helpers import add_member, effective, make_account
from tests.integration.oauth_helpers import make_user
from tests.integration.page_helpers import SECURITY, alert, sign_in_to_security_page
from tests.integration.recovery_helpers import NEW_PASSWORD, PASSWORD, new_user
from tests.integration.test_pages_users import Team, sign_in_at, team, users_path

__all__ = ["team"]  # the Users page's fixture

ANA = "ana@example.com"
NAME_INVALID = (
    "Use a name of at most 200 characters, without line breaks or text direction controls."
)

INCOMPLETE = (
    "The form came without some of its fields, or with one twice, so nothing was changed. "
    "Please try again."
)
INCOMPLETE_ES = (
    "El formulario llegó sin alguno de sus campos, o con uno repetido, así que no se ha "
    "cambiado nada. Inténtalo de nuevo."
)


@pytest.fixture
async def ana(runtime: Runtime) -> User:
    return await new_user(runtime, ANA, name="Ana")


async def _name_of(runtime: Runtime, user: User) -> str:
    async with runtime.db.transaction() as session:
        found = await session.get(User, user.id)
    assert found is not None
    return found.name


@pytest.mark.parametrize(
    "decision", [{}, {"decision": ""}, {"decision": ["allow", "deny"]}, {"decision": "maybe"}]
)
async def test_a_consent_without_a_decision_asks_again(
    client: httpx.AsyncClient, runtime: Runtime, decision: dict[str, Any]
) -> None:
    await add_user(runtime)
    await add_oauth_client(runtime)
    signed_in = await sign_in(client)
    page = await client.get(signed_in.headers["location"])
    fields = form_fields(page.text)
    undecided = await client.post("/consent", data=fields | decision)
    assert undecided.status_code == 400, undecided.text
    assert alert(undecided) == INCOMPLETE
    spanish = await client.post(
        "/consent", data=fields | decision, headers={"Accept-Language": "es"}
    )
    assert alert(spanish) == INCOMPLETE_ES
    # The sign-in goes on: the page asked again, its Allow still works.
    allowed = await client.post("/consent", data=fields | {"decision": "allow"})
    assert "code" in redirected_to_client(allowed)


@pytest.mark.parametrize("choice", [{}, {"account_id": ["", ""]}])
async def test_the_account_picker_without_a_choice_asks_again(
    client: httpx.AsyncClient, runtime: Runtime, choice: dict[str, Any]
) -> None:
    await add_oauth_client(runtime, first_party=True)
    ana = await add_user(runtime)
    acme = await make_account(runtime, ana, "Acme")
    await add_member(runtime, await make_account(runtime, await make_user(runtime), "Globex"), ana)
    picker = await client.get((await sign_in(client)).headers["location"])
    fields = form_fields(picker.text)
    unchosen = await client.post("/login/account", data=fields | choice)
    assert unchosen.status_code == 400, unchosen.text
    assert alert(unchosen) == INCOMPLETE
    chosen = await client.post("/login/account", data=fields | {"account_id": str(acme.id)})
    assert "code" in redirected_to_client(chosen)


async def test_a_name_form_without_the_name_keeps_the_name(
    client: httpx.AsyncClient, runtime: Runtime, ana: User
) -> None:
    page = await sign_in_to_security_page(client, ANA, PASSWORD)
    fields = {k: v for k, v in form_fields(page.text).items() if k != "name"}
    response = await client.post(f"{SECURITY}/name", data=fields)
    assert response.status_code == 400, response.text
    assert alert(response) == NAME_INVALID
    assert await _name_of(runtime, ana) == "Ana"


async def test_a_field_sent_twice_is_refused_as_one_left_out(
    client: httpx.AsyncClient, runtime: Runtime, ana: User
) -> None:
    page = await sign_in_to_security_page(client, ANA, PASSWORD)
    fields = form_fields(page.text)
    renamed = await client.post(f"{SECURITY}/name", data=fields | {"name": ["Mallory", "Eve"]})
    assert renamed.status_code == 400, renamed.text
    assert alert(renamed) == NAME_INVALID
    assert await _name_of(runtime, ana) == "Ana"
    twice = {"password": [NEW_PASSWORD, "another, not typed twice"]}
    changed = await client.post(
        f"{SECURITY}/password",
        data=fields | {"current_password": PASSWORD, "password_confirm": NEW_PASSWORD} | twice,
    )
    assert changed.status_code == 400, changed.text
    assert await authenticate(runtime.db, runtime.passwords, ANA, PASSWORD) is not None


async def test_the_all_permissions_box_sent_twice_changes_no_grants(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    csrf = await sign_in_at(client, users_path(team.account), "owner@example.com")
    for twice in (["yes", "no"], ["no", "yes"]):
        refused = await client.post(
            f"{users_path(team.account)}/{team.target.id}/grants",
            data=csrf | {"all_permissions": twice, "permission": "invoices"},
        )
        assert refused.status_code == 422, refused.text
        assert "Choose permissions and roles from the lists on this page." in refused.text
    assert await effective(runtime, team.target, team.account) == {"invoices"}
