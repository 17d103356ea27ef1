"""A six-digit code that is surely wrong, for tests of refused codes.

A fixed guess such as 000000 is one of the three codes the server accepts (a step either
side of its own) about one time in 333,333: over the dozen places that guess, about one run
of the suite in 28,000 would see the guess let in.
"""

from __future__ import annotations

import time

import pyotp

STEP = 30


def wrong_code(secret: str) -> str:
    """Six digits that no code of ``secret`` is from a step before now to three after: the
    server's window at any moment of the next minute."""
    generator = pyotp.TOTP(secret)
    now = time.time()
    near = {generator.at(now + STEP * step) for step in range(-1, 4)}
    return next(code for code in (f"{n:06d}" for n in range(len(near) + 1)) if code not in near)
