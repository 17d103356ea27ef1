"""What ``identity serve`` tells the worker processes it starts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from identity import server
from identity.metrics import MULTIPROCESS_DIR_VAR
from identity.settings import Settings


def _workers_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, workers: int, issuer: str | None = None
) -> Settings:
    """The settings a worker reads from the environment ``serve`` hands it (uvicorn's
    workers inherit ``os.environ``). ``serve`` writes into a copy: monkeypatch restores only
    the variables it was asked to set or delete, and what ``serve`` added (a metrics folder
    it has since removed) would reach every server later tests start."""
    monkeypatch.setattr(os, "environ", dict(os.environ))
    monkeypatch.delenv(MULTIPROCESS_DIR_VAR, raising=False)
    seen: list[Settings] = []
    monkeypatch.setattr(
        server, "_run_uvicorn", lambda *_: seen.append(Settings.from_env(os.environ))
    )
    environ = {"IDENTITY_DATA_DIR": str(tmp_path)}
    settings = Settings.from_env(environ | ({"IDENTITY_ISSUER": issuer} if issuer else {}))
    server.serve(settings, host="127.0.0.1", port=0, workers=workers)
    return seen[0]


def test_workers_share_rate_limits_by_their_number_while_redis_is_down(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("IDENTITY_SERVER_PROCESSES", raising=False)
    assert _workers_settings(monkeypatch, tmp_path, 3).server_processes == 3


def test_an_operators_count_of_processes_across_machines_is_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IDENTITY_SERVER_PROCESSES", "12")
    assert _workers_settings(monkeypatch, tmp_path, 3).server_processes == 12


def test_several_workers_without_redis_are_warned_of_what_they_do_not_share(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("IDENTITY_SERVER_PROCESSES", raising=False)
    _workers_settings(monkeypatch, tmp_path, 2)
    (warning,) = _warnings(capsys)
    assert "IDENTITY_REDIS_URL" in warning


def _warnings(capsys: pytest.CaptureFixture[str]) -> list[str]:
    # serve logs JSON lines on stderr, warnings at once
    entries = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    return [e["msg"] for e in entries if e["logger"] == "identity.server"]


@pytest.mark.parametrize(
    ("issuer", "warned"),
    [
        ("http://id.example.com", True),
        ("http://192.168.1.20:8000", True),
        ("http://127.0.0.1:8000", False),
        ("http://localhost:8000", False),
        ("http://[::1]:8000", False),
        ("https://id.example.com", False),
    ],
)
def test_an_http_issuer_beyond_this_machine_is_warned_of(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    issuer: str,
    warned: bool,
) -> None:
    _workers_settings(monkeypatch, tmp_path, 1, issuer)
    about_issuer = [w for w in _warnings(capsys) if "IDENTITY_ISSUER" in w]
    assert len(about_issuer) == (1 if warned else 0)
