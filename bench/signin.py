"""Sign-ins against this machine's argon2id bound, measured in one run.

    .venv/bin/python -m bench.signin [--seconds 8] [--backend sqlite|postgres|all] [--workers 1 2]

For each backend and worker count it starts ``identity serve`` with the default password
policy and measures, each right after the bound it is held against:

- the raw argon2id verify bound: ``PasswordHasher.verify`` with the policy's parameters on
  one thread per CPU, in this process, with no server at all;
- the login form POST alone (flows and CSRF tokens prepared beforehand): sign-ins per second
  and their ratio to that bound (goal 0.9);
- whole authorization-code sign-ins (authorize, login page, login POST, code, token) per
  second per core (goal 40), driven by wrk (bench/signin.lua): 4 browsers per CPU, each on
  a kept-alive connection of its own;
- the p99 of discovery and of a client_credentials token request (wrk, one connection) when
  idle and while whole sign-ins saturate the hashing (goal: within 3x).

The load generators run on the same CPUs as the server and take their share of them, so
beside each wall-clock figure it prints the same figure per CPU-second the server itself used
(read from /proc): verifications or sign-ins per CPU-second, which is what a server whose
clients are elsewhere gets from each core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
from argon2 import PasswordHasher, Type

from bench import wrk
from bench.http import FORM, Served, backend_env, basic, free_port, identity_cli, server
from identity.accounts.password_policy_file import load_policy
from identity.settings import DEFAULT_POLICIES_DIR
from tests.browser import form_fields, pkce_pair

PASSWORD = "Zr8@kWq3!nTy6^bx"
REDIRECT_URI = "http://127.0.0.1/cb"
CORES = os.cpu_count() or 1
BROWSERS = 4 * CORES
# A user per browser, as a sign-in load is many people: one account signed in to by every
# browser at once would meet its own throttle, which counts attempts in flight.
EMAILS = [f"bench-signin-{n}@example.com" for n in range(BROWSERS)]


@dataclass(frozen=True)
class Rate:
    """Operations per wall-clock second, and per CPU-second of the process doing them."""

    per_second: float
    per_cpu_second: float


@dataclass(frozen=True)
class _Meter:
    """The server's CPU time and the wall clock when a measurement began."""

    served: Served
    cpu: float
    wall: float

    @classmethod
    def start(cls, served: Served) -> _Meter:
        return cls(served, served.cpu_seconds(), time.perf_counter())

    def rate(self, done: int) -> Rate:
        """``done`` operations per second and per CPU-second of the server, since the start."""
        cpu = self.served.cpu_seconds() - self.cpu
        return Rate(done / (time.perf_counter() - self.wall), done / cpu)


