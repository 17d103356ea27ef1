"""examples/billing and identity as two real processes: billing trusts identity's tokens through
the resource kit, follows a key rotation without a restart, and hears of removed members.

Access tokens come from the real authorization code flow, for an account picked with the
``account_id`` parameter. Forgeries that need identity's own key (expired, other issuer) are
signed with the key identity stored, read from its database as identity reads it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet as JWKSet
from joserfc.jwk import RSAKey

from identity.clock import utcnow
from identity.crypto import Encryptor
from identity.db.engine import Database, create_engine
from identity.keys.service import RELYING_PARTY_REFETCH, KeySet, load_keyset
from identity.oauth.tokens import mint_access_token
from identity.settings import Settings
from tests.browser import authorize_params, form_fields, pkce_pair, query
from tests.processes import Server, free_port, identity_server, run_identity

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Kx7#mQ9!vB2$tR"
REDIRECT_URI = "https://portal.example/callback"
CLERK, INTERN = "clerk@example.com", "intern@example.com"


@dataclass
class Stack:
    env: dict[str, str]
    identity: Server
    billing_url: str
    portal: dict[str, str]
    staff: dict[str, str]
    ours: str
    theirs: str
    users: dict[str, str]

    def invoices(self, account: str, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.billing_url}/accounts/{account}/invoices", headers=headers)


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> dict[str, Any]:
    result = run_identity(*args, env=env, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _api(server: Server, staff: dict[str, str], method: str, path: str, **body: Any) -> Any:
    response = httpx.request(
        method, f"{server.base_url}/api/v1{path}", json=body or None, headers=staff
    )
    assert response.is_success, response.text
    return response.json() if response.content else None


def _staff_headers(server: Server, ops: dict[str, str]) -> dict[str, str]:
    response = httpx.post(
        f"{server.base_url}/token",
        data={"grant_type": "client_credentials", "scope": "identity:admin"},
        auth=(ops["client_id"], ops["client_secret"]),
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def sign_in(stack: Stack, email: str, account_id: str) -> str:
    """An access token for ``email`` in ``account_id``, through /authorize, /login, /token."""
    verifier, challenge = pkce_pair()
    # A connection per request: reusing one the server is closing as idle can be reset
    # mid-request (uvicorn's keep-alive timeout), which is not what these tests are about.
    close = {"Connection": "close"}
    with httpx.Client(base_url=stack.identity.base_url, headers=close) as http:
        started = http.get(
            "/authorize",
            params=authorize_params(
                client_id=stack.portal["client_id"],
                redirect_uri=REDIRECT_URI,
                scope="openid",
                state="s1",
                nonce=None,
                code_challenge=challenge,
                account_id=account_id,
                resource=stack.billing_url,
            ),
        )
        assert started.status_code == 303, started.text
        page = http.get(started.headers["location"])
        fields = form_fields(page.text) | {"email": email, "password": PASSWORD}
        done = http.post("/login", data=fields)
        assert done.status_code == 303, done.text
        code = query(done.headers["location"])["code"]
    redeemed = httpx.post(
        f"{stack.identity.base_url}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=(stack.portal["client_id"], stack.portal["client_secret"]),
    )
    assert redeemed.status_code == 200, redeemed.text
    return redeemed.json()["access_token"]


def _wait_for_http(url: str, process: subprocess.Popen[bytes], log: Any) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"billing exited early:\n{log.read().decode(errors='replace')}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("billing did not answer in 30 s")


def _billing_resource(port: int) -> str:
    """Billing's resource identifier: the portal is registered for it, and billing's own URL."""
    return f"http://127.0.0.1:{port}"


def _billing(port: int, issuer: str, secret: str) -> Iterator[str]:
    env = os.environ | {
        "BILLING_ISSUER": issuer,
        "BILLING_AUDIENCE": _billing_resource(port),
        "BILLING_WEBHOOK_SECRET": secret,
    }
    app = "examples.billing.app:app_from_env"
    command = [sys.executable, "-m", "uvicorn", "--factory", app, "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = _billing_resource(port)
            _wait_for_http(url, process, log)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def stack(env: dict[str, str]) -> Iterator[Stack]:
    # The issuer is the server's own address (identity_server sets it), which billing finds
    # named in the discovery document; keys are reread every second, so a rotation reaches
    # the token endpoint at once; webhooks may go to billing on http://127.0.0.1.
    shared = {name: value for name, value in env.items() if name != "IDENTITY_ISSUER"} | {
        "IDENTITY_KEYS_REFRESH": "1",
        "IDENTITY_WEBHOOKS_ALLOW_HTTP_LOOPBACK": "1",
    }
    assert run_identity("migrate", env=shared).returncode == 0
    users = {
        email: _cli(shared, "users", "create", "--email", email, "--password-stdin", stdin=PASSWORD)
        for email in ("owner@example.com", CLERK, INTERN)
    }
    billing_port = free_port()
    portal = _cli(
        shared,
        "clients", "create", "--name", "Portal", "--first-party",
        "--redirect-uri", REDIRECT_URI, "--scope", "openid",
        "--resource", _billing_resource(billing_port),
    )  # fmt: skip
    ops = _cli(
        shared,
        "clients", "create", "--name", "Ops",
        "--grant-type", "client_credentials", "--scope", "identity:admin",
    )  # fmt: skip
    with identity_server(shared) as identity:
        staff = _staff_headers(identity, ops)
        owner_id = users["owner@example.com"]["id"]
        ours = _api(identity, staff, "POST", "/accounts", name="Ours", owner_user_id=owner_id)
        theirs = _api(identity, staff, "POST", "/accounts", name="Theirs", owner_user_id=owner_id)
        for email, permissions in ((CLERK, ["invoices"]), (INTERN, ["tickets"])):
            _api(
                identity,
                staff,
                "POST",
                f"/accounts/{ours['id']}/members",
                user_id=users[email]["id"],
                permissions=[{"name": name} for name in permissions],
            )
        subscription = _api(
            identity,
            staff,
            "POST",
            "/webhooks",
            url=f"http://127.0.0.1:{billing_port}/webhooks/identity",
            event_types=["member.removed"],
        )
        for billing_url in _billing(billing_port, identity.base_url, subscription["secret"]):
            yield Stack(
                shared,
                identity,
                billing_url,
                portal,
                staff,
                ours["id"],
                theirs["id"],
                {email: user["id"] for email, user in users.items()},
            )


def test_a_sub_user_reads_their_accounts_invoices_and_nothing_more(stack: Stack) -> None:
    clerk = sign_in(stack, CLERK, stack.ours)
    claims = jwt.decode(clerk, _published(stack)).claims
    assert claims["account_id"] == stack.ours and claims["permissions"] == ["invoices"]

    ok = stack.invoices(stack.ours, clerk)
    assert ok.status_code == 200, ok.text
    assert ok.json()["requested_by"] == stack.users[CLERK]

    other = stack.invoices(stack.theirs, clerk)
    assert other.status_code == 403
    assert other.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')

    intern = stack.invoices(stack.ours, sign_in(stack, INTERN, stack.ours))
    assert intern.status_code == 403
    assert intern.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')

    anonymous = stack.invoices(stack.ours, None)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"


def _published(stack: Stack) -> JWKSet:
    return JWKSet.import_key_set(httpx.get(f"{stack.identity.base_url}/jwks.json").json())


def _stored_keyset(env: dict[str, str]) -> KeySet:
    """identity's signing keys, read from its database with its secret key, as it reads them."""
    settings = Settings.from_env(env)
    encryptor = Encryptor(env["IDENTITY_SECRET_KEY"], "signing-keys")

    async def read() -> KeySet:
        db = Database(create_engine(settings))
        try:
            async with db.transaction() as session:
                keyset = await load_keyset(session, encryptor, utcnow())
        finally:
            await db.dispose()
        assert keyset is not None
        return keyset

    return asyncio.run(read())


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_forged_tokens_get_401_with_a_bearer_challenge(stack: Stack) -> None:
    real = sign_in(stack, CLERK, stack.ours)
    header_b64, claims_b64, signature = real.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=="))
    claims = json.loads(base64.urlsafe_b64decode(claims_b64 + "=="))
    keyset = _stored_keyset(stack.env)

    def with_identity_key(**changes: Any) -> str:
        now = changes.get("now", utcnow())
        issued = mint_access_token(
            keyset,
            issuer=changes.get("issuer", stack.identity.base_url),
            subject=claims["sub"],
            audience=changes.get("audience", claims["aud"]),
            client_id=claims["client_id"],
            scope=claims["scope"],
            now=now,
            expires_at=now + timedelta(seconds=600),
        )
        return issued.token

    # The stored key really is identity's: billing accepts a token it signs (then refuses it
    # 403 for want of account claims), so the 401s below are for the forgery alone.
    assert stack.invoices(stack.ours, with_identity_key()).status_code == 403
    forged = {
        "expired": with_identity_key(now=utcnow() - timedelta(hours=1)),
        "tampered": f"{header_b64}.{_b64(claims | {'account_id': stack.theirs})}.{signature}",
        "wrongly signed": jwt.encode(
            header, claims, RSAKey.generate_key(2048), algorithms=[header["alg"]]
        ),
        "other issuer": with_identity_key(issuer="https://identity.evil.example"),
        # What the portal gets when it asks for no resource: a token for itself.
        "other audience": with_identity_key(audience=stack.portal["client_id"]),
        "alg none": f"{_b64(header | {'alg': 'none'})}.{claims_b64}.",
    }
    for name, token in forged.items():
        response = stack.invoices(stack.ours, token)
        assert response.status_code == 401, (name, response.text)
        assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"'), name
    assert stack.invoices(stack.ours, real).status_code == 200


