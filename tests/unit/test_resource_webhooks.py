"""The kit's check of identity's webhook signatures: Stripe-style ``t=…,v1=…`` headers."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from identity.resource.webhooks import SIGNATURE_HEADER, WebhookError, signature_header, verify

SECRET = "whsec_current"
OLD_SECRET = "whsec_previous"
NOW = 1_800_000_000
BODY = json.dumps(
    {"id": "e1", "type": "member.removed", "occurred_at": "2027-01-15T08:00:00Z", "data": {}}
).encode()


def headers(value: str) -> dict[str, str]:
    return {SIGNATURE_HEADER: value}


def test_a_body_signed_with_the_secret_is_the_event() -> None:
    event = verify(headers(signature_header([SECRET], NOW, BODY)), BODY, SECRET, now=NOW)
    assert event["type"] == "member.removed"


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature_header([SECRET], NOW, BODY) == f"t={NOW},v1={expected}"


def test_header_names_are_case_insensitive() -> None:
    value = signature_header([SECRET], NOW, BODY)
    assert verify({"identity-signature": value}, BODY, SECRET, now=NOW)["id"] == "e1"


@pytest.mark.parametrize("skew", [-300, 300])
def test_a_timestamp_within_the_tolerance_is_accepted(skew: int) -> None:
    value = signature_header([SECRET], NOW + skew, BODY)
    assert verify(headers(value), BODY, SECRET, tolerance=300, now=NOW)["id"] == "e1"


@pytest.mark.parametrize("skew", [-301, 301])
def test_a_replay_outside_the_tolerance_is_refused(skew: int) -> None:
    value = signature_header([SECRET], NOW + skew, BODY)
    with pytest.raises(WebhookError, match="tolerance"):
        verify(headers(value), BODY, SECRET, tolerance=300, now=NOW)


def test_a_tampered_body_is_refused() -> None:
    value = signature_header([SECRET], NOW, BODY)
    with pytest.raises(WebhookError, match="no signature matches"):
        verify(headers(value), BODY.replace(b"member.removed", b"member.added!"), SECRET, now=NOW)


def test_a_moved_timestamp_is_refused() -> None:
    # The timestamp is signed: bringing an old delivery's t forward breaks the signature.
    signature = signature_header([SECRET], NOW - 3600, BODY).split(",")[1]
    with pytest.raises(WebhookError, match="no signature matches"):
        verify(headers(f"t={NOW},{signature}"), BODY, SECRET, now=NOW)


def test_another_secret_is_refused() -> None:
    value = signature_header(["whsec_someone_else"], NOW, BODY)
    with pytest.raises(WebhookError):
        verify(headers(value), BODY, SECRET, now=NOW)


def test_during_rotation_any_v1_matching_any_held_secret_is_enough() -> None:
    both = signature_header([OLD_SECRET, SECRET], NOW, BODY)
    assert verify(headers(both), BODY, SECRET, now=NOW)["id"] == "e1"
    assert verify(headers(both), BODY, OLD_SECRET, now=NOW)["id"] == "e1"
    only_new = signature_header([SECRET], NOW, BODY)
    assert verify(headers(only_new), BODY, [OLD_SECRET, SECRET], now=NOW)["id"] == "e1"


@pytest.mark.parametrize(
    "value",
    ["", "v1=abc", f"t={NOW}", f"t=soon,v1={'0' * 64}", "garbage", f"t={NOW},v0=abc"],
)
def test_a_malformed_header_is_refused(value: str) -> None:
    with pytest.raises(WebhookError):
        verify(headers(value), BODY, SECRET, now=NOW)


def test_a_missing_header_is_refused() -> None:
    with pytest.raises(WebhookError, match="no Identity-Signature"):
        verify({}, BODY, SECRET, now=NOW)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"id": "e1"}'])
def test_a_signed_body_that_is_not_an_event_is_refused(body: bytes) -> None:
    value = signature_header([SECRET], NOW, body)
    with pytest.raises(WebhookError, match="body"):
        verify(headers(value), body, SECRET, now=NOW)


def test_the_default_tolerance_uses_the_clock() -> None:
    fresh = signature_header([SECRET], int(time.time()), BODY)
    assert verify(headers(fresh), BODY, SECRET)["id"] == "e1"
    stale = signature_header([SECRET], int(time.time()) - 301, BODY)
    with pytest.raises(WebhookError):
        verify(headers(stale), BODY, SECRET)


@pytest.mark.parametrize(
    "header",
    [
        "t=1800000000,v1=é" + "0" * 63,  # compare_digest raised TypeError on non-ASCII text
        "t=²,v1=" + "0" * 64,  # "²".isdigit() is true, and int("²") raised ValueError
        "t=١٨٠٠٠٠٠٠٠٠,v1=" + "0" * 64,  # Arabic-Indic digits: not a timestamp either
    ],
)
def test_a_header_with_non_ascii_values_is_refused_as_a_webhook_error(header: str) -> None:
    with pytest.raises(WebhookError):
        verify(headers(header), BODY, SECRET, now=NOW)


@pytest.mark.parametrize(
    "timestamp",
    [
        "1" + "0" * 400,  # past a float: the check against time.time() raised OverflowError
        "9" * 5000,  # past Python's 4300-digit limit: int() raised ValueError
    ],
)
def test_an_absurdly_long_timestamp_is_refused_as_a_webhook_error(timestamp: str) -> None:
    with pytest.raises(WebhookError):
        verify(headers(f"t={timestamp},v1={'0' * 64}"), BODY, SECRET)


@pytest.mark.parametrize("secret", ["", [SECRET, ""], []])
def test_an_empty_secret_is_a_configuration_error_not_a_key(secret: str | list[str]) -> None:
    # A consumer whose secret setting is missing would pass "": anyone can sign with it. One
    # that filters empty entries out of its list would pass none: every delivery would be
    # answered as forged, and the consumer would never learn its setting is missing.
    forged = signature_header([""], NOW, BODY)
    with pytest.raises(ValueError, match="secret") as refused:
        verify(headers(forged), BODY, secret, now=NOW)
    assert not isinstance(refused.value, WebhookError)
