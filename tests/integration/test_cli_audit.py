"""What the command line changes is in the audit log, as the API's changes are: an
administrator made with ``users create --admin`` or a client registered on a server's shell
is otherwise invisible to whoever reads the log after an incident. The entry names the
operating-system user and machine instead of a signed-in user and an address."""

from __future__ import annotations

import asyncio
import getpass
import json
import socket

import httpx
import pytest
from sqlalchemy import select

from identity.audit.models import AuditEvent
from identity.clock import utcnow
from identity.commands import create_user
from identity.db import text_guard
from identity.db.engine import Database, create_engine
from identity.runtime import Runtime
from identity.settings import Settings
from tests.integration.account_helpers import staff_headers
from tests.processes import run_identity

PASSWORD = "Zr8@kWq3!nTy6^bx"


async def _entries(settings: Settings) -> list[AuditEvent]:
    db = Database(create_engine(settings))
    try:
        async with db.transaction() as session:
            return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.id))).all())
    finally:
        await db.dispose()


def _ok(*args: str, env: dict[str, str], stdin: str | None = None) -> dict[str, str]:
    result = run_identity(*args, env=env, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_each_change_made_on_the_command_line_is_recorded_with_who_ran_it(
    env: dict[str, str], settings: Settings
) -> None:
    assert run_identity("migrate", env=env).returncode == 0
    user = _ok(
        "users", "create", "--email", "root@example.com", "--password-stdin", "--admin",
        env=env, stdin=PASSWORD + "\n",
    )  # fmt: skip
    client = _ok(
        "clients", "create", "--name", "Billing", "--grant-type", "client_credentials",
        env=env,
    )  # fmt: skip
    first = _ok("keys", "rotate", env=env)["kid"]
    _ok("keys", "rotate", env=env)
    _ok("keys", "retire", "--kid", first, env=env)

    entries = asyncio.run(_entries(settings))

    assert [(e.action, e.target_type, e.target_id) for e in entries] == [
        ("user.created", "user", user["id"]),
        ("client.created", "client", client["client_id"]),
        ("signing_key.created", "signing_key", first),
        ("signing_key.created", "signing_key", entries[3].target_id),
        ("signing_key.retired", "signing_key", first),
    ]
    ran_by = f"{getpass.getuser()}@{socket.gethostname()}"
    for entry in entries:
        assert (entry.actor_user_id, entry.actor_client_id) == (None, None)
        assert (entry.ip, entry.request_id) == (None, None)
        assert entry.details["command_line"] == ran_by
    assert entries[0].details["new"] == {
        "email": "root@example.com",
        "name": "",
        "is_admin": True,
    }
    assert entries[1].details["new"]["grant_types"] == ["client_credentials"]
    written = json.dumps([e.details for e in entries])
    assert PASSWORD not in written and client["client_secret"] not in written


def test_a_refused_command_records_nothing(env: dict[str, str], settings: Settings) -> None:
    assert run_identity("migrate", env=env).returncode == 0
    weak = run_identity(
        "users", "create", "--email", "a@example.com", "--password", "password", env=env
    )
    unknown = run_identity("keys", "retire", "--kid", "no-such-kid", env=env)

    assert weak.returncode == 1 and unknown.returncode == 1
    assert asyncio.run(_entries(settings)) == []


async def test_a_login_name_in_another_encoding_is_recorded_so_the_log_stays_readable(
    client: httpx.AsyncClient,
    runtime: Runtime,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A login name that is not UTF-8 (josé in Latin-1) reaches Python as a lone surrogate,
    # which no JSON answer can hold: the staff's audit log answered 500 on every page holding
    # the entry.
    monkeypatch.setenv("LOGNAME", "jos\udce9")
    await create_user(settings, "ana@example.com", PASSWORD, "", is_admin=False, show=print)
    answer = await client.get("/api/v1/audit", headers=await staff_headers(runtime))
    assert answer.status_code == 200, answer.text
    (entry,) = answer.json()["events"]
    assert entry["details"]["command_line"] == f"jos\\xe9@{socket.gethostname()}"


async def test_an_entry_recorded_before_such_names_were_escaped_is_shown_escaped(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Entries written by earlier releases hold the lone surrogate itself (the JSON column
    # stored its escape), and every page holding one answered 500.
    with monkeypatch.context() as guard_off:
        guard_off.setattr(text_guard, "check", lambda parameters: None)
        async with runtime.db.transaction() as session:
            session.add(
                AuditEvent(
                    occurred_at=utcnow(),
                    action="user.created",
                    details={"old": None, "new": None, "command_line": "jos\udce9@h\ud800st"},
                )
            )
    answer = await client.get(
        "/api/v1/audit", params={"action": "user.created"}, headers=await staff_headers(runtime)
    )
    assert answer.status_code == 200, answer.text
    (entry,) = answer.json()["events"]
    assert entry["details"]["command_line"] == "jos\\xe9@h\\ud800st"
