"""PKCE (RFC 7636), S256 only, as RFC 9700 §2.1.1 recommends: ``plain`` is never accepted."""

from __future__ import annotations

import hmac
import re

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from identity.oauth.errors import InvalidGrantError, InvalidRequestError

SUPPORTED_METHODS = ("S256",)

# RFC 7636 §4.1: 43 to 128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
VERIFIER_SYNTAX = re.compile(r"[A-Za-z0-9\-._~]{43,128}")

NO_CHALLENGE = "The client must use PKCE: the code has no code_challenge."


def check_code_verifier(
    verifier: str | None, challenge: str | None, method: str | None, *, required: bool
) -> None:
    """Token-endpoint step: the verifier must match the challenge saved with the code.

    A code issued without a challenge takes no verifier (a verifier then means the client
    and the authorization request disagree, a downgrade attempt); one issued with a
    challenge takes exactly the matching verifier. ``required`` is the client's setting,
    checked again here in case the code predates a change of it.
    """
    if challenge is None:
        if verifier is not None:
            raise InvalidGrantError("code_verifier was sent but the code has no code_challenge.")
        if required:
            raise InvalidGrantError(NO_CHALLENGE)
        return
    if verifier is None:
        raise InvalidGrantError("code_verifier is required for this code.")
    if not VERIFIER_SYNTAX.fullmatch(verifier):
        raise InvalidRequestError("code_verifier must be 43 to 128 unreserved characters.")
    if method not in SUPPORTED_METHODS or not hmac.compare_digest(
        create_s256_code_challenge(verifier).encode(), challenge.encode()
    ):
        raise InvalidGrantError("code_verifier does not match the code_challenge.")
