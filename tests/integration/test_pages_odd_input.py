"""Every hosted form and link answers odd values with a page, never a server error.

Each route gets each value in every field it reads, posted as a browser would (with the
CSRF seed cookie a first visit sets, so the check compares rather than stops early) and,
for links, in the query string. Found this way: a non-ASCII CSRF token was a 500 on every
form (hmac.compare_digest refuses non-ASCII text).
"""

from __future__ import annotations

import httpx
import pytest

ODD = [
    "a%00b",  # NUL: PostgreSQL refuses it even in a comparison
    "%ED%A0%80",  # an unpaired surrogate, as UTF-8 would encode one
    "%FF%FE",  # not UTF-8 at all
    "%C3%A9%E2%80%AE",  # é and a right-to-left override
    "x" * 10_000,  # long, but within the body limit (a larger body is a 413)
    "",
]
FORMS = {
    "/login": ["flow", "email", "password", "csrf_token"],
    "/login/second-factor": ["flow", "code", "csrf_token"],
    "/consent": ["flow", "csrf_token", "decision"],
    "/logout": ["post_logout_redirect_uri", "id_token_hint", "state", "csrf_token"],
    "/password/forgot": ["email", "csrf_token", "locale"],
    "/reset-password": ["token", "password", "password_confirm", "csrf_token"],
    "/invitations/accept": ["token", "name", "password", "csrf_token"],
    "/confirm-email": ["token", "csrf_token"],
}
LINKS = {
    "/login": ["flow", "locale"],
    "/logout": ["post_logout_redirect_uri", "id_token_hint", "state", "client_id"],
    "/reset-password": ["token"],
    "/invitations/accept": ["token"],
    "/confirm-email": ["token"],
}


@pytest.mark.parametrize("value", ODD, ids=range(len(ODD)))
@pytest.mark.parametrize("path", FORMS)
async def test_a_form_posted_with_odd_values_gets_a_page(
    client: httpx.AsyncClient, path: str, value: str
) -> None:
    assert (await client.get("/password/forgot")).status_code == 200  # sets the CSRF seed
    body = "&".join(f"{name}={value}" for name in FORMS[path])
    response = await client.post(
        path, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    if response.status_code == 303:
        # A logout post that brought no session cookie is asked again as a GET.
        assert response.headers["location"].startswith(f"{path}?"), response.headers
        response = await client.get(response.headers["location"])
    assert response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("text/html"), response.text


@pytest.mark.parametrize("value", ODD[:-2], ids=range(len(ODD) - 2))
@pytest.mark.parametrize("path", LINKS)
async def test_a_link_with_odd_values_gets_a_page(
    client: httpx.AsyncClient, path: str, value: str
) -> None:
    query = "&".join(f"{name}={value}" for name in LINKS[path])
    response = await client.get(f"{path}?{query}")
    assert response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("text/html"), response.text


@pytest.mark.parametrize("value", ODD[:-2], ids=range(len(ODD) - 2))
async def test_a_static_file_named_with_odd_values_is_not_found(
    client: httpx.AsyncClient, value: str
) -> None:
    for path in (f"/static/{value}", f"/static/{value}.css"):
        response = await client.get(path, headers={"Accept": "text/html"})
        assert response.status_code == 404, response.text
