"""`identity users create`: the password policy's verdict at the terminal."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from identity.accounts.password_policy_file import LONGEST_MAX_LENGTH
from identity.cli import _password_from_stdin, main
from identity.settings import Settings
from tests.processes import UNWRITABLE_STDOUTS, run_identity, run_identity_unwritable


@pytest.fixture
def environment(
    database: Settings, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_creates_a_user_and_prints_its_id_and_email(
    environment: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["users", "create", "--email", "Admin@Example.com", "--password", "Kx7#mQ9!vB2$",
                 "--admin"])  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["email"] == "admin@example.com"
    assert printed["id"]


def _stdin(data: bytes) -> io.TextIOWrapper:
    # Whatever the locale decodes stdin with, the password is read as the bytes it is.
    return io.TextIOWrapper(io.BytesIO(data), encoding="latin-1")


def _refused_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], data: bytes
) -> tuple[str, str]:
    """`users create --password-stdin` with ``data`` piped in fails with exit code 1; what
    it printed (out, err)."""
    monkeypatch.setattr("sys.stdin", _stdin(data))
    with pytest.raises(SystemExit) as exit_:
        main(["users", "create", "--email", "ana@example.com", "--password-stdin"])
    assert exit_.value.code == 1
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_reads_the_password_from_stdin(
    environment: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", _stdin("Zq#8vK!m2Rx€\n".encode()))
    assert main(["users", "create", "--email", "ana@example.com", "--password-stdin"]) == 0
    assert json.loads(capsys.readouterr().out)["email"] == "ana@example.com"


def test_a_password_on_stdin_that_is_not_utf8_is_refused_as_such(
    environment: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, err = _refused_from_stdin(monkeypatch, capsys, b"Zq#8vK!m2Rx\xff\n")
    assert err == "identity: the password on stdin is not valid UTF-8 text.\n"


def test_an_empty_stdin_is_named_not_judged_by_the_policy(
    environment: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing piped in (stdin at its end): the policy's list of missing letters misleads.
    _, err = _refused_from_stdin(monkeypatch, capsys, b"")
    assert err == (
        "identity: --password-stdin read nothing; give the password as a line on stdin.\n"
    )


def test_a_closed_stdin_is_named_not_a_traceback(environment: dict[str, str]) -> None:
    # Started with file descriptor 0 closed (`<&-`, some service managers), Python has no
    # sys.stdin at all, and --password-stdin stopped with an AttributeError.
    result = subprocess.run(
        [sys.executable, "-m", "identity.cli", "users", "create", "--email", "ana@example.com",
         "--password-stdin"],
        env=os.environ | environment,
        capture_output=True,
        preexec_fn=lambda: os.close(0),
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        "identity: --password-stdin found standard input closed; "
        "give the password as a line on stdin.\n"
    )


def test_a_refused_password_prints_the_policy_reasons_and_fails(
    environment: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, err = _refused_from_stdin(monkeypatch, capsys, b"Verano2025\n")
    assert out == ""
    assert err.startswith("identity: the password was refused by the password policy.")
    assert "Add a symbol such as $, % or &." in err
    assert "Avoid common words and passwords" in err
    assert "Verano2025" not in err


def test_an_email_in_use_fails_with_a_sentence(
    environment: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    main(["users", "create", "--email", "ana@example.com", "--password", "Kx7#mQ9!vB2$"])
    with pytest.raises(SystemExit) as exit_:
        main(["users", "create", "--email", "ANA@example.com", "--password", "Zq#8vK!m2Rx"])
    assert exit_.value.code == 1
    assert "already exists" in capsys.readouterr().err


def test_a_broken_policy_file_is_named(
    environment: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('preset = "portal"\n', encoding="utf-8")
    monkeypatch.setenv("IDENTITY_PASSWORD_POLICY", str(broken))
    with pytest.raises(SystemExit):
        main(["users", "create", "--email", "ana@example.com", "--password", "Kx7#mQ9!vB2$"])
    assert f"{broken}: presets is missing" in capsys.readouterr().err


@pytest.mark.parametrize(("stdout", "reason"), UNWRITABLE_STDOUTS)
def test_a_user_that_cannot_be_shown_is_not_kept(
    environment: dict[str, str], stdout: str | None, reason: str
) -> None:
    # The command fails: a user kept anyway made the same command, run again, a conflict.
    command = ("users", "create", "--email", "ana@example.com", "--password", "Kx7#mQ9!vB2$")
    result = run_identity_unwritable(*command, env=environment, stdout=stdout)

    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"identity: cannot write to standard output ({reason}); no user was created.\n"
    )
    again = run_identity(*command, env=environment)
    assert again.returncode == 0, again.stderr


def test_a_password_line_longer_than_any_policy_allows_is_refused_unread(
    environment: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A binary piped in by mistake has no line break: it was read whole into memory first.
    piped = _stdin(b"x" * 10_000_000)
    monkeypatch.setattr("sys.stdin", piped)
    with pytest.raises(SystemExit) as exit_:
        main(["users", "create", "--email", "ana@example.com", "--password-stdin"])
    assert exit_.value.code == 1
    assert capsys.readouterr().err == (
        "identity: the password on stdin is longer than any password may be "
        f"({LONGEST_MAX_LENGTH} characters).\n"
    )
    assert piped.buffer.tell() <= LONGEST_MAX_LENGTH * 4 + 6


def test_the_longest_password_any_policy_allows_is_read_whole(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # At the limit: a byte order mark, the longest max_length in 4-byte characters, CRLF.
    line = b"\xef\xbb\xbf" + "😀".encode() * LONGEST_MAX_LENGTH + b"\r\n"
    monkeypatch.setattr("sys.stdin", _stdin(line))
    assert _password_from_stdin() == "😀" * LONGEST_MAX_LENGTH
