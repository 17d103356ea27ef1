"""The shared store calls of a sign-in, each a Redis round trip (test_store_contract.py holds
the stores to that): the login post's are most of what a sign-in costs beyond argon2."""

from __future__ import annotations

from identity.settings import Settings
from tests.browser import authorize_params, open_login, redirected_to_client, sign_in, submit_login
from tests.integration.page_helpers import SECURITY, served_for_sign_in
from tests.integration.store_helpers import counting_redis_round_trips, counting_store_calls


async def test_a_right_password_makes_seven_store_calls(database: Settings) -> None:
    # The flow read, then taken once the password is right; the attempt counted against the
    # address and the account, then given back; the post marked under way, then its answer
    # kept for the same post again. The flow was taken: ending it with the code is no call.
    async with served_for_sign_in(database) as (http, runtime):
        page = await open_login(http, authorize_params())
        with counting_store_calls(runtime) as calls:
            redirected_to_client(await submit_login(http, page))

    assert calls == ["get", "incr", "incr", "add", "consume", "decr_and_delete", "set"]


async def test_a_hosted_pages_sign_in_ends_its_taken_flow_without_a_call(
    database: Settings,
) -> None:
    async with served_for_sign_in(database) as (http, runtime):
        sent = await http.get(SECURITY)
        assert sent.headers["location"].startswith("/login?flow="), sent.headers
        page = await http.get(sent.headers["location"])
        with counting_store_calls(runtime) as calls:
            back = await submit_login(http, page)

    assert back.headers["location"].startswith(SECURITY + "?"), back.headers
    assert calls == ["get", "incr", "incr", "add", "consume", "decr_and_delete", "set"]


async def test_a_signed_in_browser_gets_its_code_without_a_store_call(
    database: Settings,
) -> None:
    # Answered at once, the request never became a stored flow: nothing to delete.
    async with served_for_sign_in(database) as (http, runtime):
        redirected_to_client(await sign_in(http))
        with counting_store_calls(runtime) as calls, counting_redis_round_trips() as trips:
            answer = await http.get("/authorize", params=authorize_params())

    redirected_to_client(answer)
    assert calls == []
    assert trips == []
