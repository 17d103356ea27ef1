"""Drive wrk (Debian's package) against a local server and read back its figures."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# wrk runs a Lua script per thread; this one sends the scenario's request and, when given a
# pool, takes the next body from it so single-use tokens are each used once.
_SCRIPT = """
local method, path, headers, body, pool = %s, %s, %s, %s, %s
local i = 0
wrk.method = method
wrk.headers = headers
request = function()
  local b = body
  if #pool > 0 then i = i + 1; b = pool[((i - 1) %% #pool) + 1] end
  return wrk.format(method, path, headers, b)
end
done = function(summary, latency, requests)
  local e = summary.errors
  local out = string.format(
    '{"requests": %%d, "seconds": %%f, "p50_us": %%d, "p99_us": %%d, '
    .. '"non2xx": %%d, "errors": %%d}',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout)
  io.stderr:write("WRKJSON " .. out .. "\\n")
end
"""


@dataclass(frozen=True)
class Request:
    path: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    pool: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    failures: int


def _lua(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple | list):
        return "{" + ", ".join(_lua(v) for v in value) + "}"
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def run(
    base_url: str, request: Request, *, seconds: int, connections: int, threads: int = 1
) -> Result:
    script = _SCRIPT % tuple(
        _lua(v) for v in (request.method, request.path, request.headers, request.body, request.pool)
    )
    data = run_script(base_url, script, seconds=seconds, connections=connections, threads=threads)
    return Result(
        rps=data["requests"] / data["seconds"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        failures=data["non2xx"] + data["errors"],
    )


def run_script(
    base_url: str,
    script: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    config: dict[str, object] | None = None,
) -> dict[str, Any]:
    """Run wrk with a Lua ``script`` whose ``done`` writes ``WRKJSON {...}`` to stderr, and
    return that object. ``config`` becomes the script's global ``config`` table."""
    if shutil.which("wrk") is None:
        raise SystemExit("bench needs wrk: apt-get install wrk")
    if config is not None:
        script = f"config = {_lua(config)}\n{script}"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        completed = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds}s",
                "-s",
                handle.name,
                base_url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        Path(handle.name).unlink()
    match = re.search(r"WRKJSON (\{.*\})", completed.stderr)
    if match is None:
        raise RuntimeError(f"wrk printed no summary:\n{completed.stdout}\n{completed.stderr}")
    return dict(json.loads(match.group(1)))
