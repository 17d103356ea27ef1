"""What the command line changes is in the audit log, as the API's changes are: an
administrator made with ``users create --admin`` or a client registered on a server's shell
is otherwise invisible to whoever reads the log after an incident. The entry names the
operating-system user and machine instead of a signed-in user and an address."""

from __future__ import annotations

import asyncio
import getpass
import json
import socket

from sqlalchemy import select

from identity.audit.models import AuditEvent
from identity.db.engine import Database, create_engine
from identity.settings import Settings
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
