"""A person signs in through the real pages in Chromium; the client then redeems the code."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.browser import PASSWORD, authorize_params, chromium, pkce_pair, query
from tests.e2e.flows import cli
from tests.processes import free_port, identity_server, serving_in_a_thread

EMAIL = "e2e@example.com"


@contextmanager
def redirect_listener() -> Iterator[tuple[str, list[str]]]:
    """The client's redirect URI: a local HTTP listener that records what reaches it."""
    received: list[str] = []

    class Callback(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"signed in")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Callback)
    with serving_in_a_thread(server):
        yield f"http://127.0.0.1:{server.server_port}/callback", received


@pytest.mark.e2e
def test_sign_in_through_the_login_and_consent_pages_then_redeem_the_code(
    env: dict[str, str],
) -> None:
    # The issuer is the server's own address, which identity_server sets when env has none.
    env = {name: value for name, value in env.items() if name != "IDENTITY_ISSUER"}
    with redirect_listener() as (redirect_uri, received), identity_server(env) as server:
        cli(env, "users", "create", "--email", EMAIL, "--password-stdin", stdin=PASSWORD)
        registered = cli(
            env,
            "clients",
            "create",
            "--name",
            "Portal",
            "--redirect-uri",
            redirect_uri,
            "--scope",
            "openid profile email",
        )
        discovery = httpx.get(f"{server.base_url}/.well-known/openid-configuration").json()
        verifier, challenge = pkce_pair()
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        params = authorize_params(
            client_id=registered["client_id"],
            redirect_uri=redirect_uri,
            scope="openid email",
            state=state,
            nonce=nonce,
            code_challenge=challenge,
        )
        authorize_url = f"{discovery['authorization_endpoint']}?{urlencode(params)}"

        with chromium() as browser:
            page = browser.new_page()
            page.goto(authorize_url)
            assert page.url.startswith(f"{server.base_url}/login?flow=")
            page.fill("input[name=email]", EMAIL)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.base_url}/consent?flow=*")
            assert "Portal" in page.content()
            page.click("button[value=allow]")
            page.wait_for_url(f"{redirect_uri}?*")
            assert page.text_content("body") == "signed in"

        # Chromium also asks the listener for /favicon.ico.
        callbacks = [path for path in received if path.startswith("/callback?")]
        assert len(callbacks) == 1
        result = query(callbacks[0])
        assert result["state"] == state
        assert result["iss"] == discovery["issuer"] == server.base_url
        tokens = httpx.post(
            discovery["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": result["code"],
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            auth=(registered["client_id"], registered["client_secret"]),
        )
        assert tokens.status_code == 200, tokens.text
        body = tokens.json()
        jwks = KeySet.import_key_set(httpx.get(discovery["jwks_uri"]).json())
        claims = jwt.decode(body["id_token"], jwks).claims
        assert claims["iss"] == server.base_url
        assert claims["aud"] == registered["client_id"]
        assert claims["nonce"] == nonce
        assert claims["amr"] == ["pwd"]
        userinfo = httpx.get(
            discovery["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {body['access_token']}"},
        )
        assert userinfo.json()["email"] == EMAIL
