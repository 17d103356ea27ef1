"""``identity clients create``: JSON with the secret shown once, readable one-line errors."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select

from identity.cli import main
from identity.clients.models import OAuthClient
from identity.crypto import digest
from identity.db.engine import Database, create_engine
from identity.settings import Settings
from tests.processes import UNWRITABLE_STDOUTS, run_identity_unwritable

URI = "https://a.example/cb"


@pytest.fixture
def cli_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["migrate"]) == 0
    return Settings.from_env(env)


def stored_client(settings: Settings, client_id: str) -> OAuthClient | None:
    async def read() -> OAuthClient | None:
        db = Database(create_engine(settings))
        try:
            async with db.transaction() as session:
                return await session.get(OAuthClient, client_id)
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_confidential_client_gets_a_secret_stored_only_as_digest(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    code = main(
        [
            "clients",
            "create",
            "--name",
            "Billing portal",
            "--redirect-uri",
            "https://billing.example.com/cb",
            "--resource",
            "https://billing.example.com",
            "--scope",
            "openid email",
        ]
    )

    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown["client_secret"]) >= 43  # 32 random bytes, base64url
    assert shown["grant_types"] == ["authorization_code", "refresh_token"]
    assert shown["require_pkce"] is True
    row = stored_client(cli_env, shown["client_id"])
    assert row is not None
    assert row.secret_hash == digest(shown["client_secret"])
    assert row.resources == ["https://billing.example.com"]


def test_public_client_has_no_secret_and_always_pkce(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    main(
        ["clients", "create", "--name", "App", "--public", "--redirect-uri", "com.example.app:/cb"]
    )

    shown = json.loads(capsys.readouterr().out)
    assert "client_secret" not in shown
    assert shown["public"] is True and shown["require_pkce"] is True


def _refused(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int | str | None, str]:
    """``clients create --name App`` with ``arguments``, which must stop it: its exit code
    and what it wrote on stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["clients", "create", "--name", "App", *arguments])
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--redirect-uri", "http://app.example.com/cb"], "http"),
        (["--redirect-uri", "https://app.example.com/cb#x"], "fragment"),
        (["--redirect-uri", "/relative"], "absolute"),
        (["--redirect-uri", "myapp:/cb"], "scheme"),
        # Browsers cannot follow these: a client registered with one could never sign in.
        (["--redirect-uri", "https://app.example.com:abc/cb"], "port"),
        (["--redirect-uri", "https://app.example.com:99999/cb"], "port"),
        (["--public", "--redirect-uri", "http://[::1]:abc/cb"], "port"),
        (
            [
                "--redirect-uri",
                "https://a.example/cb",
                "--post-logout-redirect-uri",
                "https://a.example:-1/",
            ],
            "port",
        ),
        (
            [
                "--redirect-uri",
                "https://a.example/cb",
                "--post-logout-redirect-uri",
                "https://app.example.com:0/bye",
            ],
            "port",
        ),
        (["--redirect-uri", "https://a.example/cb", "--resource", "https://b.example:x"], "port"),
        # Redirect URIs match exactly: a wildcard never matches; a browser reads a backslash
        # as the end of the host, so codes went to the host "evil.example".
        (["--redirect-uri", "https://*.example.com/cb"], "host"),
        (["--redirect-uri", "https://evil.example\\.a.example/cb"], "host"),
        (["--redirect-uri", "https://a%2eexample.com/cb"], "host"),
        (["--redirect-uri", URI, "--post-logout-redirect-uri", "https://*.a.example/"], "host"),
        # The authorization response adds these: the client would get them twice.
        (["--redirect-uri", "https://app.example.com/cb?code=1"], "'code'"),
        (["--redirect-uri", "https://app.example.com/cb?a=1&iss=x"], "'iss'"),
        # The query is sent back as written, and some frameworks split it on ";" too.
        (["--redirect-uri", "https://app.example.com/cb?a=1;state=x"], "'state'"),
        (
            ["--redirect-uri", URI, "--post-logout-redirect-uri", "https://a.example/?a;state"],
            "'state'",
        ),
        (
            ["--redirect-uri", URI, "--post-logout-redirect-uri", "https://a.example/?state="],
            "'state'",
        ),
        # Credentials in a redirect URI end up in logs and browsers' history.
        (["--redirect-uri", "https://user:pw@app.example.com/cb"], "user name or password"),
        (
            [
                "--redirect-uri",
                "https://a.example/cb",
                "--post-logout-redirect-uri",
                "https://user@a.example/",
            ],
            "user name or password",
        ),
        (["--redirect-uri", "https://a.example/cb", "--resource", "billing"], "resource"),
        (["--redirect-uri", "https://a.example/cb", "--scope", 'bad"scope'], "scope"),
        (["--public", "--no-require-pkce", "--redirect-uri", "https://a.example/cb"], "PKCE"),
        (["--public", "--grant-type", "client_credentials"], "public"),
        # PostgreSQL refused it with a traceback, and SQLite stored it: the same error on both.
        (["--name", "x" * 201, "--redirect-uri", "https://a.example/cb"], "name"),
        ([], "redirect-uri"),
    ],
)
def test_bad_input_is_a_one_line_error_with_non_zero_exit(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    code, err = _refused(capsys, *arguments)
    assert code != 0
    assert err.startswith("identity: ")
    assert len(err.strip().splitlines()) == 1
    assert message in err


@pytest.mark.parametrize(
    "arguments",
    [
        ["--redirect-uri", "https://user:hunter2@app.example.com/cb"],
        # Unparsable (an unclosed IPv6 bracket): the refusal cannot split off the password.
        ["--redirect-uri", "https://user:hunter2@[app.example.com/cb"],
        ["--redirect-uri", "https://a.example/cb",
         "--post-logout-redirect-uri", "https://user:hunter2@[app.example.com/cb"],
        ["--redirect-uri", "https://a.example/cb",
         "--resource", "https://user:hunter2@[app.example.com/cb"],
    ],
)  # fmt: skip
def test_a_refused_uri_does_not_show_its_password(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], arguments: list[str]
) -> None:
    _, err = _refused(capsys, *arguments)
    assert "hunter2" not in err and "app.example.com/cb" in err


