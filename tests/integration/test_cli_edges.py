"""The command line at its edges: inputs and surroundings a careful operator meets, each
answered with one sentence on stderr and the right exit status, never a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from identity.accounts.service import authenticate
from identity.runtime import Runtime
from identity.settings import Settings
from tests.processes import run_identity

PASSWORD = "Kx7#mQ9!vB2$"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        # The Redis URL pasted into the wrong variable.
        (
            "redis://127.0.0.1:6379/0",
            "names the database 'redis'; only SQLite and PostgreSQL are supported.",
        ),
        # libpq's and many hosting providers' spelling, which SQLAlchemy no longer knows.
        (
            "postgres://u@db/identity",
            "starts with postgres://; write postgresql:// for PostgreSQL.",
        ),
    ],
)
def test_a_database_url_naming_no_known_database_is_a_sentence(
    env: dict[str, str], url: str, said: str
) -> None:
    # SQLAlchemy looked the scheme up among its dialects to learn the driver, and a scheme
    # it has none for stopped the command with NoSuchModuleError's traceback.
    result = run_identity("migrate", env=env | {"IDENTITY_DATABASE_URL": url})
    assert result.returncode == 2
    assert result.stderr == f"identity: IDENTITY_DATABASE_URL {said}\n"


class Terminal:
    """``identity`` with a pseudo-terminal as its stdin and stderr, as a person at a
    keyboard runs it; stdout is a pipe, for the JSON."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.master, replica = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "identity.cli", *args],
            env=os.environ | env,
            stdin=replica,
            stdout=subprocess.PIPE,
            stderr=replica,
            start_new_session=True,
        )
        os.close(replica)
        self.screen = b""

    def _read(self, timeout: float) -> bool:
        """Adds what the terminal shows within ``timeout`` to ``screen``; False once closed."""
        if not select.select([self.master], [], [], timeout)[0]:
            return True
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # the command exited and the terminal closed
            return False
        self.screen += chunk
        return bool(chunk)

    def wait_for(self, text: bytes, timeout: float = 30) -> None:
        """Read what the terminal shows until ``text`` appears."""
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} never appeared; the screen shows {self.screen!r}"
            assert self._read(left), f"no {text!r}; the screen shows {self.screen!r}"

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def finish(self) -> tuple[int, str]:
        """The exit status and stdout; the rest of the screen is read into ``screen``."""
        out, _ = self.process.communicate(timeout=60)
        while self._read(0.2) and select.select([self.master], [], [], 0)[0]:
            pass
        return self.process.returncode, out.decode()

    def close(self) -> None:
        if self.process.poll() is None:  # a test that failed half-way
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()  # type: ignore[union-attr]
        os.close(self.master)


@pytest.fixture
def terminal(env: dict[str, str]) -> Iterator[Callable[..., Terminal]]:
    """Starts ``identity`` at a terminal; each is stopped and closed at teardown."""
    started: list[Terminal] = []

    def start(*args: str) -> Terminal:
        started.append(Terminal(*args, env=env))
        return started[-1]

    yield start
    for each in started:
        each.close()


@pytest.fixture
def migrated(env: dict[str, str]) -> dict[str, str]:
    assert run_identity("migrate", env=env).returncode == 0
    return env


def test_a_password_typed_at_a_terminal_is_not_shown(
    migrated: dict[str, str], terminal: Callable[..., Terminal]
) -> None:
    # `serve` tells the first administrator to run `users create ... --password-stdin`: at a
    # terminal that waited without a word while the terminal echoed the password as typed,
    # onto the screen and into its scrollback.
    typing = terminal("users", "create", "--email", "ana@example.com", "--password-stdin")
    typing.wait_for(b"Password: ")
    typing.type(PASSWORD)
    typing.wait_for(b"Repeat the password: ")
    typing.type(PASSWORD)
    code, out = typing.finish()
    assert code == 0
    assert json.loads(out)["email"] == "ana@example.com"
    assert PASSWORD.encode() not in typing.screen


def test_two_different_passwords_typed_at_a_terminal_create_no_user(
    migrated: dict[str, str], terminal: Callable[..., Terminal]
) -> None:
    typing = terminal("users", "create", "--email", "ana@example.com", "--password-stdin")
    typing.wait_for(b"Password: ")
    typing.type(PASSWORD)
    typing.wait_for(b"Repeat the password: ")
    typing.type(PASSWORD + "x")
    code, out = typing.finish()
    assert (code, out) == (1, "")
    assert b"identity: the two passwords typed differ; no user was created." in typing.screen
    again = run_identity(
        "users", "create", "--email", "ana@example.com", "--password-stdin",
        env=migrated, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr


async def _signs_in(settings: Settings, email: str, password: str) -> bool:
    runtime = Runtime(settings)
    try:
        return await authenticate(runtime.db, runtime.passwords, email, password) is not None
    finally:
        await runtime.close()


def test_a_password_file_saved_with_a_byte_order_mark_gives_the_password_without_it(
    migrated: dict[str, str], settings: Settings
) -> None:
    # Windows editors start a UTF-8 file with U+FEFF. Kept, it became the password's first
    # character, one no keyboard types: the user could never sign in with what the file shows.
    result = run_identity(
        "users", "create", "--email", "ana@example.com", "--password-stdin",
        env=migrated, stdin="\ufeff" + PASSWORD + "\r\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert asyncio.run(_signs_in(settings, "ana@example.com", PASSWORD))
