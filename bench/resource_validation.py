"""Access-token validations per second: the resource kit against a bare joserfc verify.

    python -m bench.resource_validation [--seconds 0.5] [--rounds 5]

Every side checks the same token in the same run, one caller at a time, in alternating rounds;
each side's best round counts, so a burst of other load on the machine skews none of them.
"bare" is ``joserfc.jwt.decode`` with the key in hand: the signature check alone. "+claims"
adds joserfc's ``JWTClaimsRegistry`` for the claims a resource server must check. The kit does
that and the size cap, header checks, the JWKS cache lookup and the typed ``AccessToken``.
Its JWKS is fetched once before timing, so no network is measured; an in-memory transport
serves it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from joserfc.jwt import JWTClaimsRegistry

from bench.passwords import rate
from identity.resource import ResourceServer, ResourceServerConfig

ISSUER = "https://id.example.com"
AUDIENCE = "https://billing.example.com"


def issuer_transport(keys: list[RSAKey | ECKey]) -> httpx.MockTransport:
    documents = {
        "/.well-known/openid-configuration": {"issuer": ISSUER, "jwks_uri": ISSUER + "/jwks"},
        "/jwks": {"keys": [key.as_dict(private=False) for key in keys]},
    }
    return httpx.MockTransport(
        lambda request: httpx.Response(200, json=documents[request.url.path])
    )


def access_token(key: RSAKey | ECKey, alg: str) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": str(uuid.uuid4()),
        "aud": AUDIENCE,
        "exp": now + 600,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "client_id": "portal",
        "scope": "openid profile",
        "account_id": str(uuid.uuid4()),
        "permissions": ["invoices", "tickets", "users"],
        "account_owner": False,
    }
    return jwt.encode({"alg": alg, "typ": "at+jwt", "kid": key.kid}, claims, key, [alg])


# The claims every resource server must check, for the "+claims" column.
CLAIMS = JWTClaimsRegistry(
    iss={"essential": True, "value": ISSUER},
    aud={"essential": True, "value": AUDIENCE},
    exp={"essential": True},
)


def contenders(
    server: ResourceServer, token: str, key: RSAKey | ECKey, alg: str
) -> list[Callable[[], Awaitable[object]]]:
    """The bare verify, the verify with claims, and the kit, on the same token."""

    async def bare() -> None:
        jwt.decode(token, key, algorithms=[alg])

    async def with_claims() -> None:
        CLAIMS.validate(jwt.decode(token, key, algorithms=[alg]).claims)

    return [bare, with_claims, lambda: server.validate(token)]


async def run(seconds: float, rounds: int) -> None:
    keys: dict[str, RSAKey | ECKey] = {
        "RS256": RSAKey.generate_key(2048, auto_kid=True),
        "ES256": ECKey.generate_key("P-256", auto_kid=True),
    }
    http = httpx.AsyncClient(transport=issuer_transport(list(keys.values())))
    config = ResourceServerConfig(ISSUER, audience=AUDIENCE)
    async with http, ResourceServer(config, http=http) as server:
        print(f"{'alg':<7}{'bare /s':>10}{'+claims /s':>12}{'kit /s':>10}{'kit / bare':>12}")
        for alg, key in keys.items():
            token = access_token(key, alg)
            await server.validate(token)  # fetches discovery and JWKS once
            operations = contenders(server, token, key, alg)
            best = [0.0] * len(operations)
            for _ in range(rounds):
                for i, operation in enumerate(operations):
                    best[i] = max(best[i], await rate(operation, 1, seconds))
            bare_rate, claims_rate, kit_rate = best
            print(
                f"{alg:<7}{bare_rate:>10.0f}{claims_rate:>12.0f}{kit_rate:>10.0f}"
                f"{kit_rate / bare_rate:>12.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side and algorithm")
    arguments = parser.parse_args()
    asyncio.run(run(arguments.seconds, arguments.rounds))


if __name__ == "__main__":
    main()