def test_loopback_http_redirect_is_allowed(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    for uri in ("http://127.0.0.1:8080/cb", "http://localhost/cb", "http://[::1]/cb"):
        assert main(["clients", "create", "--name", "CLI", "--redirect-uri", uri]) == 0


@pytest.mark.parametrize(
    "arguments",
    [
        ["--redirect-uri", "https://a.example/" + "x" * 10_000],
        ["--redirect-uri", "https://a.example/cb", "--post-logout-redirect-uri",
         "https://a.example/" + "x" * 2031],
        ["--redirect-uri", "https://a.example/cb", "--resource",
         "https://r.example/" + "x" * 10_000],
    ],
)  # fmt: skip
def test_a_uri_longer_than_the_authorization_endpoint_takes_is_refused_in_one_short_line(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], arguments: list[str]
) -> None:
    # The authorization endpoint refuses longer values: such a client could never sign in.
    code, err = _refused(capsys, *arguments)
    assert code == 1
    assert "longer than 2048 characters" in err
    assert len(err) < 200


def _client_names(settings: Settings) -> list[str]:
    async def read() -> list[str]:
        db = Database(create_engine(settings))
        try:
            async with db.transaction() as session:
                return list((await session.scalars(select(OAuthClient.name))).all())
        finally:
            await db.dispose()

    return asyncio.run(read())


@pytest.mark.parametrize(("stdout", "reason"), UNWRITABLE_STDOUTS)
def test_a_secret_that_cannot_be_shown_is_not_kept(
    cli_env: Settings, env: dict[str, str], stdout: str | None, reason: str
) -> None:
    # A client whose secret nobody saw is useless, and its secret cannot be shown again.
    result = run_identity_unwritable(
        "clients", "create", "--name", "Lost", "--grant-type", "client_credentials",
        env=env, stdout=stdout,
    )  # fmt: skip

    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"identity: cannot write to standard output ({reason}); nothing was registered.\n"
    )
    assert _client_names(cli_env) == []


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        (["--redirect-uri", URI, "--redirect-uri", URI], "redirect_uris"),
        (["--redirect-uri", URI, "--post-logout-redirect-uri", URI,
          "--post-logout-redirect-uri", URI], "post_logout_redirect_uris"),
        (["--redirect-uri", URI, "--grant-type", "authorization_code",
          "--grant-type", "authorization_code"], "grant_types"),
        (["--redirect-uri", URI, "--resource", "https://r.example",
          "--resource", "https://r.example"], "resources"),
    ],
)  # fmt: skip
def test_an_entry_given_twice_is_refused_as_the_api_refuses_it(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], arguments: list[str], field: str
) -> None:
    # One of the two would silently win, while the audit log recorded what was asked.
    code, err = _refused(capsys, *arguments)
    assert code == 1
    assert "Listed more than once" in err
    assert _client_names(cli_env) == []


def _many(option: str, count: int) -> list[str]:
    return [a for i in range(count) for a in (option, f"https://a{i}.example/cb")]


@pytest.mark.parametrize(
    "arguments",
    [
        _many("--redirect-uri", 101),
        ["--redirect-uri", URI, *_many("--post-logout-redirect-uri", 101)],
        ["--redirect-uri", URI, *_many("--resource", 101)],
        # Every token lists the scope it grants: 3,000 of them made tokens no service accepts.
        ["--redirect-uri", URI, "--scope", " ".join(f"s{i}" for i in range(3000))],
    ],
)
def test_the_apis_limits_on_counts_and_scope_hold_for_the_command_too(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], arguments: list[str]
) -> None:
    code, err = _refused(capsys, *arguments)
    assert code == 1
    assert "at most" in err and len(err) < 300
    assert _client_names(cli_env) == []


@pytest.mark.parametrize(
    "resource", ["https://r.example/a b", "https://r.example/\nx", "https://r.example/\x00"]
)
def test_a_resource_with_spaces_or_control_characters_is_refused_as_a_redirect_uri_is(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], resource: str
) -> None:
    # It becomes the aud of every token for it, and is matched exactly against the request's
    # resource: one no request can spell (or a NUL, PostgreSQL stored) was never usable.
    code, err = _refused(capsys, "--redirect-uri", URI, "--resource", resource)
    assert code == 1
    assert err.startswith("identity: ") and len(err.strip().splitlines()) == 1
    assert "resource" in err
    assert _client_names(cli_env) == []
