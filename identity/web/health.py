"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Response, get

from identity.db.engine import DatabaseUnavailable
from identity.store.base import StoreUnavailable
from identity.web.dependencies import RuntimeDep
from identity.web.problems import problem

# A Redis host that dies often drops packets instead of refusing connections: its commands
# wait out their socket timeout (2 s). Readiness answers "degraded" well within an
# orchestrator's probe timeout (Kubernetes: 1 s), or the probe would fail on every process
# at once, which is what answering "degraded" rather than 503 is for.
REDIS_PING_SECONDS = 0.5


@get("/health/live", sync_to_thread=False, include_in_schema=False)
def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready", include_in_schema=False, cache=False)
async def ready(runtime: RuntimeDep) -> Response[dict[str, Any]]:
    checks: dict[str, str] = {}
    try:
        await runtime.db.ping()
        checks["database"] = "ok"
    except DatabaseUnavailable:
        checks["database"] = "unavailable"
    if runtime.settings.redis_url:
        try:
            async with asyncio.timeout(REDIS_PING_SECONDS):
                await runtime.store.ping()
            checks["redis"] = "ok"
        except (StoreUnavailable, TimeoutError):
            checks["redis"] = "unavailable"
    if checks["database"] != "ok":
        down = [name for name, state in checks.items() if state != "ok"]
        return problem(503, f"Not ready: {', '.join(down)} unavailable.", checks=checks)
    # Without Redis the service still signs people in (sign-in state and rate limits fall
    # back to each process's memory): still ready, or a load balancer would take every
    # process out at once and turn a Redis outage into a total one.
    status = "degraded" if checks.get("redis", "ok") != "ok" else "ready"
    return Response({"status": status, "checks": checks})
