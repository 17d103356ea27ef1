"""The TOML files operators edit (policies/): every way one cannot be read, as a sentence."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


class UnreadableToml(ValueError):
    """``str()`` says what is wrong with the file, for its loader to prefix with the path."""


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise UnreadableToml("the file is missing") from None
    except OSError as exc:  # a folder, no permission
        raise UnreadableToml(f"cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UnreadableToml(f"is not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:  # tomllib decodes the bytes itself
        raise UnreadableToml(f"is not UTF-8 text (byte {exc.start + 1})") from None
