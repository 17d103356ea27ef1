"""A relying party built on an independent, certified OIDC library signs in against us.

tests/interop/rp.mjs uses panva's openid-client (Node.js) for discovery, the code flow with
PKCE, ID token validation, userinfo, refresh, introspection and revocation; only the filling
in of our hosted forms is its own code. This test starts the server, registers a user and a
client with the CLI, runs the script and checks what it reports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.browser import PASSWORD
from tests.e2e.flows import cli
from tests.node_packages import install_locked, tool
from tests.processes import identity_server

INTEROP = Path(__file__).parents[1] / "interop"
EMAIL = "interop@example.com"
# Never fetched: the script stops at the redirect that carries the authorization response.
REDIRECT_URI = "http://127.0.0.1:9/callback"
# openid-client 6 needs Node.js 20's Web Crypto and fetch globals.
NODE_MAJOR = 20
NEEDS_NODE = (
    f"the OIDC interoperability test needs Node.js {NODE_MAJOR} or newer and npm"
    " (Debian: apt-get install nodejs npm; .ci/run installs them when missing)"
)


@pytest.fixture(scope="session")
def node() -> str:
    """Node.js with tests/interop's locked packages installed, reinstalled when the lock moves."""
    node = tool("node", NEEDS_NODE)
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    major = re.match(r"v(\d+)\.", version)
    if major is None or int(major.group(1)) < NODE_MAJOR:
        pytest.fail(f"`node` is {version}: {NEEDS_NODE}", pytrace=False)
    install_locked(INTEROP, NEEDS_NODE)
    return node


@pytest.mark.e2e
def test_openid_client_signs_in_refreshes_introspects_and_revokes(
    env: dict[str, str], node: str
) -> None:
    # The issuer is the server's own address, which identity_server sets when env has none.
    env = {name: value for name, value in env.items() if name != "IDENTITY_ISSUER"}
    with identity_server(env) as server:
        user = cli(
            env, "users", "create", "--email", EMAIL, "--name", "Ana Interop",
            "--password-stdin", stdin=PASSWORD,
        )  # fmt: skip
        # Not first-party, so the consent page is part of the walk.
        registered = cli(
            env,
            "clients",
            "create",
            "--name",
            "Interop RP",
            "--redirect-uri",
            REDIRECT_URI,
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--scope",
            "openid profile email",
        )
        result = subprocess.run(
            [node, str(INTEROP / "rp.mjs")],
            env=os.environ
            | {
                "RP_ISSUER": server.base_url,
                "RP_CLIENT_ID": registered["client_id"],
                "RP_CLIENT_SECRET": registered["client_secret"],
                "RP_REDIRECT_URI": REDIRECT_URI,
                "RP_EMAIL": EMAIL,
                "RP_PASSWORD": PASSWORD,
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{result.stderr}\n--- server ---\n{server.output()}"
    seen = json.loads(result.stdout)
    issuer = server.base_url

    assert seen["discovery"]["issuer"] == issuer
    assert seen["discovery"]["code_challenge_methods_supported"] == ["S256"]
    assert seen["discovery"]["authorization_response_iss_parameter_supported"] is True
    assert seen["pages"] == ["/login", "/consent"]
    assert seen["authorization_response"] == {
        "redirect_uri": REDIRECT_URI,
        "iss": issuer,
        "state_matches": True,
    }

    token = seen["token"]
    assert token["token_type"].lower() == "bearer"
    assert 0 < token["expires_in"] <= 600
    assert set(token["scope"].split()) == {"openid", "profile", "email"}
    assert token["has_refresh_token"] is True

    id_token = seen["id_token"]
    assert id_token["header"]["alg"] == "RS256"
    assert id_token["header"]["kid"]
    claims = id_token["claims"]
    assert claims["sub"] == user["id"]
    assert claims["aud"] == registered["client_id"]
    assert claims["iss"] == issuer
    assert claims["nonce"] == id_token["expected_nonce"]
    assert claims["amr"] == ["pwd"]
    assert id_token["at_hash_matches"] is True
    assert claims["auth_time"] <= claims["iat"] < claims["exp"]

    assert seen["userinfo"]["sub"] == user["id"]
    assert seen["userinfo"]["email"] == EMAIL
    assert seen["userinfo"]["email_verified"] is True
    assert seen["userinfo"]["name"] == "Ana Interop"

    refresh = seen["refresh"]
    assert refresh["token_type"].lower() == "bearer"
    assert refresh["new_access_token"] is True
    assert refresh["new_refresh_token"] is True
    # OIDC Core §12.2: an ID token from a refresh speaks of the same sign-in.
    if refresh["id_token_claims"] is not None:
        again = refresh["id_token_claims"]
        assert (again["sub"], again["aud"], again["iss"]) == (user["id"], claims["aud"], issuer)
        assert again["auth_time"] == claims["auth_time"]
        assert again["sid"] == claims["sid"]
        assert again.get("nonce") in (None, claims["nonce"])

    introspection = seen["introspection"]
    before = introspection["access_token_before_revocation"]
    assert before["active"] is True
    assert before["client_id"] == registered["client_id"]
    assert before["sub"] == user["id"]
    assert before["iss"] == issuer
    assert set(before["scope"].split()) == {"openid", "profile", "email"}
    assert introspection["access_token_after_revocation"] == {"active": False}
    assert introspection["refresh_token_before_revocation"]["active"] is True
    assert introspection["refresh_token_after_revocation"] == {"active": False}

    revoked_userinfo = seen["userinfo_with_revoked_access_token"]
    assert revoked_userinfo["refused"] is True
    assert revoked_userinfo["status"] == 401
    assert revoked_userinfo["error"] == "invalid_token"
    refused = seen["refresh_with_revoked_refresh_token"]
    assert refused["refused"] is True
    assert refused["status"] == 400
    assert refused["error"] == "invalid_grant"
