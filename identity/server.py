"""``identity serve``: prepare the database once, then hand over to uvicorn."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
from urllib.parse import urlsplit

import uvicorn

from identity.bounded_http import BoundedProtocol
from identity.commands import prepare
from identity.logs import configure_logging
from identity.metrics import MULTIPROCESS_DIR_VAR
from identity.settings import Settings
from identity.uris import is_loopback

log = logging.getLogger(__name__)


def serve(settings: Settings, *, host: str, port: int, workers: int) -> None:
    configure_logging(settings.log_level)
    # Migrations and the first key run here, once, before any worker starts: workers
    # racing to migrate the same database would fail.
    users = prepare(settings)
    if users == 0:
        print(
            "No users yet. Create the first administrator with: "
            "identity users create --email you@example.com --password-stdin --admin",
            flush=True,
        )
    if not settings.https and not is_loopback(urlsplit(settings.issuer).hostname):
        # Refusing it would break development set-ups reached by a LAN address or a
        # container name; in production it means cookies and tokens travel in clear.
        log.warning(
            "IDENTITY_ISSUER is http:// on a host other than this machine: session cookies "
            "are not Secure and passwords and tokens cross the network unencrypted; behind "
            "a TLS proxy, set it to the https:// address browsers use"
        )
    # Several workers share one socket, so a scrape reaches any one of them: each writes its
    # metrics to files in one folder, and /metrics sums them (identity/metrics.py). A fresh
    # folder per start, so counts of an earlier run are not added in.
    if workers > 1 and not settings.redis_url:
        log.warning(
            "several workers without IDENTITY_REDIS_URL: each keeps its own pending sign-ins "
            "(a browser whose requests reach another worker is asked to start again) and "
            "allows its share of each rate limit; set IDENTITY_REDIS_URL to share them"
        )
    # Unless told how many processes share Redis across machines, this machine's workers do:
    # each allows that share of a rate limit while Redis is down (identity/store/rate_limit.py).
    os.environ.setdefault("IDENTITY_SERVER_PROCESSES", str(workers))
    metrics_dir = None
    if workers > 1 and not os.environ.get(MULTIPROCESS_DIR_VAR):
        metrics_dir = tempfile.mkdtemp(prefix="identity-metrics-")
        os.environ[MULTIPROCESS_DIR_VAR] = metrics_dir
    try:
        _run_uvicorn(settings, host, port, workers)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_uvicorn(settings: Settings, host: str, port: int, workers: int) -> None:
    uvicorn.run(
        "identity.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        # Client addresses from X-Forwarded-For are trusted only for IDENTITY_TRUSTED_PROXIES,
        # which the service checks itself; uvicorn must not rewrite them first.
        proxy_headers=False,
        server_header=False,
        access_log=False,
        # A partial of a module-level class: workers are spawned, and it must pickle.
        http=functools.partial(BoundedProtocol, read_timeout=settings.request_read_timeout),
    )
