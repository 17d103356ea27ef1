"""The Litestar application factory: routes, dependencies, error mapping."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Server

from identity import __version__
from identity.db import migrate
from identity.logs import configure_logging
from identity.runtime import Runtime
from identity.settings import Settings
from identity.web import (
    form_addresses,
    health,
    metrics,
    oauth,
    pages,
    pages_account,
    pages_memberships,
    pages_recovery,
    pages_second_factor,
)
from identity.web.api import management, password, recovery
from identity.web.cors import cors_middleware
from identity.web.dependencies import provide_runtime
from identity.web.head_requests import head_as_get_middleware
from identity.web.openapi import COMPONENTS, ClosedBodiesPlugin, ProblemJsonRenderPlugin
from identity.web.problems import EXCEPTION_HANDLERS
from identity.web.public_path import public_path_middleware
from identity.web.request_context import request_context_middleware
from identity.web.requests import AppRequest, strict_json_bodies

# The hosted pages' handlers: their forms' addresses, opened with GET, lead to their pages.
PAGE_ROUTES = [
    *pages.ROUTES,
    *pages_memberships.ROUTES,
    *pages_recovery.ROUTES,
    *pages_second_factor.ROUTES,
    *pages_account.ROUTES,
]


def create_app(settings: Settings) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate.read_scripts)
        runtime = Runtime(settings)
        app.state.runtime = runtime
        runtime.mail.start()
        runtime.webhooks.start()
        runtime.housekeeping.start()
        try:
            yield
        finally:
            await runtime.close()

    app = Litestar(
        route_handlers=[
            health.live,
            health.ready,
            metrics.metrics,
            password.PasswordController,
            management.ROUTER,
            recovery.RecoveryController,
            *oauth.ROUTES,
            *PAGE_ROUTES,
            *form_addresses.back_to_their_pages(PAGE_ROUTES),
        ],
        template_config=pages.template_config(),
        dependencies={"runtime": Provide(provide_runtime, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        request_class=AppRequest,
        plugins=[ClosedBodiesPlugin()],
        openapi_config=OpenAPIConfig(
            title="identity management API",
            version=__version__,
            path="/schema",
            # Relative to where the document is fetched: under the issuer's path, if any.
            servers=[Server(url=settings.public_path or "/")],
            components=COMPONENTS,
            render_plugins=[ProblemJsonRenderPlugin()],
        ),
        debug=False,
        logging_config=None,  # our JSON logging (identity.logs), not Litestar's default
    )
    strict_json_bodies(app)
    # Outermost, around Litestar's router, so that 404s and 405s get a request id and an
    # access-log line too (route middleware only sees requests that matched a route).
    # Metrics inside the request context, so they time what the access log times; both
    # outside the HEAD-as-GET rewrite, so that they count a HEAD as one. CORS inside it,
    # so that a HEAD gets a GET's headers; around the router, so that it answers preflights.
    # Redirects under the issuer's path: outside CORS and HEAD handling, which answer with
    # no Location of their own.
    app.asgi_handler = request_context_middleware(
        metrics.metrics_middleware(
            public_path_middleware(
                head_as_get_middleware(cors_middleware(app.asgi_handler)), settings.public_path
            )
        ),
        https=settings.https,
    )
    return app


def create_app_from_env() -> Litestar:
    """Entry point for ASGI servers started by ``identity serve`` (one per worker process)."""
    settings = Settings.from_env(os.environ)
    configure_logging(settings.log_level)
    app = create_app(settings)
    # The modules and the app live as long as the worker. Frozen, they are left out of the
    # collector's full passes, each of which otherwise paused every request in flight for
    # about 100 ms, every few seconds under load.
    gc.freeze()
    return app
