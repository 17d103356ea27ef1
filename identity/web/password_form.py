"""The server side of templates/_password_fields.html, shared by every page that sets a password.

Without JavaScript the "generate" button submits the form with ``suggest``: the handler
answers with the same page, a generated password filled into both fields and shown as text,
instead of acting on the form. A refusal by the policy is shown as its reasons in the page's
language.
"""

from __future__ import annotations

from typing import Any

import anyio
from litestar.datastructures import FormMultiDict

from identity.errors import PolicyViolation
from identity.runtime import Runtime

SUGGEST_FIELD = "suggest"


def wants_suggestion(form: FormMultiDict) -> bool:
    return form.get(SUGGEST_FIELD) is not None


async def context(runtime: Runtime, *, suggest: bool = False) -> dict[str, Any]:
    """What the macro needs: the policy's rules and, when asked for, a generated password."""
    suggestion = await anyio.to_thread.run_sync(runtime.passwords.generate) if suggest else None
    return {"password_rules": runtime.passwords.policy.describe(), "suggestion": suggestion}


def refusal_reasons(exc: PolicyViolation, locale: str) -> list[str]:
    """The policy's reasons for refusing a password, in ``locale`` (English if missing)."""
    return [
        reason["messages"].get(locale) or reason["messages"]["en"]
        for reason in exc.extra.get("reasons", [])
    ]
