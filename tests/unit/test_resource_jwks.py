"""Discovery and the JWKS cache: rotation, rate-limited refetches, expiry, outages."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from identity.resource import BearerTokenError, IssuerUnavailable, TokenValidator, fetch
from identity.resource.discovery import Discovery, discovery_url, endpoint_url
from identity.resource.jwks import JWKSCache, cache_lifetime, signing_keys
from tests.resource_issuer import (
    LocalIssuer,
    ec_key,
    issuer_fixture,  # noqa: F401 - the issuer fixture
    rsa_key,
)

INTERVAL = 10.0


@dataclass
class Clock:
    """Monotonic time that a test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Kit:
    cache: JWKSCache
    validator: TokenValidator
    clock: Clock


@pytest.fixture
async def kit(issuer: LocalIssuer) -> AsyncIterator[Kit]:
    clock = Clock()
    async with httpx.AsyncClient(timeout=5) as http:
        cache = JWKSCache(
            http, Discovery(http, issuer.issuer).jwks_uri, min_fetch_interval=INTERVAL, clock=clock
        )
        yield Kit(cache, TokenValidator(cache, issuer=issuer.issuer), clock)


async def accepted(kit: Kit, token: str) -> bool:
    try:
        await kit.validator.validate(token)
    except BearerTokenError:
        return False
    return True


def forged_with_unknown_kid(issuer: LocalIssuer) -> str:
    return issuer.token(rsa_key(1), header={"kid": uuid.uuid4().hex})


async def test_keys_are_fetched_once_and_then_served_from_the_cache(
    issuer: LocalIssuer, kit: Kit
) -> None:
    for _ in range(5):
        assert await accepted(kit, issuer.token())
    assert issuer.jwks_fetches() == 1
    assert issuer.hits["/.well-known/openid-configuration"] == 1


async def test_unknown_kid_triggers_one_refetch_and_is_accepted_after_rotation(
    issuer: LocalIssuer, kit: Kit
) -> None:
    assert await accepted(kit, issuer.token())
    issuer.published = [rsa_key(1), rsa_key(0)]  # `identity keys rotate`
    kit.clock.now += INTERVAL
    assert await accepted(kit, issuer.token(rsa_key(1)))
    assert await accepted(kit, issuer.token(rsa_key(0)))
    assert issuer.jwks_fetches() == 2


async def test_a_flood_of_unknown_kids_costs_the_issuer_one_fetch_per_interval(
    issuer: LocalIssuer, kit: Kit
) -> None:
    assert await accepted(kit, issuer.token())
    kit.clock.now += INTERVAL

    async def flood() -> list[bool]:
        tokens = [forged_with_unknown_kid(issuer) for _ in range(200)]
        return await asyncio.gather(*(accepted(kit, token) for token in tokens))

    assert not any(await flood())
    assert issuer.jwks_fetches() == 2
    kit.clock.now += INTERVAL / 2
    assert not any(await flood())
    assert issuer.jwks_fetches() == 2
    kit.clock.now += INTERVAL / 2
    assert not any(await flood())
    assert issuer.jwks_fetches() == 3


async def test_a_new_key_seen_right_after_a_fetch_is_accepted_once_the_interval_passes(
    issuer: LocalIssuer, kit: Kit
) -> None:
    assert await accepted(kit, issuer.token())
    issuer.published = [rsa_key(1), rsa_key(0)]
    assert not await accepted(kit, issuer.token(rsa_key(1)))
    kit.clock.now += INTERVAL
    assert await accepted(kit, issuer.token(rsa_key(1)))


async def test_a_retired_key_stops_verifying_when_the_cached_set_expires(
    issuer: LocalIssuer, kit: Kit
) -> None:
    issuer.jwks_cache_control = "public, max-age=120"
    assert await accepted(kit, issuer.token())
    issuer.published = [rsa_key(1)]
    kit.clock.now += 119
    assert await accepted(kit, issuer.token())
    assert issuer.jwks_fetches() == 1
    kit.clock.now += 1
    assert not await accepted(kit, issuer.token())
    assert issuer.jwks_fetches() == 2


async def test_cached_keys_keep_working_while_the_issuer_is_down(
    issuer: LocalIssuer, kit: Kit
) -> None:
    assert await accepted(kit, issuer.token())
    issuer.failing = True
    kit.clock.now += 3600
    assert await accepted(kit, issuer.token())
    assert await accepted(kit, issuer.token())
    assert issuer.jwks_fetches() == 2  # one failed retry, not one per request
    kit.clock.now += INTERVAL
    assert await accepted(kit, issuer.token())
    assert issuer.jwks_fetches() == 3


