"""The command line: clear sentences on bad input, explicit migrations, key rotation."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from identity import cli
from identity.clients.service import DEFAULT_SCOPE
from identity.db.engine import Database, create_engine
from identity.keys.models import SigningKey
from identity.settings import DEFAULT_POLICIES_DIR, Settings
from tests.processes import UNWRITABLE_STDOUTS, free_port, run_identity, run_identity_unwritable


def test_help_lists_the_commands(env: dict[str, str]) -> None:
    result = run_identity("--help", env=env)
    assert result.returncode == 0
    for command in ("serve", "migrate", "users", "clients", "keys"):
        assert command in result.stdout


def _subcommand(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    for name in path:
        (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = commands.choices[name]
    return parser


def test_every_option_of_the_create_commands_says_what_it_takes() -> None:
    # An option listed bare (--resource RESOURCES) left the operator to the README.
    for path in (("users", "create"), ("clients", "create")):
        command = _subcommand(cli.build_parser(), *path)
        bare = [a.option_strings for a in command._actions if not a.help]
        assert bare == [], (path, bare)
    scope = _subcommand(cli.build_parser(), "clients", "create").format_help()
    assert f'default "{DEFAULT_SCOPE}"' in " ".join(scope.split())


def test_a_bad_setting_stops_with_one_sentence_naming_it(env: dict[str, str]) -> None:
    result = run_identity("migrate", env=env | {"IDENTITY_ACCESS_TOKEN_TTL": "soon"})
    assert result.returncode == 2
    assert result.stderr.startswith("identity: IDENTITY_ACCESS_TOKEN_TTL must be")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_an_argument_that_is_not_utf8_is_named_by_position(env: dict[str, str]) -> None:
    # The child gets the raw byte 0xFF (subprocess encodes the lone surrogate back, PEP 383).
    result = run_identity(
        "clients", "create", "--name", "bill\udcffing", "--grant-type", "client_credentials",
        env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == "identity: argument 4 is not valid UTF-8 text.\n"


def _interrupted_at(
    monkeypatch: pytest.MonkeyPatch, target: str, capsys: pytest.CaptureFixture[str]
) -> tuple[object, str]:
    """``identity migrate`` with Ctrl-C pressed when ``target`` runs: its exit code, its stderr."""

    def press_ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(target, press_ctrl_c)
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.main(["migrate"])
    except KeyboardInterrupt:
        pytest.fail("the interrupt left main() as a KeyboardInterrupt: a traceback")
    return exit_.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "target",
    [
        # While the settings are read and the command's modules imported (a second or two
        # after Enter), and while the command runs.
        "identity.settings.Settings.from_env",
        "identity.commands.migrate",
    ],
)
def test_ctrl_c_exits_130_with_one_sentence_and_no_traceback(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    target: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, err = _interrupted_at(monkeypatch, target, capsys)
    assert code == 130
    assert err == "identity: interrupted.\n"


def test_the_command_line_starts_without_loading_the_database_libraries() -> None:
    # Python turns Ctrl-C into a traceback until main() is running: importing the entry
    # point must take no longer than the interpreter's own start.
    result = subprocess.run(
        [sys.executable, "-c", "import sys, identity.cli; print('sqlalchemy' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "False\n"


def test_an_unreachable_database_stops_migrate_with_a_clear_message(env: dict[str, str]) -> None:
    port = free_port()
    url = f"postgresql+psycopg://nobody@127.0.0.1:{port}/identity"
    result = run_identity("migrate", env=env | {"IDENTITY_DATABASE_URL": url})
    assert result.returncode == 1
    assert f"cannot use the database at 127.0.0.1:{port}" in result.stderr
    assert "check IDENTITY_DATABASE_URL and that the database server is running" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_is_refused_before_migrate_reports_success(
    env: dict[str, str], url: str
) -> None:
    # Each command opens its own, empty: migrate said it was done, and serve then asked for
    # `identity migrate` (naming the database "None") however often it was run.
    result = run_identity("migrate", env=env | {"IDENTITY_DATABASE_URL": url})
    assert result.returncode == 2
    assert result.stderr.startswith("identity: IDENTITY_DATABASE_URL names an in-memory ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


async def _keys(settings: Settings) -> list[SigningKey]:
    db = Database(create_engine(settings))
    try:
        async with db.transaction() as session:
            return list((await session.scalars(select(SigningKey))).all())
    finally:
        await db.dispose()


def test_migrate_then_rotate_adds_a_current_key(env: dict[str, str], settings: Settings) -> None:
    assert run_identity("migrate", env=env).returncode == 0
    first = run_identity("keys", "rotate", env=env)
    second = run_identity("keys", "rotate", "--alg", "ES256", env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    keys = asyncio.run(_keys(settings))
    assert {key.alg for key in keys} == {"RS256", "ES256"}
    assert all(key.retired_at is None for key in keys)
    assert all("d" not in key.public_jwk for key in keys)


@pytest.mark.parametrize(("stdout", "reason"), UNWRITABLE_STDOUTS)
def test_a_key_whose_rotation_cannot_be_shown_is_not_added(
    env: dict[str, str], settings: Settings, stdout: str | None, reason: str
) -> None:
    # The command fails: run again, it would have added a second key.
    assert run_identity("migrate", env=env).returncode == 0
    result = run_identity_unwritable("keys", "rotate", env=env, stdout=stdout)
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"identity: cannot write to standard output ({reason}); no key was added.\n"
    )
    assert asyncio.run(_keys(settings)) == []


@pytest.mark.parametrize(("stdout", "reason"), UNWRITABLE_STDOUTS)
def test_a_retirement_that_cannot_be_shown_is_undone(
    env: dict[str, str], settings: Settings, stdout: str | None, reason: str
) -> None:
    assert run_identity("migrate", env=env).returncode == 0
    for _ in range(2):
        assert run_identity("keys", "rotate", env=env).returncode == 0
    kid = asyncio.run(_keys(settings))[0].kid
    result = run_identity_unwritable("keys", "retire", "--kid", kid, env=env, stdout=stdout)
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"identity: cannot write to standard output ({reason}); no key was retired.\n"
    )
    assert all(key.retired_at is None for key in asyncio.run(_keys(settings)))


def test_a_bad_password_policy_stops_serve_with_one_sentence_naming_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    policy = tmp_path / "password.toml"
    policy.write_text('preset = "portal"\n', encoding="utf-8")
    result = run_identity(
        "serve", "--port", str(free_port()), env=env | {"IDENTITY_PASSWORD_POLICY": str(policy)}
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"identity: {policy}: presets is missing; fix the password policy file.\n"
    )


def test_a_bad_permission_catalogue_stops_serve_with_one_sentence_naming_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICIES_DIR, policies)
    with (policies / "permissions.toml").open("a", encoding="utf-8") as catalogue:
        catalogue.write("[surprise]\n")
    result = run_identity(
        "serve", "--port", str(free_port()), env=env | {"IDENTITY_POLICIES_DIR": str(policies)}
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"identity: {policies / 'permissions.toml'}: surprise: is not a known table; "
        "fix the policies file.\n"
    )


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda file: file.write_bytes(b"\xff\xfe"), "is not UTF-8 text (byte 1)"),
        (lambda file: (file.unlink(), file.mkdir()), "cannot be read (Is a directory)"),
    ],
)
def test_a_permission_catalogue_file_that_cannot_be_read_stops_serve_with_one_sentence(
    env: dict[str, str], tmp_path: Path, damage: Callable[[Path], object], problem: str
) -> None:
    # Said so of the password policy file, these ended serve (and the app) with a traceback.
    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICIES_DIR, policies)
    damage(policies / "roles.toml")
    result = run_identity(
        "serve", "--port", str(free_port()), env=env | {"IDENTITY_POLICIES_DIR": str(policies)}
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"identity: {policies / 'roles.toml'}: {problem}; fix the policies file.\n"
    )


BEFORE_MIGRATE = [
    ("keys", "rotate"),
    ("keys", "retire", "--kid", "k1"),
    ("users", "create", "--email", "ana@example.com", "--password", "Kx7#mQ9!vB2$"),
    ("clients", "create", "--name", "Billing", "--grant-type", "client_credentials"),
]


@pytest.mark.parametrize("command", BEFORE_MIGRATE)
def test_a_command_before_migrate_says_to_migrate(
    env: dict[str, str], command: tuple[str, ...]
) -> None:
    result = run_identity(*command, env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("identity: the database at ")
    assert "has no tables yet or is not at the latest migration" in result.stderr
    assert "run `identity migrate`" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", BEFORE_MIGRATE)
def test_a_command_before_migrate_leaves_no_embedded_database_behind(
    env: dict[str, str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    # An empty file there looked like a database to the next person, and to `serve`'s users.
    embedded = {name: value for name, value in env.items() if name != "IDENTITY_DATABASE_URL"}
    database = tmp_path / "identity.db"
    result = run_identity(*command, env=embedded)
    assert result.returncode == 1
    assert result.stderr == (
        f"identity: the database at {database} has no tables yet or is not at the latest "
        "migration; run `identity migrate` first.\n"
    )
    assert not database.exists()
    assert run_identity("migrate", env=embedded).returncode == 0
    assert database.exists()


@pytest.mark.parametrize("command", BEFORE_MIGRATE)
def test_an_embedded_database_that_is_not_one_is_named_in_a_sentence(
    env: dict[str, str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    # A damaged file, or a URL naming another file: migrate and serve said so, the others
    # stopped with SQLAlchemy's traceback.
    database = tmp_path / "identity.db"
    database.write_bytes(b"not a database\n" * 100)
    result = run_identity(*command, env=env | {"IDENTITY_DATABASE_URL": f"sqlite:///{database}"})
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"identity: cannot use the database at {database} (file is not a database); "
    )
    assert len(result.stderr.splitlines()) == 1


def _without_secret_key(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name != "IDENTITY_SECRET_KEY"}


@pytest.mark.parametrize(
    ("host", "workers", "reason"),
    [
        # The resolver's own words follow, which differ between C libraries and between a
        # machine with a name server and one without ("Temporary failure...").
        ("some.unresolvable.name.invalid", "1", ""),
        ("some.unresolvable.name.invalid", "2", ""),
        ("a" * 64 + ".example", "1", "not a valid host name)"),
    ],
)
def test_serve_names_a_host_it_cannot_look_up(
    env: dict[str, str], host: str, workers: str, reason: str
) -> None:
    # uvicorn logged the resolver's "Name or service not known" alone, and exited 3.
    result = run_identity(
        "serve", "--host", host, "--port", str(free_port()), "--workers", workers, env=env
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"identity: --host {host!r} cannot be listened on ({reason}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_serve_echoes_a_host_longer_than_any_dns_name_only_in_part(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A 10 kB --host came back whole in the one-line error.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", "--host", "a" * 10_000])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"identity: --host '{'a' * 253}…' cannot be listened on (")
    assert len(err) < 500


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_port_in_use_stops_with_one_sentence_before_migrating(
    env: dict[str, str], workers: str
) -> None:
    # uvicorn logged its own JSON line and exited 3, after migrating and printing the hint
    # for an empty database; with one worker, after starting the app too.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_identity("serve", "--port", str(port), "--workers", workers, env=env)
    assert result.returncode == 1
    assert result.stderr.startswith(f"identity: cannot listen on 127.0.0.1:{port} (")
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


@pytest.mark.parametrize("command", [("keys", "rotate"), ("serve", "--port", str(free_port()))])
def test_a_short_secret_key_file_stops_with_a_sentence_naming_it(
    env: dict[str, str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    (tmp_path / "secret.key").write_text("short\n", encoding="utf-8")
    assert run_identity("migrate", env=env).returncode == 0
    result = run_identity(*command, env=_without_secret_key(env))
    assert result.returncode == 1
    assert result.stderr == (
        f"identity: {tmp_path / 'secret.key'} holds a secret key shorter than 32 characters; "
        "restore the key it held, or set IDENTITY_SECRET_KEY.\n"
    )


def test_a_secret_key_file_of_binary_garbage_stops_with_a_sentence_naming_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    # The decoder's "'utf-8' codec can't decode byte 0xff..." named neither the file nor key.
    (tmp_path / "secret.key").write_bytes(b"\xff\xfe" * 32)
    assert run_identity("migrate", env=env).returncode == 0
    result = run_identity("keys", "rotate", env=_without_secret_key(env))
    assert result.returncode == 1
    assert result.stderr == (
        f"identity: {tmp_path / 'secret.key'} does not hold a secret key (it is not text); "
        "restore the key it held, or set IDENTITY_SECRET_KEY.\n"
    )


def test_the_embedded_database_and_secret_key_are_readable_by_their_owner_alone(
    env: dict[str, str], tmp_path: Path
) -> None:
    # The database was made as umask allowed, readable by every user of the machine: its
    # queued emails hold password-reset links, beside password hashes and addresses.
    embedded = {k: v for k, v in _without_secret_key(env).items() if k != "IDENTITY_DATABASE_URL"}
    umask = os.umask(0o022)  # the usual one, which left group and others read access
    try:
        assert run_identity("migrate", env=embedded).returncode == 0
        assert run_identity("keys", "rotate", env=embedded).returncode == 0
    finally:
        os.umask(umask)
    files = [*tmp_path.glob("identity.db*"), tmp_path / "secret.key"]
    assert tmp_path / "identity.db" in files
    assert {path.name: path.stat().st_mode & 0o077 for path in files} == dict.fromkeys(
        (path.name for path in files), 0
    )


def test_a_secret_key_that_cannot_be_created_is_named(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "secret.key").mkdir()
    assert run_identity("migrate", env=env).returncode == 0
    result = run_identity("keys", "rotate", env=_without_secret_key(env))
    assert result.returncode == 1
    assert result.stderr == (
        f"identity: cannot read or create the secret key {tmp_path / 'secret.key'} "
        "(Is a directory); check IDENTITY_DATA_DIR or set IDENTITY_SECRET_KEY.\n"
    )


@pytest.mark.parametrize(
    "command",
    [
        ("migrate",),
        ("users", "create", "--email", "ana@example.com", "--password", "Kx7#mQ9!vB2$"),
        ("clients", "create", "--name", "Billing", "--grant-type", "client_credentials"),
    ],
)
def test_a_data_folder_that_cannot_be_made_is_named(
    env: dict[str, str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    data_dir = tmp_path / "a-file" / "identity"
    embedded = {name: value for name, value in env.items() if name != "IDENTITY_DATABASE_URL"}
    result = run_identity(*command, env=embedded | {"IDENTITY_DATA_DIR": str(data_dir)})
    assert result.returncode == 1
    assert result.stderr == (
        f"identity: cannot create the data folder {data_dir} (Not a directory); "
        "check IDENTITY_DATA_DIR.\n"
    )


def test_serve_names_a_mail_outbox_that_cannot_be_made(env: dict[str, str], tmp_path: Path) -> None:
    # With no SMTP URL every email goes there: the server started and answered ready while
    # each password-reset email failed, retried to no end.
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    outbox = tmp_path / "a-file" / "outbox"
    result = run_identity(
        "serve", "--port", str(free_port()), env=env | {"IDENTITY_MAIL_OUTBOX": str(outbox)}
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"identity: cannot create the mail outbox folder {outbox} (Not a directory); "
        "check IDENTITY_MAIL_OUTBOX.\n"
    )


@pytest.mark.parametrize("workers", ["0", "257", "99999999"])
def test_serve_refuses_a_number_of_workers_it_could_not_run(
    env: dict[str, str], workers: str
) -> None:
    # 99999999 used to spawn workers until the machine ran out, deaf to SIGTERM meanwhile.
    # An unreachable database stops a serve that accepts the number before any worker starts.
    unreachable = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/identity"
    result = run_identity(
        "serve", "--port", str(free_port()), "--workers", workers,
        env=env | {"IDENTITY_DATABASE_URL": unreachable},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == "identity: --workers must be between 1 and 256.\n"


@pytest.mark.parametrize("command", [("keys", "rotate"), ("serve", "--port", str(free_port()))])
def test_signing_keys_made_with_another_secret_key_stop_with_a_sentence(
    env: dict[str, str], command: tuple[str, ...]
) -> None:
    # serve used to start "ready" and answer 500 on /jwks.json and every token request;
    # keys rotate added a key under the new secret beside the ones it could not open.
    assert run_identity("migrate", env=env).returncode == 0
    assert run_identity("keys", "rotate", env=env).returncode == 0
    other = env | {"IDENTITY_SECRET_KEY": "another-secret-key-0123456789abcdefghijklmnop"}
    result = run_identity(*command, env=other)
    assert result.returncode == 1
    # serve also logs its migration step, as JSON lines.
    assert (
        "identity: the signing keys in the database do not open with this secret key; "
        "set IDENTITY_SECRET_KEY (or secret.key in IDENTITY_DATA_DIR) to the one they were "
        "made with."
    ) in result.stderr.splitlines()
    assert "Traceback" not in result.stderr


async def _create_stray_table(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE users (id INTEGER)"))
    finally:
        await engine.dispose()


def test_a_migration_that_fails_is_not_called_an_unreachable_server(
    env: dict[str, str], settings: Settings
) -> None:
    # A table no migration made (or a second migrate racing this one): the server answered.
    asyncio.run(_create_stray_table(settings))
    result = run_identity("migrate", env=env)
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("identity: the migration of the database at ")
    assert "already exists" in message
    assert "server is running" not in message
    assert "Traceback" not in result.stderr


def test_migrations_started_at_once_take_turns(env: dict[str, str]) -> None:
    # Several machines' `identity serve` restarted together on an upgrade each migrate the one
    # PostgreSQL first: the second must wait for the first and find nothing left to do, not
    # fail on the tables the first is creating. So must two on one machine's SQLite file (two
    # `serve`s started together): one of them failed with "table accounts already exists".
    command = [sys.executable, "-m", "identity.cli", "migrate"]
    started = [
        subprocess.Popen(
            command, env=os.environ | env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    results = [(process.wait(timeout=120), process.stderr.read()) for process in started]  # type: ignore[union-attr]
    assert [code for code, _ in results] == [0, 0, 0, 0], results


def test_retiring_an_unknown_kid_echoes_it_only_in_part(env: dict[str, str]) -> None:
    # A pasted token or file, taken for a kid, filled the terminal and the logs.
    assert run_identity("migrate", env=env).returncode == 0
    result = run_identity("keys", "retire", "--kid", "k" * 5000, env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("identity: There is no active signing key with kid 'kkk")
    assert len(result.stderr) < 200


def test_a_kid_starting_with_a_hyphen_can_be_retired(
    env: dict[str, str], settings: Settings
) -> None:
    # A kid is a base64url thumbprint: one in 64 starts with "-", which argparse took for an
    # option ("expected one argument"), so that key could not be retired as documented.
    assert run_identity("migrate", env=env).returncode == 0
    result = run_identity("keys", "retire", "--kid", "-nQ9xx00", env=env)
    assert result.returncode == 1
    assert result.stderr == "identity: There is no active signing key with kid '-nQ9xx00'.\n"


@pytest.mark.parametrize(
    "args, extra_env",
    [
        (("migrate",), {"IDENTITY_ACCESS_TOKEN_TTL": "soon"}),  # a setting refused
        (("clients", "create", "--grant-type", "nonsense"), {}),  # an argument refused
    ],
)
def test_with_stderr_closed_errors_go_nowhere_not_to_stdout(
    env: dict[str, str], args: tuple[str, ...], extra_env: dict[str, str]
) -> None:
    # Python starts with sys.stderr None when file descriptor 2 is closed (`2>&-`), and
    # print(file=None) writes to stdout: which carries secrets and JSON for scripts.
    result = subprocess.run(
        [sys.executable, "-m", "identity.cli", *args],
        env=os.environ | env | extra_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        preexec_fn=lambda: os.close(2),
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == b""


async def _stamp(settings: Settings, revision: str) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
            )
    finally:
        await engine.dispose()


@pytest.mark.parametrize("command", [("migrate",), *BEFORE_MIGRATE], ids=" ".join)
def test_a_database_from_a_newer_version_is_named_as_such(
    env: dict[str, str], settings: Settings, command: tuple[str, ...]
) -> None:
    # A rollback to an older release after the newer one migrated: Alembic cannot find
    # the database's revision among ours, and migrate (and serve) stopped with a traceback;
    # the commands that write ran on, into tables this version does not know the shape of.
    assert run_identity("migrate", env=env).returncode == 0
    before = asyncio.run(_keys(settings))
    asyncio.run(_stamp(settings, "9999"))
    result = run_identity(*command, env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("identity: the database at ")
    assert "migration '9999', which this version does not know" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert [k.kid for k in asyncio.run(_keys(settings))] == [k.kid for k in before]


@pytest.fixture
def unwritable() -> Iterator[Callable[[Path], None]]:
    """Makes a file unwritable to this user, undone at teardown. Root writes through file
    modes, so as root the file is made immutable (chattr +i) instead."""
    as_root = os.geteuid() == 0
    made: list[Path] = []

    def make(path: Path) -> None:
        if as_root:
            subprocess.run(["chattr", "+i", str(path)], check=True)
        else:
            path.chmod(0o400)
        made.append(path)

    yield make
    for path in made:
        if as_root:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o600)


def test_a_read_only_embedded_database_is_named_with_advice_for_a_file(
    env: dict[str, str], tmp_path: Path, unwritable: Callable[[Path], None]
) -> None:
    # The advice was the server's ("check ... that the database server is running"), which
    # SQLite has none of: the file and its folder are what to look at.
    embedded = {name: value for name, value in env.items() if name != "IDENTITY_DATABASE_URL"}
    assert run_identity("migrate", env=embedded).returncode == 0
    database = tmp_path / "identity.db"
    unwritable(database)
    result = run_identity("keys", "rotate", env=embedded)
    assert result.returncode == 1
    assert result.stderr == (
        f"identity: cannot use the database at {database} (attempt to write a readonly "
        "database); check IDENTITY_DATABASE_URL and that this user can write to the file "
        "and its folder.\n"
    )
