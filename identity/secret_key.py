"""The service's secret key: from IDENTITY_SECRET_KEY, or a file made on first start."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from identity.settings import Settings

SECRET_FILE = "secret.key"  # noqa: S105 - a file name, not a secret


def resolve_secret_key(settings: Settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / SECRET_FILE
    if not path.exists():
        _create(path)
    try:
        value = path.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{path} does not hold a secret key (it is not text)") from None
    if len(value) < 32:
        raise ValueError(f"{path} holds a secret key shorter than 32 characters")
    return value


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
        # link() fails if the file exists: of two processes starting at once, the first
        # one's key wins whole and the other reads it, never a half-written file.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
