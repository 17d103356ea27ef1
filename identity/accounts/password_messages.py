"""Password texts in every language we serve, from identity/i18n/passwords.<lang>.toml.

Pages, the API and the CLI name a text by its stable id and fill it here, so a wording
changes in one place and a translation cannot drift from its English original.
"""

from __future__ import annotations

from typing import Any

from identity.i18n import SUPPORTED_LOCALES, catalogue

LANGUAGES = SUPPORTED_LOCALES


def texts(message_id: str, **params: Any) -> dict[str, str]:
    """The text ``message_id`` in every language, placeholders filled."""
    return {language: catalogue(language)[message_id].format(**params) for language in LANGUAGES}
