"""identity.web.repeated_posts: what a sign-in post leaves for the same post again is found
only by the same browser, flow and answer, is sealed, and lasts ten seconds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from identity.oauth.authorize import AuthorizationRequest
from identity.oauth.interaction import Flow
from identity.runtime import Runtime
from identity.settings import Settings
from identity.store.memory import MemoryStore
from identity.web import cookies, repeated_posts

CODE = "493817"


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _runtime(clock: _Clock) -> Runtime:
    settings = Settings(data_dir=Path("."), database_url="sqlite+aiosqlite://")
    return cast(
        Runtime, SimpleNamespace(settings=settings, store=MemoryStore(clock), secret_key="s" * 40)
    )


def _post(seed: str | None) -> Any:
    return SimpleNamespace(cookies={cookies.CSRF: seed} if seed else {})


def test_the_key_names_the_browser_the_flow_and_what_was_posted() -> None:
    runtime = _runtime(_Clock())
    key = repeated_posts.key_of(_post("seed"), runtime, "/step", "flow", CODE)
    others = [
        repeated_posts.key_of(_post("other seed"), runtime, "/step", "flow", CODE),
        repeated_posts.key_of(_post("seed"), runtime, "/step", "other flow", CODE),
        repeated_posts.key_of(_post("seed"), runtime, "/step", "flow", "000000"),
        repeated_posts.key_of(_post("seed"), runtime, "/other-step", "flow", CODE),
    ]
    assert key is not None and CODE not in key
    assert key not in others and len(set(others)) == len(others)
    assert repeated_posts.key_of(_post(None), runtime, "/step", "flow", CODE) is None


async def test_the_first_post_is_found_sealed_for_ten_seconds_only() -> None:
    clock = _Clock()
    runtime = _runtime(clock)
    key = repeated_posts.key_of(_post("seed"), runtime, "/consent", "flow", "allow")
    assert key is not None
    flow = Flow(AuthorizationRequest({"client_id": "app", "state": CODE}), user_chose=True)
    await repeated_posts.answered(runtime, key, flow)

    stored = await runtime.store.get(key)
    assert stored is not None and CODE.encode() not in stored and b"app" not in stored
    clock.now += repeated_posts.WINDOW_SECONDS - 1
    first = await repeated_posts.first_post(runtime, key, repeated_posts.Wait())
    assert first is not None and first.session_token is None
    assert (first.flow.id, first.flow.request.get("state"), first.flow.user_chose) == (
        flow.id,
        CODE,
        True,
    )
    clock.now += 1
    assert await repeated_posts.first_post(runtime, key, repeated_posts.Wait()) is None


async def test_a_first_post_given_back_leaves_nothing_to_repeat() -> None:
    runtime = _runtime(_Clock())
    key = repeated_posts.key_of(_post("seed"), runtime, "/login", "flow", "ana@example.com")
    assert key is not None
    await repeated_posts.under_way(runtime, key)
    assert await repeated_posts.recorded(runtime, key)
    await repeated_posts.withdraw(runtime, key)
    assert not await repeated_posts.recorded(runtime, key)
    assert await repeated_posts.first_post(runtime, key, repeated_posts.Wait()) is None


async def test_the_same_post_takes_its_turn_once_the_first_withdraws_not_once_it_answers() -> None:
    runtime = _runtime(_Clock())
    key = repeated_posts.key_of(_post("seed"), runtime, "/login/second-factor", "flow", CODE)
    assert key is not None
    assert await repeated_posts.take_turn(runtime, key, repeated_posts.Wait())

    withdrawn = asyncio.create_task(repeated_posts.take_turn(runtime, key, repeated_posts.Wait()))
    await asyncio.sleep(0)
    assert not withdrawn.done()  # waits for the first post
    await repeated_posts.withdraw(runtime, key)
    assert await withdrawn

    answered = asyncio.create_task(repeated_posts.take_turn(runtime, key, repeated_posts.Wait()))
    await asyncio.sleep(0)
    assert not answered.done()
    await repeated_posts.answered(runtime, key, Flow(AuthorizationRequest({})), "token")
    assert not await answered


async def test_the_session_token_a_sign_in_leaves_is_sealed() -> None:
    runtime = _runtime(_Clock())
    key = repeated_posts.key_of(_post("seed"), runtime, "/login", "flow", "ana@example.com")
    assert key is not None
    token = "session-token-of-the-first-post"
    await repeated_posts.answered(runtime, key, Flow(AuthorizationRequest({})), token)

    stored = await runtime.store.get(key)
    assert stored is not None and token.encode() not in stored
