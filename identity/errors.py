"""Domain errors: what went wrong in business terms, with no HTTP in them.

The web layer maps each to a response; ``code`` is stable and becomes the problem ``type``.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"
    status = 400

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    code = "not-found"
    status = 404


class Conflict(DomainError):
    code = "conflict"
    status = 409


class Forbidden(DomainError):
    code = "forbidden"
    status = 403


class InvalidInput(DomainError):
    code = "invalid-input"
    status = 422


class UnstorableText(InvalidInput):
    """Text no database can hold (identity.db.text_guard refuses it before any statement)."""

    def __init__(self, field: str | None = None) -> None:
        detail = (
            "A text value holds a character that cannot be stored: NUL (U+0000) or an "
            "unpaired surrogate (U+D800 to U+DFFF)."
        )
        named = {"errors": [{"field": field, "message": detail}]} if field else {}
        super().__init__(detail, **named)


class PolicyViolation(DomainError):
    """A value breaks a policy (password rules, say); ``extra['reasons']`` lists reason ids."""

    code = "policy-violation"
    status = 422


class RateLimited(DomainError):
    code = "rate-limited"
    status = 429

    def __init__(self, detail: str, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after
