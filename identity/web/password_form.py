"""The server side of templates/_password_fields.html, shared by every page that sets a password.

Without JavaScript the "generate" button submits the form with ``suggest``: the handler
answers with the same page, a generated password filled into both fields and shown as text,
instead of acting on the form. A refusal by the policy is shown as its reasons in the page's
language.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
from litestar.datastructures import FormMultiDict

from identity.errors import PolicyViolation
from identity.runtime import Runtime

SUGGEST_FIELD = "suggest"


def wants_suggestion(form: FormMultiDict) -> bool:
    return form.get(SUGGEST_FIELD) is not None


async def context(
    runtime: Runtime, *, suggest: bool = False, email: str = "", name: str = ""
) -> dict[str, Any]:
    """What the macro needs: the policy's rules and, when asked for, a generated password.

    ``email`` and ``name`` are the details of the user the password is for, where the page
    knows them: the suggestion avoids them, and password.js sends them with its live check,
    so both agree with the check the form's submission gets.
    """
    suggestion = (
        await anyio.to_thread.run_sync(partial(runtime.passwords.generate, email=email, name=name))
        if suggest
        else None
    )
    return {
        "password_rules": runtime.passwords.policy.describe(),
        "suggestion": suggestion,
        "password_for": {"email": email, "name": name},
    }


def refusal_reasons(exc: PolicyViolation, locale: str) -> list[str]:
    """The policy's reasons for refusing a password, in ``locale`` (English if missing)."""
    return [
        reason["messages"].get(locale) or reason["messages"]["en"]
        for reason in exc.extra.get("reasons", [])
    ]
