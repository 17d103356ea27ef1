"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

from litestar import Response, get

from identity.db.engine import Database, DatabaseUnavailable
from identity.store.base import StoreUnavailable
from identity.web.dependencies import RuntimeDep
from identity.web.problems import problem

# A host that dies often drops packets instead of refusing connections: Redis's commands
# wait out their socket timeout (2 s), the database's its connect and pool timeouts (5 s),
# and a statement on a pooled connection waits for ever. Readiness answers well within an
# orchestrator's probe timeout (Kubernetes: 1 s): a probe that times out says nothing of
# which dependency is away, and for Redis it would fail every process at once, which is
# what answering "degraded" rather than 503 is for.
PING_SECONDS = 0.5

# The ping of each dependency (the Database, the Store) under way, at most one: a probe
# that arrives while one runs waits for its answer instead of starting another. A ping
# given up on stays here while it unwinds, so that probes against a hung host, which an
# orchestrator sends every few seconds from every node, do not pile up pings (and pooled
# connections) for as long as the host stays away. Asyncio holds tasks only weakly.
_running: weakref.WeakKeyDictionary[object, asyncio.Task[None]] = weakref.WeakKeyDictionary()


async def _ping(owner: object, check: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """The answer of ``check``, a ping of ``owner``, shared with every probe that asks
    while it runs; TimeoutError when none comes within PING_SECONDS of this probe's
    arrival. A ping that outlasts the probe that started it is cancelled and not waited
    for: psycopg answers a cancelled statement by sending the server a cancel request over
    a new connection, which to a hung host waits out the connect timeout in turn."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PING_SECONDS
    task = _running.get(owner)
    if task is not None and task.cancelling():
        # Given up on and still unwinding: the next ping starts only once it has ended.
        await asyncio.wait({task}, timeout=deadline - loop.time())
        if not task.done():
            raise TimeoutError
    if task is None or task.done():
        task = _running[owner] = asyncio.ensure_future(check())
        task.add_done_callback(functools.partial(_forget, owner))
    await asyncio.wait({task}, timeout=max(deadline - loop.time(), 0))
    if not task.done():
        if not task.cancelling():
            task.cancel()
        raise TimeoutError
    if task.cancelled():  # given up on by the probe that started it
        raise TimeoutError
    task.result()


def _forget(owner: object, task: asyncio.Task[None]) -> None:
    if _running.get(owner) is task:
        del _running[owner]
    if not task.cancelled():
        task.exception()  # reported to the probes that waited; asyncio would log it again


@get("/health/live", sync_to_thread=False, include_in_schema=False)
def live() -> dict[str, str]:
    return {"status": "ok"}


class _NotMigrated(Exception):
    """The database answers without our tables: not an outage, nothing changes until
    someone runs ``identity migrate``."""


async def _database(db: Database) -> None:
    await db.ping()
    if not await db.migrated():
        raise _NotMigrated


async def _state(
    owner: object, check: Callable[[], Coroutine[Any, Any, None]], failure: type[Exception]
) -> str:
    try:
        await _ping(owner, check)
    except _NotMigrated:
        return "not_migrated"
    except (failure, TimeoutError):
        return "unavailable"
    return "ok"


@get("/health/ready", include_in_schema=False, cache=False)
async def ready(runtime: RuntimeDep) -> Response[dict[str, Any]]:
    # Pinged together: one network fault can take both hosts away, and two waits one after
    # the other would reach the probe timeout themselves.
    db = runtime.db
    pings = {"database": _state(db, functools.partial(_database, db), DatabaseUnavailable)}
    if runtime.settings.redis_url:
        pings["redis"] = _state(runtime.store, runtime.store.ping, StoreUnavailable)
    checks = dict(zip(pings, await asyncio.gather(*pings.values()), strict=True))
    if checks["database"] == "not_migrated":
        return problem(503, "Not ready: the database is not migrated.", checks=checks)
    if checks["database"] != "ok":
        down = [name for name, state in checks.items() if state != "ok"]
        return problem(503, f"Not ready: {', '.join(down)} unavailable.", checks=checks)
    # Without Redis the service still signs people in (sign-in state and rate limits fall
    # back to each process's memory): still ready, or a load balancer would take every
    # process out at once and turn a Redis outage into a total one.
    status = "degraded" if checks.get("redis", "ok") != "ok" else "ready"
    return Response({"status": status, "checks": checks})
