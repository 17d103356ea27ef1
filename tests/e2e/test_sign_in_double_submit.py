"""A real server given the same form twice at the same moment, from two threads (a double
click on a slow connection): the login form signs in once, and both answers lead the browser
to the app with its cookie, whichever of the two it shows; the consent form gives the app one
code, the same in both answers."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.browser import PASSWORD, form_fields, query
from tests.e2e.flows import REDIRECT_URI, Client, cli, redeem, setup, start_sign_in, submit_login
from tests.processes import identity_server

pytestmark = pytest.mark.e2e

EMAIL = "double@example.com"


def _posted_at_once(
    url: str, fields: dict[str, str], cookies: dict[str, str]
) -> list[httpx.Response]:
    """``fields`` posted to ``url`` by two threads released together, with the same cookies."""
    both_ready = threading.Barrier(2)
    answers: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(cookies=cookies) as browser_tab:
            both_ready.wait()
            answers.append(browser_tab.post(url, data=fields))

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


def test_a_login_form_posted_twice_at_once_signs_in_once(env: dict[str, str]) -> None:
    client = setup(env, EMAIL, PASSWORD)
    with identity_server(env) as server, httpx.Client() as http:
        location, _ = start_sign_in(http, server.base_url, client.client_id)
        page = http.get(server.base_url + location)
        fields = form_fields(page.text) | {"email": EMAIL, "password": PASSWORD}
        answers = _posted_at_once(f"{server.base_url}/login", fields, dict(http.cookies))

    assert len(answers) == 2
    assert all(a.headers.get("location", "").startswith(REDIRECT_URI) for a in answers), [
        (a.status_code, a.headers.get("location")) for a in answers
    ]
    # The first post's session, under the same cookie in both answers.
    (session,) = {a.cookies["identity_session"] for a in answers}
    assert session


def test_a_consent_form_posted_twice_at_once_gives_the_app_one_code(env: dict[str, str]) -> None:
    setup(env, EMAIL, PASSWORD)
    shown = cli(
        env,
        "clients", "create", "--name", "Third party",
        "--redirect-uri", REDIRECT_URI, "--scope", "openid email",
    )  # fmt: skip
    client = Client(shown["client_id"], shown["client_secret"])
    with identity_server(env) as server, httpx.Client() as http:
        location, verifier = start_sign_in(http, server.base_url, client.client_id)
        to_consent = submit_login(http, server.base_url, location, EMAIL, PASSWORD)
        page = http.get(server.base_url + to_consent.headers["location"])
        fields = form_fields(page.text) | {"decision": "allow"}
        answers = _posted_at_once(f"{server.base_url}/consent", fields, dict(http.cookies))

        assert len(answers) == 2
        (answer,) = {a.headers.get("location") for a in answers}
        assert answer and answer.startswith(REDIRECT_URI), [a.status_code for a in answers]
        assert redeem(server.base_url, client, query(answer)["code"], verifier)["access_token"]
