"""The machine's ceiling: a bare Litestar app on the same ASGI server, with no storage.

It answers what the benchmarked endpoints answer, doing only the work no implementation
can skip: a static JSON document, and a client_credentials answer that checks a SHA-256
client secret in constant time and signs an RS256 JWT.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from urllib.parse import parse_qs

from joserfc import jwt
from joserfc.jwk import RSAKey
from litestar import Litestar, Request, Response, get, post

CLIENT_ID = "ceiling"
CLIENT_SECRET = "ceiling-secret-" + "x" * 32
_SECRET_DIGEST = hashlib.sha256(CLIENT_SECRET.encode()).hexdigest()
_KEY = RSAKey.generate_key(2048, auto_kid=True)
# A document the size of our discovery document, serialised once.
_DOCUMENT = json.dumps(
    {f"field_{i}": f"https://id.example.com/value/{i}" for i in range(40)}
).encode()


@get("/static", sync_to_thread=False)
def static() -> Response[bytes]:
    return Response(_DOCUMENT, media_type="application/json")


@post("/token", status_code=200)
async def token(request: Request) -> Response[dict[str, object]]:
    form = parse_qs((await request.body()).decode())
    client_id, _, secret = (
        base64.b64decode(request.headers.get("authorization", "Basic ")[6:]).decode().partition(":")
    )
    ok = client_id == CLIENT_ID and hmac.compare_digest(
        hashlib.sha256(secret.encode()).hexdigest(), _SECRET_DIGEST
    )
    if not ok or form.get("grant_type") != ["client_credentials"]:
        return Response({"error": "invalid_client"}, status_code=401)
    now = int(time.time())
    claims = {
        "iss": "http://127.0.0.1",
        "sub": client_id,
        "aud": client_id,
        "client_id": client_id,
        "iat": now,
        "exp": now + 600,
        "jti": secrets.token_urlsafe(16),
        "scope": "",
    }
    access_token = jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": _KEY.kid}, claims, _KEY)
    return Response(
        {"access_token": access_token, "token_type": "Bearer", "expires_in": 600},
        headers={"Cache-Control": "no-store"},
    )


app = Litestar([static, token], logging_config=None)
