"""A real server given the same login form twice at the same moment, from two threads (a
double click on a slow connection): one sign-in, and both answers lead the browser to the app
with its cookie, whichever of the two it shows."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.browser import PASSWORD, form_fields
from tests.e2e.flows import REDIRECT_URI, setup, start_sign_in
from tests.processes import identity_server

pytestmark = pytest.mark.e2e

EMAIL = "double@example.com"


def test_a_login_form_posted_twice_at_once_signs_in_once(env: dict[str, str]) -> None:
    client = setup(env, EMAIL, PASSWORD)
    with identity_server(env) as server, httpx.Client() as http:
        location, _ = start_sign_in(http, server.base_url, client.client_id)
        page = http.get(server.base_url + location)
        fields = form_fields(page.text) | {"email": EMAIL, "password": PASSWORD}
        cookies = dict(http.cookies)
        both_ready = threading.Barrier(2)
        answers: list[httpx.Response] = []

        def post() -> None:
            with httpx.Client(cookies=cookies) as browser_tab:
                both_ready.wait()
                answers.append(browser_tab.post(f"{server.base_url}/login", data=fields))

        threads = [threading.Thread(target=post) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    assert len(answers) == 2
    assert all(a.headers.get("location", "").startswith(REDIRECT_URI) for a in answers), [
        (a.status_code, a.headers.get("location")) for a in answers
    ]
    # The first post's session, under the same cookie in both answers.
    (session,) = {a.cookies["identity_session"] for a in answers}
    assert session
