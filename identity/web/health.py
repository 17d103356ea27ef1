"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
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

# Pings given up on, kept referenced while they unwind (asyncio holds tasks only weakly).
_abandoned: set[asyncio.Task[None]] = set()


async def _ping(check: Coroutine[Any, Any, None]) -> None:
    """Run ``check``, raising TimeoutError after PING_SECONDS without waiting for it to
    unwind: psycopg answers a cancelled statement by sending the server a cancel request
    over a new connection, which to a hung host waits out the connect timeout in turn."""
    task = asyncio.ensure_future(check)
    done, _ = await asyncio.wait({task}, timeout=PING_SECONDS)
    if not done:
        task.cancel()
        _abandoned.add(task)
        task.add_done_callback(_forget)
        raise TimeoutError
    task.result()


def _forget(task: asyncio.Task[None]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # the outage was already reported; asyncio would log it again


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


async def _state(check: Coroutine[Any, Any, None], failure: type[Exception]) -> str:
    try:
        await _ping(check)
    except _NotMigrated:
        return "not_migrated"
    except (failure, TimeoutError):
        return "unavailable"
    return "ok"


@get("/health/ready", include_in_schema=False, cache=False)
async def ready(runtime: RuntimeDep) -> Response[dict[str, Any]]:
    # Pinged together: one network fault can take both hosts away, and two waits one after
    # the other would reach the probe timeout themselves.
    pings = {"database": _state(_database(runtime.db), DatabaseUnavailable)}
    if runtime.settings.redis_url:
        pings["redis"] = _state(runtime.store.ping(), StoreUnavailable)
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
