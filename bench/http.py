"""Token-side HTTP throughput against this machine's ceiling, measured in one run.

    .venv/bin/python -m bench.http [--seconds 10] [--connections 32] [--backend sqlite|postgres|all]
                                   [--workers 1]

For each backend it starts ``identity serve`` (``--workers``, one by default) and, beside
it, the bare Litestar app of ``bench/ceiling.py`` on the same ASGI server with as many
workers, drives both with wrk (the ceiling's counterpart right before each endpoint), and
prints requests per second, p50 and p99 of both, and each endpoint's ratio to the ceiling.
The PostgreSQL backend uses the machine's PostgreSQL and Redis (a fresh schema and key
prefix each run).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg

from bench import ceiling, wrk
from identity.clock import utcnow
from identity.crypto import digest, random_token
from identity.db.engine import Database, create_engine

# db.models, not tokens.models: every table must be known for the foreign keys to resolve.
from identity.db.models import RefreshToken, User
from identity.settings import Settings

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Served:
    """A server started by ``server``: where it answers, and how much CPU it has used."""

    base: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its worker processes so far (Linux)."""
        return sum(_own_cpu_seconds(pid) for pid in _process_tree(self.pid))


def _process_tree(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(p for child in children for p in _process_tree(int(child)))]


def _own_cpu_seconds(pid: int) -> float:
    # Fields 14 and 15 of /proc/PID/stat (utime, stime), counted after the ")" that ends
    # the command name, which may itself hold spaces.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server(command: list[str], env: dict[str, str], port: int) -> Iterator[Served]:
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        command, env=os.environ | env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(base + "/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield Served(base, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=20)


@contextmanager
def backend_env(name: str) -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            "IDENTITY_DATA_DIR": data_dir,
            "IDENTITY_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
            # Every benchmark browser comes from 127.0.0.1: the address's sign-ins are the
            # whole load, not one client's share of it.
            "IDENTITY_SIGN_IN_LIMIT_PER_IP": "100000000/10m",
        }
        if name == "sqlite":
            yield env
            return
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        dsn = "postgresql://postgres@127.0.0.1:5432/test"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield env | {
                "IDENTITY_DATABASE_URL": f"{PG_URL}?options={quote(f'-csearch_path={schema}')}",
                "IDENTITY_REDIS_URL": REDIS_URL,
                "IDENTITY_REDIS_KEY_PREFIX": f"{schema}:",
            }
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def identity_cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "identity.cli", *args],
        env=os.environ | env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


async def refresh_token_pool(env: dict[str, str], client_id: str, count: int) -> list[str]:
    """Live refresh tokens, each its own family, so every benchmark request is a valid rotation."""
    settings = Settings.from_env(env)
    db = Database(create_engine(settings))
    now = utcnow()
    tokens = [random_token() for _ in range(count)]
    user = User(
        email=f"bench-{uuid.uuid4().hex[:8]}@example.com", name="Bench", email_verified=True
    )
    try:
        async with db.transaction() as session:
            session.add(user)
            await session.flush()
            session.add_all(
                RefreshToken(
                    token_hash=digest(token),
                    family_id=uuid.uuid4(),
                    client_id=client_id,
                    user_id=user.id,
                    scope="openid profile",
                    auth_time=now,
                    amr=["pwd"],
                    created_at=now,
                    expires_at=now + timedelta(days=1),
                )
                for token in tokens
            )
    finally:
        await db.dispose()
    return tokens


def basic(client_id: str, secret: str) -> dict[str, str]:
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


