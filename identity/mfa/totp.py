"""Time-based one-time passwords (RFC 6238) as authenticator apps make them: SHA-1, six
digits, 30-second steps. Pure functions; storage and the replay guard are in the service."""

from __future__ import annotations

import hmac
from datetime import datetime

import pyotp
import segno

from identity.mfa.typed_codes import compact

DIGITS = 6
# One step either side: a phone clock up to ~30 s off, or a code typed as it rolled over.
DRIFT_STEPS = 1


def new_secret() -> str:
    """160 random bits in base32, the key length RFC 4226 §4 recommends."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The URI as an inline ``<svg>`` element for a page to embed.

    Inline markup rather than a ``data:`` image: the pages' Content-Security-Policy
    (``img-src 'self'``) would block a data URI, and should not be loosened for this.
    """
    return segno.make(uri, error="m").svg_inline(scale=5, border=2)


def normalise_code(raw: str) -> str | None:
    """Six ASCII digits, however they were spaced, dashed or widened; None for anything else."""
    code = compact(raw)
    return code if len(code) == DIGITS and code.isascii() and code.isdigit() else None


def matching_step(secret: str, raw_code: str, at: datetime) -> int | None:
    """The time step whose code ``raw_code`` is, within the drift window; None if none."""
    code = normalise_code(raw_code)
    if code is None:
        return None
    generator = pyotp.TOTP(secret)
    current = generator.timecode(at)
    # Every step of the window is computed and compared in constant time, so the answer's
    # timing does not say which step (if any) matched.
    matched = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(generator.generate_otp(step), code):
            matched = step
    return matched
