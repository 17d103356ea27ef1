"""asyncpg's connect options as a database URL's query gives them: checked, then converted.

SQLAlchemy hands the query to ``asyncpg.connect`` as keyword arguments, as text: a number
such as ``statement_cache_size=10`` failed with a TypeError on connecting even when well
formed, and a word asyncpg does not know failed there too, as a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError("a number of seconds greater than zero")
    return seconds


def _whole(value: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise ValueError("a whole number")
    return int(value)


def _flag(value: str) -> bool:
    if value not in ("true", "false"):
        raise ValueError("true or false")
    return value == "true"


def _one_of(*choices: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"one of {', '.join(choices)}")
        return value

    return check


_CONVERT: dict[str, Callable[[str], Any]] = {
    "timeout": _seconds,
    "command_timeout": _seconds,
    "port": _whole,  # see converted
    "statement_cache_size": _whole,
    "prepared_statement_cache_size": _whole,
    "max_cached_statement_lifetime": _whole,
    "max_cacheable_statement_size": _whole,
    "direct_tls": _flag,
    # asyncpg's SSLMode and SessionAttribute, spelt out: asyncpg is an optional driver.
    "ssl": _one_of("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "target_session_attrs": _one_of(
        "any", "primary", "standby", "prefer-standby", "read-write", "read-only"
    ),
    "gsslib": _one_of("gssapi", "sspi"),
}

# Options asyncpg wants as Python objects, or takes from the URL's other parts.
_NOT_FROM_TEXT = frozenset(
    {"loop", "connection_class", "record_class", "server_settings", "dsn", "database"}
)
# Read by SQLAlchemy itself, not handed on as text: each given once per host to fail over
# between (``?host=db1:5432&host=db2:5432``).
_HOSTS = frozenset({"host", "port"})


def _checked(option: str, value: str) -> Any:
    try:
        return _CONVERT[option](value)
    except ValueError as exc:
        raise ValueError(f"has {option}={value!r}; it must be {exc}") from None


def converted(query: Mapping[str, str | tuple[str, ...]]) -> dict[str, Any]:
    """The options of ``query`` that asyncpg wants as something other than text; raises
    ValueError, worded to follow the setting's name, for one it would refuse."""
    options: dict[str, Any] = {}
    for option, value in query.items():
        if option in _NOT_FROM_TEXT:
            raise ValueError(f"has the option {option!r}, which cannot be given in a URL")
        values = value if isinstance(value, tuple) else (value,)
        if option == "port":
            # Checked only: SQLAlchemy reads it, and a word there failed on connecting, as
            # a traceback.
            for port in values:
                _checked(option, port)
        elif len(values) > 1 and option not in _HOSTS:
            raise ValueError(f"gives the option {option!r} more than once")
        elif option in _CONVERT:
            options[option] = _checked(option, values[0])
    return options
