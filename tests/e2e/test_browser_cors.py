"""A single-page app on another origin (another port) signs in and then, in Chromium's own
fetch(), reads discovery, exchanges its code as a public client, calls userinfo and revokes;
a page on an origin its client did not register cannot read the answers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page

from tests.browser import PASSWORD, authorize_params, chromium, pkce_pair, query
from tests.e2e.flows import cli
from tests.processes import free_port, identity_server, serving_in_a_thread

EMAIL = "spa@example.com"

# Runs in the app's page: every call a browser app makes, by fetch(), from its own origin.
SPA_SIGN_IN = """async ({issuer, clientId, redirectUri, code, verifier}) => {
  const discovery = await (await fetch(issuer + "/.well-known/openid-configuration")).json();
  const jwks = await (await fetch(discovery.jwks_uri)).json();
  const exchanged = await fetch(discovery.token_endpoint, {
    method: "POST",
    headers: {"Content-Type": "application/x-www-form-urlencoded"},
    body: new URLSearchParams({
      grant_type: "authorization_code", code, redirect_uri: redirectUri,
      code_verifier: verifier, client_id: clientId,
    }),
  });
  const tokens = await exchanged.json();
  const info = await fetch(discovery.userinfo_endpoint, {
    headers: {Authorization: "Bearer " + tokens.access_token},
  });
  const badToken = await fetch(discovery.userinfo_endpoint, {
    headers: {Authorization: "Bearer not.a.token"},
  });
  return {
    issuer: discovery.issuer, keys: jwks.keys.length,
    exchanged: exchanged.status, tokens,
    userinfo: info.status, email: (await info.json()).email,
    badToken: badToken.status, challenge: badToken.headers.get("WWW-Authenticate"),
  };
}"""

# Back on the app's origin: refresh (a refresh token is spent once, so this shows the
# refused attempt spent nothing), then sign out by revoking the new one.
SPA_REFRESH_AND_SIGN_OUT = """async ({issuer, clientId, refreshToken}) => {
  const form = (fields) => ({method: "POST", body: new URLSearchParams(fields)});
  const refresh = (token) => fetch(issuer + "/token", form({
    grant_type: "refresh_token", refresh_token: token, client_id: clientId,
  }));
  const refreshed = await refresh(refreshToken);
  const next = (await refreshed.json()).refresh_token;
  const revoked = await fetch(issuer + "/revoke", form({token: next, client_id: clientId}));
  const afterwards = await refresh(next);
  return {
    refreshed: refreshed.status, revoked: revoked.status,
    afterwards: (await afterwards.json()).error,
  };
}"""

# Runs in a page on an origin the client never registered: fetch() rejects with a TypeError
# when the browser withholds an answer.
FOREIGN_CALLS = """async ({issuer, clientId, accessToken, refreshToken}) => {
  const outcome = async (request) => {
    try { await request; return "read"; } catch (e) { return e.name; }
  };
  return {
    userinfo: await outcome(fetch(issuer + "/userinfo", {
      headers: {Authorization: "Bearer " + accessToken},
    })),
    refresh: await outcome(fetch(issuer + "/token", {
      method: "POST",
      body: new URLSearchParams({
        grant_type: "refresh_token", refresh_token: refreshToken, client_id: clientId,
      }),
    })),
  };
}"""


@contextmanager
def app_origin() -> Iterator[str]:
    """The browser app's own web server: a page at every path, on a port of its own."""

    class App(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(b"<!doctype html><title>App</title><p>app</p>")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), App)
    with serving_in_a_thread(server):
        yield f"http://127.0.0.1:{server.server_port}"


def sign_in(page: Page, authorize_url: str, redirect_uri: str) -> dict[str, str]:
    page.goto(authorize_url)
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{redirect_uri}?*")
    return query(page.url)


@pytest.mark.e2e
def test_a_browser_app_on_another_origin_uses_the_token_side_by_fetch(
    env: dict[str, str],
) -> None:
    env = {name: value for name, value in env.items() if name != "IDENTITY_ISSUER"}
    with app_origin() as origin, identity_server(env) as server:
        redirect_uri = f"{origin}/callback"
        cli(env, "users", "create", "--email", EMAIL, "--password-stdin", stdin=PASSWORD)
        registered = cli(
            env,
            "clients", "create", "--name", "SPA", "--public", "--first-party",
            "--redirect-uri", redirect_uri, "--scope", "openid email",
        )  # fmt: skip
        verifier, challenge = pkce_pair()
        params = authorize_params(
            client_id=registered["client_id"],
            redirect_uri=redirect_uri,
            scope="openid email",
            state="s1",
            nonce=None,
            code_challenge=challenge,
        )
        authorize_url = f"{server.base_url}/authorize?{urlencode(params)}"

        with chromium() as browser:
            page = browser.new_page()
            returned = sign_in(page, authorize_url, redirect_uri)
            # The page the browser landed on is the app's, on the app's origin.
            seen: dict[str, Any] = page.evaluate(
                SPA_SIGN_IN,
                {
                    "issuer": server.base_url,
                    "clientId": registered["client_id"],
                    "redirectUri": redirect_uri,
                    "code": returned["code"],
                    "verifier": verifier,
                },
            )
            tokens = {
                "issuer": server.base_url,
                "clientId": registered["client_id"],
                "accessToken": seen["tokens"]["access_token"],
                "refreshToken": seen["tokens"]["refresh_token"],
            }
            # "localhost" is another origin than "127.0.0.1", though the same server.
            page.goto(origin.replace("127.0.0.1", "localhost") + "/elsewhere")
            foreign = page.evaluate(FOREIGN_CALLS, tokens)
            page.goto(origin + "/signed-in")
            signed_out = page.evaluate(SPA_REFRESH_AND_SIGN_OUT, tokens)

    assert seen["issuer"] == server.base_url
    assert seen["keys"] >= 1
    assert seen["exchanged"] == 200 and seen["tokens"]["token_type"] == "Bearer"
    assert seen["userinfo"] == 200 and seen["email"] == EMAIL
    assert seen["badToken"] == 401
    assert seen["challenge"].startswith('Bearer error="invalid_token"')
    assert foreign == {"userinfo": "TypeError", "refresh": "TypeError"}
    assert signed_out == {"refreshed": 200, "revoked": 200, "afterwards": "invalid_grant"}
