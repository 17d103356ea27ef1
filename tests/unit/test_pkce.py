"""PKCE rules without the app: S256 only, verifier syntax, no verifier without challenge."""

from __future__ import annotations

import pytest

from identity.oauth.errors import InvalidGrantError, InvalidRequestError
from identity.oauth.pkce import check_code_verifier

# RFC 7636 Appendix B.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_rfc_7636_example_verifier_matches() -> None:
    check_code_verifier(VERIFIER, CHALLENGE, "S256", required=True)


def test_plain_method_is_refused_even_when_verifier_equals_challenge() -> None:
    with pytest.raises(InvalidGrantError):
        check_code_verifier(CHALLENGE, CHALLENGE, "plain", required=True)


@pytest.mark.parametrize(
    "verifier",
    ["a" * 42, "a" * 129, VERIFIER[:-1] + "+", VERIFIER[:-1] + "=", VERIFIER[:-1] + "é", ""],
)
def test_verifier_outside_rfc_7636_syntax_is_invalid_request(verifier: str) -> None:
    with pytest.raises((InvalidRequestError, InvalidGrantError)):
        check_code_verifier(verifier or None, CHALLENGE, "S256", required=True)


def test_lengths_43_and_128_are_accepted_syntax() -> None:
    for length in (43, 128):
        with pytest.raises(InvalidGrantError):  # well formed, just not matching
            check_code_verifier("a" * length, CHALLENGE, "S256", required=True)


def test_verifier_without_challenge_is_refused() -> None:
    with pytest.raises(InvalidGrantError):
        check_code_verifier(VERIFIER, None, None, required=False)


def test_no_pkce_at_all_passes_only_when_not_required() -> None:
    check_code_verifier(None, None, None, required=False)
    with pytest.raises(InvalidGrantError):
        check_code_verifier(None, None, None, required=True)


def test_missing_verifier_for_a_challenge_is_refused() -> None:
    with pytest.raises(InvalidGrantError):
        check_code_verifier(None, CHALLENGE, "S256", required=False)