def argon2_bound(seconds: float) -> Rate:
    """Verifications per second of the policy's argon2id, one thread per CPU (the GIL is
    released while hashing), with nothing else around it: no server can sign in faster."""
    a = load_policy(DEFAULT_POLICIES_DIR / "password.toml").argon2
    hasher = PasswordHasher(
        time_cost=a.time_cost,
        memory_cost=a.memory_kib,
        parallelism=a.parallelism,
        hash_len=a.hash_length,
        salt_len=a.salt_length,
        type=Type.ID,
    )
    stored = hasher.hash(PASSWORD)
    deadline = time.perf_counter() + seconds
    counts = [0] * CORES

    def loop(index: int) -> None:
        while time.perf_counter() < deadline:
            hasher.verify(stored, PASSWORD)
            counts[index] += 1

    cpu, started = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(CORES) as pool:
        list(pool.map(loop, range(CORES)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - started
    return Rate(sum(counts) / wall, sum(counts) / cpu)


async def _open_login(http: httpx.AsyncClient, client_id: str, email: str) -> dict[str, str]:
    """GET /authorize and the login page it leads to: the form's fields, filled in."""
    _, challenge = pkce_pair()
    started = await http.get(
        "/authorize",
        params={
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "response_type": "code",
            "scope": "openid",
            "state": "bench",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert started.status_code == 303, started.text
    page = await http.get(started.headers["location"])
    assert page.status_code == 200, page.text
    return form_fields(page.text) | {"email": email, "password": PASSWORD}


async def _workers(count: int, seconds: float, step: Callable[[], Awaitable[bool]]) -> int:
    """Completed steps with ``count`` callers running back to back for ``seconds``."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            # Not ``done += await step()``: that reads ``done`` before awaiting, and the
            # other callers' increments meanwhile would be lost.
            completed = await step()
            done += completed

    await asyncio.gather(*(worker() for _ in range(count)))
    return done


def _browser(base: str, tls: ssl.SSLContext) -> httpx.AsyncClient:
    """A browser: its own cookies, and one connection, so that without Redis (pending
    sign-ins in each process's memory) all its requests reach the same worker, as a real
    browser's kept-alive connection does. The SSL context is shared: a client that builds
    its own spends ~30 ms of the CPU the server is measured on, as much as a sign-in."""
    return httpx.AsyncClient(
        base_url=base, verify=tls, limits=httpx.Limits(max_connections=1), timeout=60
    )


async def login_posts(served: Served, client_id: str, seconds: float, expected: float) -> Rate:
    """Login POSTs per second, with every flow and CSRF token prepared before the clock runs."""
    tls = ssl.create_default_context()
    browsers = [_browser(served.base, tls) for _ in range(int(expected * seconds * 1.5) + 20)]
    try:
        prepared: list[tuple[httpx.AsyncClient, dict[str, str]]] = []
        for start in range(0, len(browsers), 16):
            batch = browsers[start : start + 16]
            forms = await asyncio.gather(
                *(
                    _open_login(b, client_id, EMAILS[(start + n) % BROWSERS])
                    for n, b in enumerate(batch)
                )
            )
            prepared.extend(zip(batch, forms, strict=True))
        queue = iter(prepared)

        async def post() -> bool:
            browser, fields = next(queue)
            try:
                response = await browser.post("/login", data=fields)
            except httpx.TransportError:
                # The server closed the connection while it idled through the preparation
                # (uvicorn's keep-alive timeout): not counted, like any failed sign-in.
                return False
            return response.status_code == 303

        meter = _Meter.start(served)
        return meter.rate(await _workers(BROWSERS, seconds, post))
    finally:
        await asyncio.gather(*(b.aclose() for b in browsers))


SIGN_IN_SCRIPT = (Path(__file__).parent / "signin.lua").read_text()


def whole_sign_ins(served: Served, client_id: str, secret: str, seconds: float) -> Rate:
    """authorize → login page → login POST → token, each time as a new browser, per second.

    wrk drives them (bench/signin.lua), 4 browsers per CPU, each on a connection of its own
    as a real browser's kept-alive one; in C it takes a small part of the CPU the server is
    measured on, which a Python client (~6 ms per sign-in) did not.
    """
    pairs = [pkce_pair() for _ in range(64)]
    config = {
        "client_id": client_id,
        "authorization": basic(client_id, secret)["Authorization"],
        "redirect_uri": REDIRECT_URI,
        "logins": [urlencode({"email": email, "password": PASSWORD}) for email in EMAILS],
        "pkce": [list(pair) for pair in pairs],
    }
    browsers = BROWSERS
    meter = _Meter.start(served)
    result = wrk.run_script(
        served.base,
        SIGN_IN_SCRIPT,
        seconds=seconds,
        connections=browsers,
        threads=browsers,
        config=config,
    )
    if result["failures"]:
        print(f"  ({result['failures']} sign-ins did not complete)", file=sys.stderr)
    return meter.rate(int(result["completed"]))


def probes(base: str, auth: dict[str, str], seconds: int) -> dict[str, float]:
    """p99 in ms of discovery and client_credentials, one connection each in turn (wrk)."""
    requests = {
        "discovery": wrk.Request("/.well-known/openid-configuration"),
        "token": wrk.Request("/token", "POST", auth | FORM, "grant_type=client_credentials"),
    }
    return {
        name: wrk.run(base, request, seconds=seconds, connections=1).p99_ms
        for name, request in requests.items()
    }


def under_load(
    served: Served, client_id: str, secret: str, auth: dict[str, str], seconds: int
) -> dict[str, float]:
    """The probes' p99 while whole sign-ins run: the load starts first and outlasts them."""
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(whole_sign_ins, served, client_id, secret, 2 * seconds + 4)
        time.sleep(2)
        try:
            return probes(served.base, auth, seconds)
        finally:
            load.result()


@dataclass(frozen=True)
class Figures:
    bound: Rate
    login: Rate
    whole: Rate
    idle: dict[str, float]  # p99 ms of each probe
    loaded: dict[str, float]


def measure(backend: str, workers: int, seconds: int) -> Figures:
    with backend_env(backend) as env:
        identity_cli(env, "migrate")
        for email in EMAILS:
            identity_cli(env, "users", "create", "--email", email, "--password", PASSWORD)
        shown = json.loads(
            identity_cli(
                env,
                "clients", "create", "--name", "bench", "--first-party",
                "--grant-type", "authorization_code", "--grant-type", "client_credentials",
                "--redirect-uri", REDIRECT_URI, "--scope", "openid",
            )
        )  # fmt: skip
        client_id, secret = shown["client_id"], shown["client_secret"]
        auth = basic(client_id, secret)
        port = free_port()
        command = [
            sys.executable, "-m", "identity.cli", "serve", "--port", str(port),
            "--workers", str(workers),
        ]  # fmt: skip
        with server(command, env | {"IDENTITY_ISSUER": f"http://127.0.0.1:{port}"}, port) as served:
            bound = argon2_bound(seconds)
            login = asyncio.run(login_posts(served, client_id, seconds, bound.per_second))
            whole = whole_sign_ins(served, client_id, secret, seconds)
            probe_seconds = max(3, seconds // 2)
            # Logins still queued for hashing when the load stops finish first: "idle" is idle.
            time.sleep(2)
            idle = probes(served.base, auth, probe_seconds)
            loaded = under_load(served, client_id, secret, auth, probe_seconds)
            return Figures(bound, login, whole, idle, loaded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "all"), default="all")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    rows = [
        (backend, workers, measure(backend, workers, args.seconds))
        for backend in backends
        for workers in args.workers
    ]
    a = load_policy(DEFAULT_POLICIES_DIR / "password.toml").argon2
    print(
        f"\nargon2id m={a.memory_kib} KiB t={a.time_cost} p={a.parallelism}; {CORES} CPUs; "
        f"{args.seconds}s per figure; same machine, same run.\n'/s': per wall-clock second, "
        "the load generator sharing the CPUs; '/CPU-s': per CPU-second the server (or, for "
        "the bound, argon2) used.\n"
    )
    _table(
        ["backend", "workers", "argon2 verify/s", "/CPU-s", "login POST/s", "/CPU-s",
         "ratio/s (≥0.9)", "ratio/CPU-s", "sign-ins/s", "per core/s (≥40)", "/CPU-s"],
        [
            [backend, workers, f.bound.per_second, f.bound.per_cpu_second,
             f.login.per_second, f.login.per_cpu_second,
             f.login.per_second / f.bound.per_second,
             f.login.per_cpu_second / f.bound.per_cpu_second,
             f.whole.per_second, f.whole.per_second / CORES, f.whole.per_cpu_second]
            for backend, workers, f in rows
        ],
    )  # fmt: skip
    print("\np99 in ms, one connection (wrk -c1), idle and while whole sign-ins saturate hashing\n")
    _table(
        ["backend", "workers", "discovery idle", "loaded", "ratio (≤3)",
         "token idle", "loaded", "ratio (≤3)"],
        [
            [backend, workers, f.idle["discovery"], f.loaded["discovery"],
             f.loaded["discovery"] / f.idle["discovery"],
             f.idle["token"], f.loaded["token"], f.loaded["token"] / f.idle["token"]]
            for backend, workers, f in rows
        ],
    )  # fmt: skip


def _table(headers: list[str], rows: list[list[object]]) -> None:
    """A Markdown table, floats to two decimals, each column as wide as its widest cell."""
    cells = [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")


if __name__ == "__main__":
    main()
