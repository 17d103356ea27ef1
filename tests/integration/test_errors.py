"""Every failure leaves as an RFC 9457 problem with a request id, never a trace."""

from __future__ import annotations

import html
import io
import json
import logging
import re

import httpx
import pytest
from litestar import Litestar, get

from identity import logs
from identity.logs import JsonFormatter
from identity.oauth.interaction import FlowStore
from identity.runtime import Runtime
from identity.store.base import StoreUnavailable
from identity.web.problems import EXCEPTION_HANDLERS
from identity.web.request_context import request_context_middleware
from tests.browser import add_oauth_client, add_user, authorize_params, open_login
from tests.conftest import serving


async def test_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/page")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {"type": "about:blank", "title": "Not Found", "status": 404}
    assert response.headers["x-request-id"]


async def test_a_missing_static_file_is_a_404_that_does_not_quote_the_path(
    client: httpx.AsyncClient,
) -> None:
    """Litestar's static files router says which path it looked for, resolved against our
    folder: the caller's input echoed, and a hint at our files, in every 404 under /static."""
    response = await client.get("/static/%2e%2e/%3Cb%3Eapp.py")
    assert response.status_code == 404
    assert response.json() == {"type": "about:blank", "title": "Not Found", "status": 404}


async def test_wrong_method_is_a_405_problem_naming_the_allowed_ones(
    client: httpx.AsyncClient,
) -> None:
    response = await client.delete("/health/live")
    assert response.status_code == 405
    assert "GET" in response.headers["allow"]
    assert response.json()["status"] == 405


async def test_a_plain_incoming_request_id_is_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": "lb-1234.abc"})
    assert response.headers["x-request-id"] == "lb-1234.abc"


async def test_a_hostile_incoming_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    forged = 'x"\n{"level": "critical"}' + "a" * 200
    response = await client.get("/health/live", headers={"X-Request-ID": forged.replace("\n", " ")})
    assert response.headers["x-request-id"] != forged
    assert len(response.headers["x-request-id"]) == 32


class Boom(Exception):
    pass


@get("/boom", sync_to_thread=False)
def boom() -> None:
    raise Boom("database password is hunter2")


async def test_unhandled_error_is_a_500_problem_logged_with_its_request_id() -> None:
    # The app's own exception handlers and middleware, around a handler that fails.
    app = Litestar([boom], exception_handlers=EXCEPTION_HANDLERS, logging_config=None)  # type: ignore[arg-type]
    app.asgi_handler = request_context_middleware(app.asgi_handler)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        async with serving(app) as client:
            response = await client.get("/boom")
    finally:
        logging.getLogger().removeHandler(handler)
    assert response.status_code == 500
    body = response.json()
    assert body["type"] == "about:blank"
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    request_id = response.headers["x-request-id"]
    assert body["request_id"] == request_id
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    error = next(e for e in entries if e["msg"] == "unhandled error")
    assert error["request_id"] == request_id
    assert "Boom" in error["exc"]


BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


async def test_a_browser_at_an_unknown_address_gets_a_page_in_its_language(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/login/oops", headers=BROWSER | {"Accept-Language": "es"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert 'lang="es"' in response.text
    assert "No hay ninguna página en esta dirección" in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]


