"""An issuer with a path (``https://host/auth``), served behind a proxy that takes the path
off: every link, form and redirect of the pages stays under that path."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from litestar.types import ASGIApp, Receive, Scope, Send

from identity.app import create_app
from identity.runtime import Runtime
from identity.settings import Settings
from tests.browser import EMAIL, PASSWORD, add_oauth_client, add_user, authorize_params, form_fields
from tests.conftest import add_signing_key, lifespan
from tests.integration.page_helpers import mail_to

ORIGIN = "http://testserver.local"
PREFIX = "/auth"
# Every address a page names for the browser to follow, fetch or post to.
_LOCAL_ADDRESS = re.compile(r'(?:href|action|src|data-api)="(/[^"]*)"')


def _stripping_proxy(app: ASGIApp) -> ASGIApp:
    """What a reverse proxy publishing the service under PREFIX hands it."""

    async def proxy(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            assert scope["path"].startswith(f"{PREFIX}/"), scope["path"]
            scope = {**scope, "path": scope["path"][len(PREFIX) :], "raw_path": None}
        await app(scope, receive, send)

    return proxy


@pytest.fixture
async def served(database: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    app = create_app(dataclasses.replace(database, issuer=f"{ORIGIN}{PREFIX}"))
    transport = httpx.ASGITransport(app=_stripping_proxy(app), client=("127.0.0.1", 50000))
    async with lifespan(app), httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
        runtime: Runtime = app.state.runtime
        await add_signing_key(runtime)
        await add_user(runtime)
        await add_oauth_client(runtime, first_party=True)
        yield http, runtime


def _under_prefix(response: httpx.Response) -> httpx.Response:
    addresses = _LOCAL_ADDRESS.findall(response.text)
    location = response.headers.get("location", "")
    if location.startswith("/"):
        addresses.append(location)
    outside = [a for a in addresses if not a.startswith(f"{PREFIX}/")]
    assert not outside, outside
    return response


async def _follow(http: httpx.AsyncClient, response: httpx.Response) -> httpx.Response:
    assert response.status_code in (302, 303), response.text
    return _under_prefix(await http.get(_under_prefix(response).headers["location"]))


def _action(page: httpx.Response) -> str:
    match = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1).replace("&amp;", "&")


async def test_sign_in_and_the_security_page_stay_under_the_issuer_path(
    served: tuple[httpx.AsyncClient, Runtime],
) -> None:
    http, _ = served
    authorize = await http.get(f"{PREFIX}/authorize", params=authorize_params(ui_locales="es"))
    login = await _follow(http, authorize)
    assert login.status_code == 200, login.text
    fields = form_fields(login.text) | {"email": EMAIL, "password": PASSWORD}
    signed_in = await http.post(_action(login), data=fields)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"].startswith("https://app.example/callback?code=")

    security = _under_prefix(await http.get(f"{PREFIX}/account/security"))
    assert security.status_code == 200, security.text
    assert f'href="{PREFIX}/static/identity.css"' in security.text
    logout = _under_prefix(await http.get(f"{PREFIX}/logout"))
    signed_out = await http.post(_action(logout), data=form_fields(logout.text))
    assert signed_out.status_code == 200, signed_out.text

    # Signed out, the security page sends the browser to sign in under the path too.
    asked = await _follow(http, await http.get(f"{PREFIX}/account/security"))
    assert asked.status_code == 200


async def test_the_emailed_reset_link_opens_a_page_whose_form_stays_under_the_path(
    served: tuple[httpx.AsyncClient, Runtime],
) -> None:
    http, runtime = served
    forgot = _under_prefix(await http.get(f"{PREFIX}/password/forgot"))
    asked = await http.post(_action(forgot), data=form_fields(forgot.text) | {"email": EMAIL})
    _under_prefix(asked)
    (message,) = await mail_to(runtime, EMAIL)
    link = re.search(rf"{ORIGIN}{PREFIX}/reset-password\?\S+", message.text_body)
    assert link, message.text_body
    reset = _under_prefix(await http.get(link.group(0)))
    assert reset.status_code == 200, reset.text
    # The password fields' script, and the API it calls, are the service's too.
    assert f'src="{PREFIX}/static/password.js"' in reset.text
    assert f'data-api="{PREFIX}/api/v1/password"' in reset.text


async def test_the_openapi_document_names_the_api_under_the_path(
    served: tuple[httpx.AsyncClient, Runtime],
) -> None:
    # A client generated from the document, or a tool such as Schemathesis, calls the server
    # it names, relative to where the document was fetched: "/" left the service.
    http, _ = served
    document = (await http.get(f"{PREFIX}/schema/openapi.json")).json()
    assert document["servers"] == [{"url": PREFIX}]