@contextmanager
def identity_server(
    name: str, args: argparse.Namespace
) -> Iterator[tuple[str, dict[str, wrk.Request]]]:
    """``identity serve`` on backend ``name``, and the requests of each scenario."""
    with backend_env(name) as env:
        identity_cli(env, "migrate")
        shown = json.loads(
            identity_cli(
                env,
                "clients", "create", "--name", "bench",
                "--grant-type", "client_credentials", "--grant-type", "authorization_code",
                "--grant-type", "refresh_token", "--redirect-uri", "http://127.0.0.1/cb",
                "--scope", "openid bench:read",
            )
        )  # fmt: skip
        auth = basic(shown["client_id"], shown["client_secret"])
        pool_size = int(args.seconds * 4000)
        pool = asyncio.run(refresh_token_pool(env, shown["client_id"], pool_size))
        port = free_port()
        command = [
            sys.executable, "-m", "identity.cli", "serve", "--port", str(port),
            "--workers", str(args.workers),
        ]  # fmt: skip
        served = env | {"IDENTITY_ISSUER": f"http://127.0.0.1:{port}"}
        with server(command, served, port) as running:
            base = running.base
            grant = httpx.post(
                base + "/token", data={"grant_type": "client_credentials"}, headers=auth
            )
            access_token = grant.json()["access_token"]
            yield (
                base,
                {
                    "discovery": wrk.Request("/.well-known/openid-configuration"),
                    "jwks": wrk.Request("/jwks.json"),
                    "client_credentials": wrk.Request(
                        "/token", "POST", auth | FORM, "grant_type=client_credentials"
                    ),
                    "refresh_token": wrk.Request(
                        "/token",
                        "POST",
                        auth | FORM,
                        pool=tuple(f"grant_type=refresh_token&refresh_token={t}" for t in pool),
                    ),
                    "introspection": wrk.Request(
                        "/introspect", "POST", auth | FORM, f"token={access_token}"
                    ),
                },
            )


@contextmanager
def ceiling_server(workers: int) -> Iterator[tuple[str, dict[str, wrk.Request]]]:
    """The bare app of ``bench/ceiling.py``, and its request for each kind of work."""
    port = free_port()
    # The options ``identity serve`` gives uvicorn (identity/server.py), so both run on the
    # same server doing the same work: no proxy-header middleware, no Server header. The
    # ceiling keeps uvicorn's own httptools protocol: our bounds on requests count against us.
    command = [
        sys.executable, "-m", "uvicorn", "bench.ceiling:app", "--port", str(port),
        "--log-level", "warning", "--no-access-log", "--no-proxy-headers", "--no-server-header",
        "--workers", str(workers),
    ]  # fmt: skip
    auth = basic(ceiling.CLIENT_ID, ceiling.CLIENT_SECRET)
    with server(command, {"PYTHONPATH": str(Path(__file__).parent.parent)}, port) as running:
        yield (
            running.base,
            {
                "document": wrk.Request("/static"),
                "token": wrk.Request(
                    "/token", "POST", auth | FORM, "grant_type=client_credentials"
                ),
            },
        )


# Which ceiling each endpoint is held against, and the target ratio.
TARGETS = {
    "discovery": ("document", 0.9),
    "jwks": ("document", 0.9),
    "client_credentials": ("token", 0.75),
    "refresh_token": ("token", None),
    "introspection": ("token", 0.7),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "all"), default="all")
    # With 2, the ceiling runs 2 uvicorn workers too: the ratios compare like with like.
    parser.add_argument("--workers", type=int, default=1, help="server processes, both sides")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]

    def measure(base: str, request: wrk.Request) -> wrk.Result:
        return wrk.run(base, request, seconds=args.seconds, connections=args.connections)

    print(
        f"\nwrk -c{args.connections} -d{args.seconds}s, {args.workers} worker(s) each, "
        "same machine, same run;"
        "\neach endpoint's ceiling is measured right before it, so that load from other"
        "\nprocesses on the machine weighs on both sides of a ratio alike\n"
    )
    print(f"| {'backend':9} | {'endpoint':18} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} "
          f"| {'ceiling':8} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} "
          f"| {'ratio':>5} | {'target':>6} | {'fail':>4} |")  # fmt: skip
    print("|" + "|".join("-" * w for w in (11, 20, 10, 9, 9, 10, 10, 9, 9, 7, 8, 6)) + "|")
    with ceiling_server(args.workers) as (ceiling_base, ceiling_requests):
        for backend in backends:
            with identity_server(backend, args) as (base, scenarios):
                for label, request in scenarios.items():
                    against, target = TARGETS[label]
                    top = measure(ceiling_base, ceiling_requests[against])
                    result = measure(base, request)
                    ratio = result.rps / top.rps
                    print(f"| {backend:9} | {label:18} | {result.rps:8.0f} | {result.p50_ms:7.2f} "
                          f"| {result.p99_ms:7.2f} | {against:8} | {top.rps:8.0f} "
                          f"| {top.p50_ms:7.2f} | {top.p99_ms:7.2f} | {ratio:5.2f} "
                          f"| {target or '-':>6} | {result.failures:4} |",
                          flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
