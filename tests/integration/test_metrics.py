"""/metrics: requests by route template, sign-ins, rate-limit hits, emails and housekeeping's
deletions, for Prometheus.

The metrics live in the process's default registry, shared by every app a test run creates,
so each test compares values before and after what it does.
"""

from __future__ import annotations

import threading

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from identity.accounts.models import PasswordResetToken
from identity.clock import utcnow
from identity.crypto import digest, random_token
from identity.metrics import exposition
from identity.runtime import Runtime
from identity.web import metrics as web_metrics
from tests.browser import add_oauth_client, add_user, authorize_params, open_login, submit_login


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _scraped(client: httpx.AsyncClient) -> dict[tuple[str, frozenset], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_requests_are_counted_by_route_template_not_raw_path(
    client: httpx.AsyncClient,
) -> None:
    template = "/api/v1/users/{user_id}"
    before = _value(
        "identity_http_request_duration_seconds_count", method="GET", route=template, status="401"
    )
    unmatched = _value(
        "identity_http_request_duration_seconds_count",
        method="GET",
        route="unmatched",
        status="404",
    )
    for user_id in ("0b6f0f3e-6f5e-4f1e-9b7a-1f0e6b7c8d9e", "5d1c9a7e-2b3c-4d5e-8f90-a1b2c3d4e5f6"):
        await client.get(f"/api/v1/users/{user_id}")
    await client.get("/no/such/page")
    scraped = await _scraped(client)
    labels = frozenset({"method": "GET", "route": template, "status": "401"}.items())
    assert scraped[("identity_http_request_duration_seconds_count", labels)] == before + 2
    unmatched_labels = frozenset({"method": "GET", "route": "unmatched", "status": "404"}.items())
    assert (
        scraped[("identity_http_request_duration_seconds_count", unmatched_labels)] == unmatched + 1
    )
    # No series names a raw path with an id in it.
    assert not any("5d1c9a7e" in str(labels) for _, labels in scraped)
    # And the same series times them.
    assert (
        scraped[("identity_http_request_duration_seconds_bucket", labels | {("le", "+Inf")})] >= 2
    )


async def test_preflights_answered_before_the_router_are_counted_by_their_route(
    client: httpx.AsyncClient,
) -> None:
    """The CORS middleware answers them without Litestar's router, which names the route."""
    labels = {"method": "OPTIONS", "route": "/token", "status": "204"}
    before = _value("identity_http_request_duration_seconds_count", **labels)

    await client.options(
        "/token",
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
    )

    assert _value("identity_http_request_duration_seconds_count", **labels) == before + 1


async def test_sign_ins_and_their_failures_and_rate_limit_hits_are_counted(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    succeeded = _value("identity_sign_ins_total", result="succeeded")
    failed = _value("identity_sign_ins_total", result="failed")
    throttled = _value("identity_sign_ins_total", result="throttled")
    limited = _value("identity_rate_limit_hits_total", limit="signin-account")
    attempts = runtime.settings.login_max_failures
    for _ in range(attempts):
        page = await open_login(client, authorize_params())
        assert (await submit_login(client, page, password="Wrong-password-1!")).status_code == 400
    page = await open_login(client, authorize_params())
    assert (await submit_login(client, page)).status_code == 429
    assert _value("identity_sign_ins_total", result="failed") == failed + attempts
    assert _value("identity_sign_ins_total", result="throttled") == throttled + 1
    assert _value("identity_rate_limit_hits_total", limit="signin-account") == limited + 1
    assert _value("identity_sign_ins_total", result="succeeded") == succeeded


async def test_rows_deleted_by_housekeeping_are_counted_by_table(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await add_user(runtime)
    now = utcnow()
    async with runtime.db.transaction() as session:
        session.add_all(
            PasswordResetToken(user_id=user.id, token_hash=digest(random_token()), expires_at=now)
            for _ in range(3)
        )
    before = _value("identity_housekeeping_deleted_total", table="password_reset_tokens")

    await runtime.housekeeping.run_once(now)

    scraped = await _scraped(client)
    labels = frozenset({"table": "password_reset_tokens"}.items())
    assert scraped[("identity_housekeeping_deleted_total", labels)] == before + 3


async def test_a_scrape_is_written_off_the_event_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The text takes ~0.3 ms of CPU per series, and several times that summed from the
    workers' files: tens of milliseconds at every scrape, which on the event loop held up
    every request in flight."""
    written_on: list[threading.Thread] = []

    def recorded() -> tuple[bytes, str]:
        written_on.append(threading.current_thread())
        return exposition()

    monkeypatch.setattr(web_metrics, "exposition", recorded)

    await _scraped(client)

    assert len(written_on) == 1
    assert written_on[0] is not threading.main_thread()
