"""Hand-made posts to the hosted forms: a field left out, sent twice, empty or oversized.

A browser always sends each field of the page's form once; a post that does not is not the
user's choice, so it is refused with the page's message and changes nothing.
"""

from __future__ import annotations

import httpx
import pytest

from identity.accounts.models import User
from identity.runtime import Runtime
from tests.browser import form_fields
from tests.integration.page_helpers import SECURITY, alert, sign_in_to_security_page
from tests.integration.recovery_helpers import PASSWORD, new_user

ANA = "ana@example.com"
NAME_INVALID = (
    "Use a name of at most 200 characters, without line breaks or text direction controls."
)


@pytest.fixture
async def ana(runtime: Runtime) -> User:
    return await new_user(runtime, ANA, name="Ana")


async def _name_of(runtime: Runtime, user: User) -> str:
    async with runtime.db.transaction() as session:
        found = await session.get(User, user.id)
    assert found is not None
    return found.name


async def test_a_name_form_without_the_name_keeps_the_name(
    client: httpx.AsyncClient, runtime: Runtime, ana: User
) -> None:
    page = await sign_in_to_security_page(client, ANA, PASSWORD)
    fields = {k: v for k, v in form_fields(page.text).items() if k != "name"}
    response = await client.post(f"{SECURITY}/name", data=fields)
    assert response.status_code == 400, response.text
    assert alert(response) == NAME_INVALID
    assert await _name_of(runtime, ana) == "Ana"