async def test_a_request_given_up_during_the_first_fetch_does_not_abort_it(
    issuer: LocalIssuer, kit: Kit
) -> None:
    # A request timeout shorter than a slow issuer's answer cancelled every fetch it began,
    # leaving the service with no keys (503) for each interval, for as long as that lasted.
    issuer.jwks_answering.clear()
    first = asyncio.create_task(kit.validator.validate(issuer.token()))
    while not issuer.jwks_fetches():  # noqa: ASYNC110 (the issuer counts on its own thread)
        await asyncio.sleep(0.01)
    first.cancel()
    issuer.jwks_answering.set()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await accepted(kit, issuer.token())
    assert issuer.jwks_fetches() == 1


async def test_a_fetch_that_trickles_in_is_given_up_at_its_deadline(
    issuer: LocalIssuer, kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each byte came well within the read timeout, so nothing ended the fetch, and every
    # request lacking a key waited on it for as long as the issuer kept trickling.
    monkeypatch.setattr(fetch, "FETCH_DEADLINE_SECONDS", 1.0)
    issuer.jwks_trickling = True
    with pytest.raises(IssuerUnavailable, match="seconds"):
        await asyncio.wait_for(kit.validator.validate(issuer.token()), timeout=5)


async def test_tokens_arriving_while_keys_are_fetched_wait_for_them(
    issuer: LocalIssuer, kit: Kit
) -> None:
    # Only the token that started a fetch waited for it: every other arriving meanwhile was
    # refused, 503 after a start and 401 (unknown key) after a rotation.
    assert all(await asyncio.gather(*(accepted(kit, issuer.token()) for _ in range(20))))
    issuer.published = [rsa_key(1), rsa_key(0)]
    kit.clock.now += INTERVAL
    rotated = [issuer.token(rsa_key(1)) for _ in range(20)]
    assert all(await asyncio.gather(*(accepted(kit, token) for token in rotated)))
    assert issuer.jwks_fetches() == 2


async def test_keys_held_past_their_expiry_for_too_long_are_no_longer_trusted(
    issuer: LocalIssuer, kit: Kit
) -> None:
    # A service cut off from its issuer must not go on trusting a key the issuer may have
    # retired (for a leak) for ever: past max_stale every token is refused as unavailable.
    issuer.jwks_cache_control = "public, max-age=120"
    assert await accepted(kit, issuer.token())
    issuer.failing = True
    kit.clock.now += 120 + 86400
    assert await accepted(kit, issuer.token())
    kit.clock.now += 1
    with pytest.raises(IssuerUnavailable):
        await kit.validator.validate(issuer.token())
    issuer.failing = False  # and back by itself once the issuer answers
    kit.clock.now += INTERVAL
    assert await accepted(kit, issuer.token())


async def test_a_key_held_too_long_waits_for_the_fetch_under_way_as_a_missing_one_does(
    issuer: LocalIssuer, kit: Kit
) -> None:
    # More than a day into an outage, the request that started a refetch waited for it and
    # was accepted when it came back, while one arriving meanwhile with the same key was
    # refused 503 at once: the answer hung on which request came first, not on the keys.
    issuer.jwks_cache_control = "public, max-age=120"
    assert await accepted(kit, issuer.token())
    issuer.failing = True
    kit.clock.now += 120 + 86400 + 1
    with pytest.raises(IssuerUnavailable):
        await kit.validator.validate(issuer.token())
    issuer.failing = False
    issuer.jwks_answering.clear()
    kit.clock.now += INTERVAL
    first = asyncio.create_task(accepted(kit, issuer.token()))
    while issuer.jwks_fetches() < 3:  # noqa: ASYNC110 (the issuer counts on its own thread)
        await asyncio.sleep(0.01)
    meanwhile = asyncio.create_task(accepted(kit, issuer.token()))
    await asyncio.sleep(0)  # it has looked at the cache before the fetch is answered
    issuer.jwks_answering.set()
    assert await first
    assert await meanwhile
    assert issuer.jwks_fetches() == 3


async def test_an_issuer_down_from_the_start_is_unavailable_not_an_invalid_token(
    issuer: LocalIssuer, kit: Kit
) -> None:
    issuer.failing = True
    with pytest.raises(IssuerUnavailable):
        await kit.validator.validate(issuer.token())


async def test_a_discovery_document_naming_another_issuer_is_not_trusted(
    issuer: LocalIssuer, kit: Kit
) -> None:
    issuer.advertised_issuer = "https://evil.example"
    with pytest.raises(IssuerUnavailable, match="names issuer"):
        await kit.validator.validate(issuer.token())
    assert issuer.jwks_fetches() == 0


@pytest.mark.parametrize(
    "jwks_uri",
    [
        "http://[::1",
        "http://127.0.0.1:99999/jwks.json",
        "http://127.0.0.1:0/jwks.json",
        "http://id.example\n/jwks.json",
        "/jwks",
    ],
)
async def test_a_discovery_document_with_an_unusable_jwks_uri_is_unavailable_not_a_crash(
    issuer: LocalIssuer, kit: Kit, jwks_uri: str
) -> None:
    # httpx raises InvalidURL (no HTTPError) or, for a port out of range, an ExceptionGroup
    # from its connection pool: either was a 500 on every request, with nothing in the log
    # naming the issuer's document as the cause.
    issuer.advertised_jwks_uri = jwks_uri
    with pytest.raises(IssuerUnavailable, match="jwks_uri"):
        await kit.validator.validate(issuer.token())


@pytest.mark.parametrize(
    ("issuer_url", "url", "usable"),
    [
        ("https://id.example", "https://id.example/jwks.json", True),
        ("https://id.example", "https://keys.example:8443/jwks.json", True),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/jwks.json", True),
        # An issuer trusted over TLS whose keys come over plain HTTP: anyone on the path
        # could hand us keys of their own and sign any token with them.
        ("https://id.example", "http://id.example/jwks.json", False),
    ],
)
def test_an_https_issuer_s_endpoints_must_be_https(issuer_url: str, url: str, usable: bool) -> None:
    assert (endpoint_url(url, issuer_url) == url) is usable


async def test_an_unreachable_issuer_is_unavailable() -> None:
    async with httpx.AsyncClient(timeout=1) as http:
        # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
        cache = JWKSCache(http, Discovery(http, "http://127.0.0.1:9").jwks_uri)
        with pytest.raises(IssuerUnavailable):
            await cache.key("any")


@pytest.mark.parametrize(
    ("issuer_url", "document_url"),
    [
        ("https://id.example", "https://id.example/.well-known/openid-configuration"),
        (
            "https://id.example/tenant/",
            "https://id.example/tenant/.well-known/openid-configuration",
        ),
    ],
)
def test_the_discovery_document_is_looked_for_under_the_issuer(
    issuer_url: str, document_url: str
) -> None:
    assert discovery_url(issuer_url) == document_url


@pytest.mark.parametrize(
    ("cache_control", "seconds"),
    [
        (None, 300),
        ("max-age=120", 120),
        ("public, max-age=900, must-revalidate", 900),
        ("max-age=0", 60),
        ("no-store", 60),
        ("max-age=99999999", 3600),
        ("private", 300),
        ("s-maxage=30", 300),
    ],
)
def test_the_cache_lifetime_follows_max_age_within_bounds(
    cache_control: str | None, seconds: float
) -> None:
    assert cache_lifetime(cache_control, default=300, bounds=(60, 3600)) == seconds


def test_keys_that_cannot_verify_our_tokens_are_left_out_of_the_set() -> None:
    good = rsa_key(0).as_dict(private=False)
    document = {
        "keys": [
            good,
            ec_key(0).as_dict(private=False) | {"use": "enc"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            rsa_key(1).as_dict(private=False) | {"kid": None},
            "not a key",
        ]
    }
    assert list(signing_keys(document)) == [good["kid"]]


@pytest.mark.parametrize("crv", ["BP-256", "Ed25519", 5])
async def test_a_published_key_on_a_curve_we_do_not_know_leaves_the_others_working(
    issuer: LocalIssuer, kit: Kit, crv: object
) -> None:
    # An issuer may publish keys of kinds this kit has no use for (RFC 7517 §5: ignore
    # them); one such key made every token fail with the library's KeyError, a 500.
    issuer.foreign_members = [ec_key(1).as_dict(private=False) | {"kid": "other", "crv": crv}]
    assert await accepted(kit, issuer.token())
