"""Sign-ins against this machine's argon2id bound, measured in one run.

    .venv/bin/python -m bench.signin [--seconds 8] [--backend sqlite|postgres|all] [--workers 1 2]

For each backend and worker count it starts ``identity serve`` with the default password
policy and measures, each right after the bound it is held against:

- the raw argon2id verify bound: ``PasswordHasher.verify`` with the policy's parameters on
  one thread per CPU, in this process, with no server at all;
- the login form POST alone (flows and CSRF tokens prepared beforehand): sign-ins per second
  and their ratio to that bound (goal 0.9);
- whole authorization-code sign-ins (authorize, login page, login POST, code, token) per
  second per core (goal 40);
- the p99 of discovery and of a client_credentials token request (wrk, one connection) when
  idle and while whole sign-ins saturate the hashing (goal: within 3x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import httpx
from argon2 import PasswordHasher, Type

from bench import wrk
from bench.http import FORM, backend_env, basic, free_port, identity_cli, server
from identity.accounts.password_policy_file import load_policy
from identity.settings import DEFAULT_POLICIES_DIR
from tests.browser import form_fields, pkce_pair

EMAIL = "bench-signin@example.com"
PASSWORD = "Zr8@kWq3!nTy6^bx"
REDIRECT_URI = "http://127.0.0.1/cb"
CORES = os.cpu_count() or 1


def argon2_bound(seconds: float) -> float:
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

    started = time.perf_counter()
    with ThreadPoolExecutor(CORES) as pool:
        list(pool.map(loop, range(CORES)))
    return sum(counts) / (time.perf_counter() - started)


async def _open_login(http: httpx.AsyncClient, client_id: str) -> tuple[dict[str, str], str]:
    """GET /authorize and the login page it leads to: the form's fields and the verifier."""
    verifier, challenge = pkce_pair()
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
    return form_fields(page.text) | {"email": EMAIL, "password": PASSWORD}, verifier


async def _workers(count: int, seconds: float, step: Callable[[], Awaitable[bool]]) -> float:
    """Completed steps per second with ``count`` callers running back to back."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            # Not ``done += await step()``: that reads ``done`` before awaiting, and the
            # other callers' increments meanwhile would be lost.
            completed = await step()
            done += completed

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(count)))
    return done / (time.perf_counter() - started)


async def login_posts(base: str, client_id: str, seconds: float, expected: float) -> float:
    """Login POSTs per second, with every flow and CSRF token prepared before the clock runs."""
    limits = httpx.Limits(max_connections=1)
    browsers = [
        httpx.AsyncClient(base_url=base, limits=limits, timeout=60)
        for _ in range(int(expected * seconds * 1.5) + 20)
    ]
    try:
        prepared: list[tuple[httpx.AsyncClient, dict[str, str]]] = []
        for start in range(0, len(browsers), 16):
            batch = browsers[start : start + 16]
            forms = await asyncio.gather(*(_open_login(b, client_id) for b in batch))
            prepared.extend((b, fields) for b, (fields, _) in zip(batch, forms, strict=True))
        queue = iter(prepared)

        async def post() -> bool:
            browser, fields = next(queue)
            response = await browser.post("/login", data=fields)
            return response.status_code == 303

        return await _workers(4 * CORES, seconds, post)
    finally:
        await asyncio.gather(*(b.aclose() for b in browsers))


async def whole_sign_ins(base: str, client_id: str, secret: str, seconds: float) -> float:
    """authorize → login → code → token, each in a new browser, per second."""

    async def one() -> bool:
        async with httpx.AsyncClient(base_url=base, timeout=60) as browser:
            fields, verifier = await _open_login(browser, client_id)
            done = await browser.post("/login", data=fields)
            if done.status_code != 303:
                return False
            code = parse_qs(urlsplit(done.headers["location"]).query)["code"][0]
            token = await browser.post(
                "/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT_URI,
                    "code_verifier": verifier,
                },
                auth=(client_id, secret),
            )
            return token.status_code == 200

    return await _workers(4 * CORES, seconds, one)


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


async def under_load(
    base: str, client_id: str, secret: str, auth: dict[str, str], seconds: int
) -> dict[str, float]:
    """The probes' p99 while whole sign-ins run: the load starts first and outlasts them."""
    load = asyncio.create_task(whole_sign_ins(base, client_id, secret, 2 * seconds + 4))
    await asyncio.sleep(2)
    try:
        return await asyncio.to_thread(probes, base, auth, seconds)
    finally:
        await load


def measure(backend: str, workers: int, seconds: int) -> dict[str, float]:
    with backend_env(backend) as env:
        identity_cli(env, "migrate")
        identity_cli(env, "users", "create", "--email", EMAIL, "--password", PASSWORD)
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
        served = env | {"IDENTITY_ISSUER": f"http://127.0.0.1:{port}"}
        with server(command, served, port) as base:
            figures: dict[str, float] = {}
            figures["bound"] = argon2_bound(seconds)
            figures["login"] = asyncio.run(login_posts(base, client_id, seconds, figures["bound"]))
            figures["whole"] = asyncio.run(whole_sign_ins(base, client_id, secret, seconds))
            idle = probes(base, auth, max(3, seconds // 2))
            loaded = asyncio.run(under_load(base, client_id, secret, auth, max(3, seconds // 2)))
            for name in idle:
                figures[f"{name}_idle"] = idle[name]
                figures[f"{name}_loaded"] = loaded[name]
            return figures


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
    print(f"\nargon2id m={a.memory_kib} KiB t={a.time_cost} p={a.parallelism}; {CORES} CPUs; "
          f"{args.seconds}s per figure; same machine, same run\n")  # fmt: skip
    print("| backend  | workers | argon2 verify/s | login POST/s | ratio (≥0.9) "
          "| sign-ins/s | per core (≥40) |")  # fmt: skip
    print("|----------|---------|-----------------|--------------|--------------"
          "|------------|----------------|")  # fmt: skip
    for backend, workers, f in rows:
        print(f"| {backend:8} | {workers:7} | {f['bound']:15.1f} | {f['login']:12.1f} "
              f"| {f['login'] / f['bound']:12.2f} | {f['whole']:10.1f} "
              f"| {f['whole'] / CORES:14.1f} |")  # fmt: skip
    print("\np99 in ms, one connection (wrk -c1), idle and while whole sign-ins saturate hashing\n")
    print("| backend  | workers | discovery idle | loaded | ratio (≤3) "
          "| token idle | loaded | ratio (≤3) |")  # fmt: skip
    print("|----------|---------|----------------|--------|------------"
          "|------------|--------|------------|")  # fmt: skip
    for backend, workers, f in rows:
        print(f"| {backend:8} | {workers:7} | {f['discovery_idle']:14.2f} "
              f"| {f['discovery_loaded']:6.2f} "
              f"| {f['discovery_loaded'] / f['discovery_idle']:10.2f} "
              f"| {f['token_idle']:10.2f} | {f['token_loaded']:6.2f} "
              f"| {f['token_loaded'] / f['token_idle']:10.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
