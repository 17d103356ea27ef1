"""Protocol walks against a real ``identity serve``, shared by the log, fault and fuzz tests."""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from tests.browser import authorize_params, form_fields, pkce_pair, query
from tests.processes import run_identity

REDIRECT_URI = "https://app.example/callback"


@dataclass(frozen=True)
class Client:
    client_id: str
    client_secret: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.client_id, self.client_secret)


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> dict[str, str]:
    result = run_identity(*args, env=env, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def setup(env: dict[str, str], email: str, password: str, *extra_client_args: str) -> Client:
    """Migrate, create one user and one confidential first-party client."""
    assert run_identity("migrate", env=env).returncode == 0
    cli(env, "users", "create", "--email", email, "--password-stdin", stdin=password)
    shown = cli(
        env,
        "clients", "create", "--name", "Portal", "--first-party",
        "--redirect-uri", REDIRECT_URI, "--scope", "openid email",
        *extra_client_args,
    )  # fmt: skip
    return Client(shown["client_id"], shown["client_secret"])


def start_sign_in(http: httpx.Client, base_url: str, client_id: str) -> tuple[str, str]:
    """GET /authorize; returns the login page's location and the PKCE verifier."""
    verifier, challenge = pkce_pair()
    started = http.get(
        f"{base_url}/authorize",
        params=authorize_params(
            client_id=client_id,
            redirect_uri=REDIRECT_URI,
            scope="openid email",
            state="s1",
            nonce=None,
            code_challenge=challenge,
        ),
    )
    assert started.status_code == 303, started.text
    return started.headers["location"], verifier


def submit_login(
    http: httpx.Client, base_url: str, location: str, email: str, password: str
) -> httpx.Response:
    page = http.get(base_url + location)
    assert page.status_code == 200, page.text
    fields = form_fields(page.text) | {"email": email, "password": password}
    return http.post(f"{base_url}/login", data=fields)


def sign_in(base_url: str, client: Client, email: str, password: str) -> tuple[str, str]:
    """A whole browser sign-in up to the redirect: the authorization code and PKCE verifier."""
    with httpx.Client() as http:
        location, verifier = start_sign_in(http, base_url, client.client_id)
        done = submit_login(http, base_url, location, email, password)
    assert done.status_code == 303, done.text
    return query(done.headers["location"])["code"], verifier


def redeem(base_url: str, client: Client, code: str, verifier: str) -> dict[str, str]:
    response = httpx.post(
        f"{base_url}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=client.auth,
    )
    assert response.status_code == 200, response.text
    return response.json()
