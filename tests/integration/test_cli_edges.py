"""The command line at its edges: inputs and surroundings a careful operator meets, each
answered with one sentence on stderr and the right exit status, never a traceback."""

from __future__ import annotations

import pytest

from tests.processes import run_identity


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
