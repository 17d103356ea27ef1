"""Structured logs: one JSON object a line, carrying the request id of the request at hand."""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import sys
import threading
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any, TextIO

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else was passed through ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

# Lines wait at most this long before they are written. One write per line costs more than
# everything else a discovery or JWKS request does; one write per batch costs next to nothing.
FLUSH_SECONDS = 0.05
FLUSH_LINES = 512

ACCESS_LOGGER = "identity.access"
_access = logging.getLogger(ACCESS_LOGGER)

# Line breaks JSON leaves unescaped inside strings, but that Python's splitlines, JavaScript
# and other log readers break lines at: a request's path (or any text a caller chose) holding
# one would end its line early and let the rest pose as a line of its own.
_UNESCAPED_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _one_line(json_text: str) -> str:
    """``json_text`` with every line break escaped: one line, the same JSON value."""
    # Every access-log line passes here; an ASCII one (nearly all) is checked, not rewritten.
    return json_text if json_text.isascii() else json_text.translate(_UNESCAPED_BREAKS)


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _one_line(json.dumps(entry, default=str, ensure_ascii=False))


class LineWriter:
    """Log lines bound for one stream, written in batches.

    Inside the event loop a line waits for a flush at most ``FLUSH_SECONDS`` later; outside
    it (start-up, CLI commands, other threads), and for warnings and worse, everything
    pending goes out at once, so lines keep their order and nothing serious waits.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending: list[str] = []
        # The loop a flush is scheduled on; a loop that has stopped will never run it.
        self._scheduled_on: asyncio.AbstractEventLoop | None = None
        # Handlers may log from worker threads while the loop thread flushes.
        self._lock = threading.Lock()

    def write(self, line: str, *, urgent: bool = False) -> None:
        with self._lock:
            self._pending.append(line)
            if urgent or len(self._pending) >= FLUSH_LINES:
                self._flush_locked()
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._flush_locked()
                return
            if self._scheduled_on is not loop:
                loop.call_later(FLUSH_SECONDS, self.flush)
                self._scheduled_on = loop

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        self._scheduled_on = None
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            # A closed or broken stream must not take requests down with it.
            pass


class JsonLineHandler(logging.Handler):
    """Formats every record as JSON and hands it to the shared ``LineWriter``."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self.writer = writer
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:  # logging's contract: report through handleError, never raise
            self.handleError(record)
            return
        self.writer.write(line, urgent=record.levelno >= logging.WARNING)


_writer: LineWriter | None = None


def log_request(request_id: str, method: str, path: str, status: int, duration_ms: float) -> None:
    """The access-log line of one request: the same JSON as a record of ``identity.access``
    with those fields as ``extra``, but formatted here directly, without a ``LogRecord``.
    """
    if not _access.isEnabledFor(logging.INFO):
        return
    if _writer is None:
        # Logging was set up by someone else (tests, an embedding app): use their handlers.
        extra = {"method": method, "path": path, "status": status, "duration_ms": duration_ms}
        _access.info("request", extra=extra)
        return
    _writer.write(
        _one_line(
            f'{{"ts": "{_timestamp(time.time())}", "level": "info", "logger": "{ACCESS_LOGGER}", '
            f'"msg": "request", "request_id": {encode_basestring(request_id)}, '
            f'"method": {encode_basestring(method)}, "path": {encode_basestring(path)}, '
            f'"status": {int(status)}, "duration_ms": {float(duration_ms)}}}\n'
        )
    )


@atexit.register
def _flush_at_exit() -> None:
    if _writer is not None:
        _writer.flush()


_PARAMETER_LOGGERS = ("aiosqlite", "sqlalchemy.engine", "psycopg", "asyncpg")
# httpx writes every request's full URL at INFO, and a webhook URL often carries its
# consumer's token (https://hooks.example/T0/B0/secret, ?token=...). The webhook
# dispatcher logs each failed delivery itself, by id.
_URL_LOGGERS = ("httpx", "httpcore")


def configure_logging(level: str) -> None:
    global _writer
    if _writer is not None:
        _writer.flush()
    _writer = LineWriter(sys.stderr)
    root = logging.getLogger()
    root.handlers[:] = [JsonLineHandler(_writer)]
    root.setLevel(level)
    # Database libraries log statements with their parameters (SQLAlchemy from INFO, the
    # drivers at DEBUG): queued mail bodies with reset links, fresh secrets; HTTP clients
    # log the URLs they call. However verbose the service, they say only warnings and errors.
    for name in _PARAMETER_LOGGERS + _URL_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # Our access log replaces uvicorn's, which has no request id.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