def test_after_identity_keys_rotate_new_tokens_are_accepted_without_restarting_billing(
    stack: Stack,
) -> None:
    before = sign_in(stack, CLERK, stack.ours)
    assert stack.invoices(stack.ours, before).status_code == 200  # billing now holds the JWKS
    new_kid = _cli(stack.env, "keys", "rotate")["kid"]

    # Identity rereads its keys every second; the new key signs RELYING_PARTY_REFETCH later.
    deadline = time.monotonic() + 10 + RELYING_PARTY_REFETCH.total_seconds()
    after = sign_in(stack, CLERK, stack.ours)
    while jwt.decode(after, _published(stack)).header["kid"] != new_kid:
        assert time.monotonic() < deadline, "identity does not sign with the new key"
        time.sleep(0.3)
        after = sign_in(stack, CLERK, stack.ours)

    # Billing refetches the JWKS on the unknown kid at once: its last fetch is older than
    # the kit's 10 s cooldown, however close to the rotation it was.
    response = stack.invoices(stack.ours, after)
    assert response.status_code == 200, response.text
    assert stack.invoices(stack.ours, before).status_code == 200  # the old key is still published


def test_a_removed_member_is_refused_by_billing_once_the_event_arrives(stack: Stack) -> None:
    clerk = sign_in(stack, CLERK, stack.ours)
    assert stack.invoices(stack.ours, clerk).status_code == 200
    member = f"/accounts/{stack.ours}/members/{stack.users[CLERK]}"
    _api(stack.identity, stack.staff, "DELETE", member)

    deadline = time.monotonic() + 15  # the dispatcher polls the outbox every 2 seconds
    response = stack.invoices(stack.ours, clerk)
    while response.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.3)
        response = stack.invoices(stack.ours, clerk)
    assert response.status_code == 403
    assert "no longer a member" in response.headers["www-authenticate"]
