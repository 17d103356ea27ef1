"""A stand-in issuer for the resource kit's tests: a real HTTP server on 127.0.0.1.

It serves a discovery document, a JWKS whose keys a test can change (rotation) and a scripted
introspection endpoint, counts every request by path, and mints tokens signed as identity
signs them (issue 3's format) or forged in the ways attackers forge them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from litestar import Litestar

from tests.asgi_lifespan import lifespan
from tests.processes import serving_in_a_thread

ACCOUNT_ID = "6f1c2a3e-8d4b-4c1a-9e2f-0a1b2c3d4e5f"
OTHER_ACCOUNT_ID = "0b9e8d7c-6a5f-4e3d-8c2b-1a0f9e8d7c6b"
AUDIENCE = "https://billing.example.test"
INTROSPECTION_CLIENT = ("billing-service", "s3cret:with spaces&symbols")


@functools.cache
def rsa_key(n: int) -> RSAKey:
    """The ``n``-th test RSA key; generation is slow, so each is made once per run."""
    key = RSAKey.generate_key(2048, auto_kid=False)
    key.ensure_kid()
    return key


@functools.cache
def ec_key(n: int) -> ECKey:
    key = ECKey.generate_key("P-256", auto_kid=False)
    key.ensure_kid()
    return key


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """``header.claims.`` without a signature, as an ``alg: none`` token is sent."""
    return ".".join(b64url(json.dumps(part).encode()) for part in (header, claims)) + "."


class LocalIssuer:
    def __init__(self) -> None:
        self.published: list[RSAKey | ECKey] = [rsa_key(0)]
        # JWKS members published after the keys, as they are: keys of kinds the kit cannot use.
        self.foreign_members: list[dict[str, Any]] = []
        self.jwks_cache_control: str | None = "max-age=300"
        self.advertised_issuer: str | None = None
        self.advertised_jwks_uri: str | None = None
        # While set, every request answers 500, as an issuer in trouble does.
        self.failing = False
        # While cleared, JWKS requests wait (up to 10 s) before answering, as a slow issuer's do.
        self.jwks_answering = threading.Event()
        self.jwks_answering.set()
        # While set, the JWKS answer trickles out a byte at a time, each well within any
        # read timeout, for up to 10 s: a path that is alive but next to useless.
        self.jwks_trickling = False
        self.introspection_answer: dict[str, Any] = {"active": False}
        # While cleared, introspection requests, once recorded, wait (up to 10 s) to be answered.
        self.introspection_answering = threading.Event()
        self.introspection_answering.set()
        self.introspection_requests: list[tuple[str | None, dict[str, list[str]]]] = []
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"

    def jwks_fetches(self) -> int:
        with self._lock:
            return self.hits["/jwks.json"]

    def token(
        self,
        key: RSAKey | ECKey | None = None,
        *,
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """An access token signed by ``key`` (the first published key unless given)."""
        key = key or rsa_key(0)
        alg = "ES256" if isinstance(key, ECKey) else "RS256"
        merged = {"alg": alg, "typ": "at+jwt", "kid": key.kid} | (header or {})
        full_header = {name: value for name, value in merged.items() if value is not None}
        return jwt.encode(
            full_header, self.claims(**claims), key, algorithms=[alg], default_type=None
        )

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {
            "iss": self.issuer,
            "sub": str(uuid.uuid4()),
            "aud": AUDIENCE,
            "exp": now + 600,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "client_id": "portal",
            "scope": "openid",
            "account_id": ACCOUNT_ID,
            "permissions": ["invoices", "tickets"],
            "account_owner": False,
        }
        return {name: value for name, value in (base | overrides).items() if value is not None}

    def hs256_with_public_key(self, key: RSAKey) -> str:
        """The algorithm-confusion forgery: HMAC keyed with the issuer's public key PEM."""
        header = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
        signing_input = unsigned(header, self.claims())[:-1]
        secret = key.as_pem(private=False)
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(signature)}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer._count(self.path)
                if issuer.failing:
                    self.send_error(500)
                elif self.path == "/.well-known/openid-configuration":
                    self._json(
                        {
                            "issuer": issuer.advertised_issuer or issuer.issuer,
                            "jwks_uri": issuer.advertised_jwks_uri or issuer.issuer + "/jwks.json",
                            "introspection_endpoint": issuer.issuer + "/introspect",
                        }
                    )
                elif self.path == "/jwks.json":
                    issuer.jwks_answering.wait(timeout=10)
                    if issuer.jwks_trickling:
                        self._trickle()
                        return
                    keys = [key.as_dict(private=False) for key in issuer.published]
                    keys += issuer.foreign_members
                    self._json({"keys": keys}, issuer.jwks_cache_control)
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                issuer._count(self.path)
                if issuer.failing:
                    self.send_error(500)
                    return
                body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
                issuer.introspection_requests.append(
                    (self.headers.get("authorization"), parse_qs(body))
                )
                issuer.introspection_answering.wait(timeout=10)
                # The client may have given up waiting, as a closed resource server does.
                with suppress(OSError):
                    self._json(issuer.introspection_answer)

            def _trickle(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "100")
                self.end_headers()
                try:
                    for _ in range(50):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.2)
                except OSError:
                    pass  # the client gave up, as it should

            def _json(self, document: dict[str, Any], cache_control: str | None = None) -> None:
                body = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                if cache_control is not None:
                    self.send_header("cache-control", cache_control)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: pytest shows failures, not every request."""

        return Handler

    def _count(self, path: str) -> None:
        with self._lock:
            self.hits[path] += 1

    @contextmanager
    def running(self) -> Iterator[LocalIssuer]:
        # A short poll interval makes shutdown (and so each test) fast.
        with serving_in_a_thread(self._server, poll_interval=0.02):
            yield self


@pytest.fixture(name="issuer")
def issuer_fixture() -> Iterator[LocalIssuer]:
    """Import this fixture into a test module to get a running :class:`LocalIssuer`."""
    with LocalIssuer().running() as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    """The Authorization header a client of the resource server sends ``token`` in."""
    return {"authorization": f"Bearer {token}"}


@asynccontextmanager
async def asgi_client(app: Litestar, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for ``app``, run in this test's loop with its startup and shutdown."""
    transport = httpx.ASGITransport(app=app)
    async with lifespan(app), httpx.AsyncClient(transport=transport, base_url=base_url) as http:
        yield http
