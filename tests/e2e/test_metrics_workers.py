"""With ``identity serve --workers 2`` a scrape sees the sum of both workers' counts."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import identity_server

pytestmark = pytest.mark.e2e

DISCOVERY = "/.well-known/openid-configuration"


def _discovery_count(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "identity_http_request_duration_seconds_count"
        and sample.labels["route"] == DISCOVERY
    )


def test_a_scrape_sums_every_worker(env: dict[str, str]) -> None:
    with identity_server(env, "--workers", "2") as server:
        for _ in range(40):
            # A new connection each time, so the workers share the requests between them.
            with httpx.Client() as http:
                assert http.get(server.base_url + DISCOVERY).status_code == 200
        # Whichever worker answers the scrapes, each sees all 40.
        assert {_discovery_count(server.base_url) for _ in range(6)} == {40}
