"""Two separate server processes in front of one PostgreSQL and one Redis act as one service.

Behind a load balancer any request may land on any process: a sign-in started on one
finishes on the other, limits count across both, keys and revocations are seen by both.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from identity.keys.service import RELYING_PARTY_REFETCH
from tests.backends import TEST_DATABASE_URL, TEST_REDIS_URL
from tests.browser import PASSWORD, query
from tests.e2e.flows import Client, cli, redeem, setup, start_sign_in, submit_login
from tests.processes import Server, identity_server

pytestmark = [
    pytest.mark.e2e,
    # Waits on caches and key refetches timed across two servers: alone.
    pytest.mark.serial,
    pytest.mark.skipif(
        TEST_DATABASE_URL is None or TEST_REDIS_URL is None,
        reason="scale-out needs the PostgreSQL + Redis pass (.ci/run)",
    ),
]

EMAIL = "scale@example.com"


@pytest.fixture
def cluster(env: dict[str, str]) -> Iterator[tuple[dict[str, str], Server, Server, Client]]:
    # Both processes share the issuer (a load balancer's address) and the secret key; keys
    # are reread every second so the rotation test need not wait the default 30 seconds.
    shared = env | {
        "IDENTITY_KEYS_REFRESH": "1",
        "IDENTITY_LOGIN_MAX_FAILURES": "4",
        "IDENTITY_RESET_LIMIT_PER_IP": "4/hour",
    }
    client = setup(shared, EMAIL, PASSWORD)
    with ExitStack() as stack:
        first = stack.enter_context(identity_server(shared))
        second = stack.enter_context(identity_server(shared))
        yield shared, first, second, client


def test_sign_in_started_on_one_process_finishes_on_the_other(cluster) -> None:  # type: ignore[no-untyped-def]
    _, first, second, client = cluster
    with httpx.Client() as http:
        location, verifier = start_sign_in(http, first.base_url, client.client_id)
        done = submit_login(http, second.base_url, location, EMAIL, PASSWORD)
    assert done.status_code == 303, done.text
    result = query(done.headers["location"])
    tokens = redeem(first.base_url, client, result["code"], verifier)
    assert tokens["token_type"].lower() == "bearer"


def test_failed_sign_ins_count_across_both_processes(cluster) -> None:  # type: ignore[no-untyped-def]
    _, first, second, client = cluster
    with httpx.Client() as http:
        for attempt in range(4):
            server = (first, second)[attempt % 2]
            location, _ = start_sign_in(http, server.base_url, client.client_id)
            refused = submit_login(http, server.base_url, location, EMAIL, "Wrong-password-1!")
            assert "The email or password is incorrect." in refused.text
        # The fifth attempt, even with the right password, is held back on either process.
        for server in (first, second):
            location, _ = start_sign_in(http, server.base_url, client.client_id)
            held = submit_login(http, server.base_url, location, EMAIL, PASSWORD)
            assert "Too many failed sign-in attempts. Please try again later." in held.text


def test_a_refresh_token_revoked_through_one_is_refused_by_the_other(cluster) -> None:  # type: ignore[no-untyped-def]
    _, first, second, client = cluster
    with httpx.Client() as http:
        location, verifier = start_sign_in(http, first.base_url, client.client_id)
        done = submit_login(http, first.base_url, location, EMAIL, PASSWORD)
    tokens = redeem(first.base_url, client, query(done.headers["location"])["code"], verifier)
    auth = client.auth
    revoked = httpx.post(
        f"{first.base_url}/revoke", data={"token": tokens["refresh_token"]}, auth=auth
    )
    assert revoked.status_code == 200
    refused = httpx.post(
        f"{second.base_url}/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=auth,
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


def test_a_rotated_key_is_used_and_published_by_both(cluster) -> None:  # type: ignore[no-untyped-def]
    env, first, second, client = cluster
    new_kid = cli(env, "keys", "rotate")["kid"]
    for server in (first, second):
        deadline = time.monotonic() + 10  # each process rereads its keys every second
        while new_kid not in _published_kids(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert new_kid in _published_kids(server)
    # The new key signs once both have had a refresh interval to publish it, and relying
    # parties RELYING_PARTY_REFETCH to fetch it.
    for server in (first, second):
        deadline = time.monotonic() + 10 + RELYING_PARTY_REFETCH.total_seconds()
        while _id_token_kid(server, client) != new_kid:
            assert time.monotonic() < deadline, f"{server.base_url} does not sign with {new_kid}"
            time.sleep(0.3)


def _id_token_kid(server: Server, client: Client) -> str:
    with httpx.Client() as http:
        location, verifier = start_sign_in(http, server.base_url, client.client_id)
        done = submit_login(http, server.base_url, location, EMAIL, PASSWORD)
    tokens = redeem(server.base_url, client, query(done.headers["location"])["code"], verifier)
    keys = KeySet.import_key_set(httpx.get(f"{server.base_url}/jwks.json").json())
    return str(jwt.decode(tokens["id_token"], keys).header["kid"])


def _published_kids(server: Server) -> set[str]:
    return {key["kid"] for key in httpx.get(f"{server.base_url}/jwks.json").json()["keys"]}


def test_a_forgot_password_limit_is_shared_by_both_processes(cluster) -> None:  # type: ignore[no-untyped-def]
    # The per-client-address limit comes from the cluster's environment: 4 an hour.
    _, first, second, _ = cluster
    statuses = [
        httpx.post(
            f"{(first, second)[attempt % 2].base_url}/api/v1/password/forgot",
            json={"email": f"someone{attempt}@example.com"},
        ).status_code
        for attempt in range(5)
    ]
    assert statuses == [202, 202, 202, 202, 429]
