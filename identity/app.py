"""The Litestar application factory: routes, dependencies, error mapping."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from identity import __version__
from identity.logs import configure_logging
from identity.runtime import Runtime
from identity.settings import Settings
from identity.web import health
from identity.web.dependencies import provide_runtime
from identity.web.problems import EXCEPTION_HANDLERS
from identity.web.request_context import request_context_middleware


def create_app(settings: Settings) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime = Runtime(settings)
        app.state.runtime = runtime
        runtime.mail.start()
        try:
            yield
        finally:
            await runtime.close()

    app = Litestar(
        route_handlers=[health.live, health.ready],
        dependencies={"runtime": Provide(provide_runtime, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="identity management API",
            version=__version__,
            path="/schema",
            render_plugins=[JsonRenderPlugin()],
        ),
        debug=False,
        logging_config=None,  # our JSON logging (identity.logs), not Litestar's default
    )
    # Outermost, around Litestar's router, so that 404s and 405s get a request id and an
    # access-log line too (route middleware only sees requests that matched a route).
    app.asgi_handler = request_context_middleware(app.asgi_handler)
    return app


def create_app_from_env() -> Litestar:
    """Entry point for ASGI servers started by ``identity serve`` (one per worker process)."""
    settings = Settings.from_env(os.environ)
    configure_logging(settings.log_level)
    return create_app(settings)
