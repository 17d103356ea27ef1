"""No password, token, client secret or reset token ever appears in a log line.

A real ``identity serve`` at DEBUG level goes through a sign-in, a code exchange, a refresh,
introspection, a password reset and failing requests; then its whole output is searched for
every secret it was handed or handed out.
"""

from __future__ import annotations

import email
import email.policy
import re
import time
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.e2e.flows import redeem, setup, sign_in, start_sign_in, submit_login
from tests.processes import identity_server

pytestmark = pytest.mark.e2e

EMAIL = "logs@example.com"
PASSWORD = "Qz7!mVt#pX2w"
NEW_PASSWORD = "Hn4$wq8!Lr3z"
WRONG_PASSWORD = "Wrong-Pa55word!x"
_RESET_LINK = re.compile(r"/reset-password\?token=([A-Za-z0-9_%-]+)")


def _reset_token(outbox: Path) -> str:
    deadline = time.monotonic() + 15  # the reset mail is queued, then sent by the dispatcher
    while time.monotonic() < deadline:
        for path in outbox.glob("*.eml"):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            body = message.get_body(("plain",))
            match = body and _RESET_LINK.search(body.get_content())
            if match:
                return match.group(1)
        time.sleep(0.2)
    raise AssertionError("no reset mail in the outbox")


def test_no_secret_appears_in_the_debug_log(env: dict[str, str], tmp_path: Path) -> None:
    env = env | {"IDENTITY_LOG_LEVEL": "DEBUG", "IDENTITY_MAIL_OUTBOX": str(tmp_path / "mail")}
    grants = ("authorization_code", "refresh_token", "client_credentials")
    client = setup(env, EMAIL, PASSWORD, *(arg for g in grants for arg in ("--grant-type", g)))
    with identity_server(env) as server:
        base = server.base_url
        code, verifier = sign_in(base, client, EMAIL, PASSWORD)
        tokens = redeem(base, client, code, verifier)
        refreshed = httpx.post(
            f"{base}/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=client.auth,
        )
        assert refreshed.status_code == 200, refreshed.text
        machine = httpx.post(
            f"{base}/token", data={"grant_type": "client_credentials"}, auth=client.auth
        )
        assert machine.status_code == 200, machine.text
        for token in (refreshed.json()["access_token"], refreshed.json()["refresh_token"]):
            introspected = httpx.post(f"{base}/introspect", data={"token": token}, auth=client.auth)
            assert introspected.json()["active"] is True

        forgot = httpx.post(f"{base}/api/v1/password/forgot", json={"email": EMAIL})
        assert forgot.status_code == 202
        reset_token = _reset_token(tmp_path / "mail")
        reset = httpx.post(
            f"{base}/api/v1/password/reset",
            json={"token": reset_token, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
        )
        assert reset.status_code == 204, reset.text

        # Failures: a wrong password, a reused code, a wrong client secret, a spent reset token.
        with httpx.Client() as http:
            location, _ = start_sign_in(http, base, client.client_id)
            refused = submit_login(http, base, location, EMAIL, WRONG_PASSWORD)
            assert refused.status_code == 400
        reused = httpx.post(
            f"{base}/token",
            data={"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                  "redirect_uri": "https://app.example/callback"},
            auth=client.auth,
        )  # fmt: skip
        assert reused.status_code == 400
        wrong_secret = client.client_secret[::-1]
        bad_client = httpx.post(
            f"{base}/token",
            data={"grant_type": "client_credentials"},
            auth=(client.client_id, wrong_secret),
        )
        assert bad_client.status_code == 401
        spent = httpx.post(
            f"{base}/api/v1/password/reset",
            json={"token": reset_token, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
        )
        assert spent.status_code == 400
        output = server.output()

    # The log is there, at DEBUG, with request ids: an empty log would pass trivially.
    assert '"level": "debug"' in output
    assert output.count('"request_id"') >= 15
    secrets = {
        "password": PASSWORD,
        "new password": NEW_PASSWORD,
        "wrong password": WRONG_PASSWORD,
        "client secret": client.client_secret,
        "wrong client secret": wrong_secret,
        "authorization code": code,
        "PKCE verifier": verifier,
        "access token": tokens["access_token"],
        "ID token": tokens["id_token"],
        "refresh token": tokens["refresh_token"],
        "rotated refresh token": refreshed.json()["refresh_token"],
        "client_credentials token": machine.json()["access_token"],
        "reset token": reset_token,
    }
    leaked = [name for name, secret in secrets.items() if secret in output]
    # The names only: printing the lines would put the secrets into the test report.
    assert leaked == []