async def test_a_browser_using_the_wrong_method_gets_a_page_naming_the_allowed_ones(
    client: httpx.AsyncClient,
) -> None:
    response = await client.put("/login", headers=BROWSER)
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    assert "There is no page at this address" in response.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/logni", 404), ("PUT", "/login", 405), ("DELETE", "/account/security", 405)],
)
async def test_a_browser_s_framework_error_is_a_page_in_its_language_keeping_the_status(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    secret = "?token=hunter2&next=%3Cscript%3E"
    response = await client.request(
        method, path + secret, headers=BROWSER | {"Accept-Language": "es"}
    )
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert 'lang="es"' in response.text
    assert "No hay ninguna página en esta dirección" in response.text
    # Nothing of the request comes back: not its path, not its query.
    assert path not in response.text and "hunter2" not in response.text
    assert "script%3E" not in response.text and "Traceback" not in response.text


ACCOUNT = "/accounts/0b7e6f3c-5f2a-4a53-9d3e-2f1f4c6f8a10"
USER = "4c9d2e1a-7b3f-4e8a-9c6d-1a2b3c4d5e6f"


@pytest.mark.parametrize(
    ("path", "page"),
    [
        ("/account/security/email", "/account/security"),
        ("/account/security/totp", "/account/security"),
        ("/account/security/totp/confirm", "/account/security"),
        (f"{ACCOUNT}/users/invite", f"{ACCOUNT}/users"),
        (f"{ACCOUNT}/users/{USER}/grants", f"{ACCOUNT}/users"),
        (f"{ACCOUNT}/users/invitations/{USER}/resend", f"{ACCOUNT}/users"),
    ],
)
async def test_a_form_address_opened_directly_leads_to_its_page_in_its_language(
    client: httpx.AsyncClient, path: str, page: str
) -> None:
    # From the address bar or a bookmark: the address exists, only for the form's post, and
    # a "no page at this address" left the person to find the page by themselves.
    for method in ("GET", "HEAD"):
        spanish = await client.request(method, f"{path}?ui_locales=es&x=1", headers=BROWSER)
        assert spanish.status_code == 303
        assert spanish.headers["location"] == f"{page}?ui_locales=es"
    plain = await client.get(path, headers=BROWSER)
    assert plain.status_code == 303 and plain.headers["location"] == page


async def test_an_unknown_address_under_a_page_is_still_not_found(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/account/security/oops", "/account/security/totp/oops", f"{ACCOUNT}/users/x"):
        assert (await client.get(path, headers=BROWSER)).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/accounts/not-an-id/users", 404), ("DELETE", "/account/security", 405)],
)
async def test_a_browser_s_framework_error_keeps_the_language_its_link_asked_for(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    # Every hosted page takes ?ui_locales= in its link, over the browser's own preference.
    response = await client.request(
        method, f"{path}?ui_locales=es", headers=BROWSER | {"Accept-Language": "en"}
    )
    assert response.status_code == status
    assert 'lang="es"' in response.text
    assert "No hay ninguna página en esta dirección" in response.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/logni", 404), ("PUT", "/login", 405)],
)
async def test_a_program_s_framework_error_on_a_page_address_is_a_problem(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    for accept in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
        response = await client.request(method, path, headers=accept)
        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == status


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/no-such-thing", 404),
        ("GET", "/token", 405),
        ("GET", "/introspect", 405),
        ("GET", "/revoke", 405),
        ("PUT", "/userinfo", 405),
        ("POST", "/jwks.json", 405),
        ("GET", "/.well-known/no-such-document", 404),
        ("POST", "/metrics", 405),
        ("GET", "/health/no-such-check", 404),
        ("GET", "/schema/openapi.json/x", 404),
        # One segment under /schema, where Litestar answers with an HTML page of its own.
        ("GET", "/schema/swagger", 404),
        ("GET", "/schema/no-such-document", 404),
    ],
)
async def test_machine_endpoints_answer_a_browser_with_a_problem(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    """Whoever calls these is a program, even when the Accept header is a browser's: an
    OAuth library or a monitor reads JSON."""
    response = await client.request(method, path, headers=BROWSER)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_browser_posting_too_much_to_a_page_gets_a_page_saying_so(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    body = {"email": "a@example.com", "password": "x" * (runtime.settings.max_body_bytes + 1)}
    page = await client.post("/login", data=body, headers=BROWSER | {"Accept-Language": "es"})
    assert page.status_code == 413
    assert page.headers["content-type"].startswith("text/html")
    assert "Lo que has enviado es demasiado grande" in page.text
    program = await client.post("/login", data=body)
    assert program.status_code == 413
    assert program.headers["content-type"] == "application/problem+json"


async def test_a_post_failing_before_its_form_is_read_answers_in_the_page_s_language(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A page shown in Spanish because its link asked (ui_locales), not the browser: a post
    refused before its body is read (too large here; the database down alike) can only
    learn the language from the address the form posts to."""
    await add_user(runtime)
    await add_oauth_client(runtime)
    client.headers["Accept-Language"] = "en"
    pages = [
        await open_login(client, authorize_params(ui_locales="es")),
        await client.get("/password/forgot", params={"ui_locales": "es"}),
    ]
    too_much = {"email": "a@example.com", "password": "x" * (runtime.settings.max_body_bytes + 1)}
    for page in pages:
        assert '<html lang="es">' in page.text
        [action] = re.findall(r'<form method="post" action="([^"]+)"', page.text)
        answer = await client.post(html.unescape(action), data=too_much, headers=BROWSER)
        assert answer.status_code == 413
        assert "Lo que has enviado es demasiado grande" in answer.text, action


async def test_an_accept_header_that_does_not_parse_gets_the_problem(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/no/such/page", headers={"Accept": "text/html;q=1e400"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_api_answers_a_browser_with_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/no-such-thing", headers=BROWSER)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_page_whose_store_is_down_says_so_in_a_page(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*_: object) -> None:
        raise StoreUnavailable("connection refused")

    monkeypatch.setattr(FlowStore, "load", down)
    page = await client.get("/login", params={"flow": "f"}, headers=BROWSER)
    assert page.status_code == 503
    assert page.headers["retry-after"] == "5"
    assert "The service is briefly unavailable" in page.text
    # A program asking the same gets the problem document, as before.
    program = await client.get("/login", params={"flow": "f"})
    assert program.status_code == 503
    assert program.headers["content-type"] == "application/problem+json"


async def test_an_unexpected_failure_on_a_page_shows_the_request_id(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(FlowStore, "load", broken)
    page = await client.get("/login", params={"flow": "f"}, headers=BROWSER)
    assert page.status_code == 500
    assert page.headers["content-type"].startswith("text/html")
    assert "secret internals" not in page.text
    assert page.headers["x-request-id"] in page.text


async def test_a_path_with_unicode_line_breaks_stays_on_its_own_log_line(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A log line is one JSON object, and readers that split text into lines the way Python's
    ``splitlines`` or JavaScript do also break at U+2028, U+2029 and U+0085. The path is the
    caller's (percent-decoded), so it could otherwise forge a line of its own."""
    stream = io.StringIO()
    monkeypatch.setattr(logs, "_writer", logs.LineWriter(stream))
    caplog.set_level(logging.INFO, logger=logs.ACCESS_LOGGER)
    forged = '{"level": "error", "msg": "forged"}'
    for separator in ("%E2%80%A8", "%E2%80%A9", "%C2%85"):
        await client.get(f"/x{separator}{forged}")
    logs._writer.flush()  # type: ignore[union-attr]
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    for line in lines:
        entry = json.loads(line)
        assert entry["logger"] == logs.ACCESS_LOGGER
        assert entry["path"].endswith(forged)
