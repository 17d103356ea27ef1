"""Forgotten passwords: /api/v1/password/forgot and /api/v1/password/reset.

``forgot`` answers 202 with one fixed body for every address, known or not, and also when
the per-address limit has been reached (see identity.recovery.service); only the limits per
client address and overall, which say nothing about any account, answer 429.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, post
from litestar.params import JSONBody

from identity.i18n import negotiate
from identity.recovery.service import complete_reset, request_reset
from identity.web.actors import request_origin
from identity.web.api.password import NO_STORE, require_json
from identity.web.client_ip import of_request, rate_subject
from identity.web.dependencies import RuntimeDep
from identity.web.openapi import problems

ACCEPTED_DETAIL = (
    "If an account uses this email address, a message with a link to choose a new password "
    "is on its way. Check the spam folder too."
)


class ForgotRequest(msgspec.Struct):
    email: Annotated[str, msgspec.Meta(max_length=320)]


class Accepted(msgspec.Struct):
    status: str
    detail: str


ACCEPTED = Accepted(status="accepted", detail=ACCEPTED_DETAIL)


class ResetRequest(msgspec.Struct):
    token: Annotated[str, msgspec.Meta(max_length=200)]
    # No length cap of their own: the body cap bounds them, and the policy refuses an
    # overlong password as password.too_long, as /check, the pages and the CLI do.
    password: str
    password_confirm: str


def _locale(request: Request[Any, Any, Any]) -> str:
    return negotiate(None, request.headers.get("accept-language"))


class RecoveryController(Controller):
    path = "/api/v1/password"
    tags = ["passwords"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post(
        "/forgot",
        guards=[require_json],
        status_code=202,
        cache_control=NO_STORE,
        summary="Email a password-reset link, if an account uses the address",
        responses=problems(415, 422, 429),
        description="The same 202 answer for every address; 429 only for limits per client "
        "address and overall.",
    )
    async def forgot(
        self, request: Request[Any, Any, Any], runtime: RuntimeDep, data: JSONBody[ForgotRequest]
    ) -> Accepted:
        ip = rate_subject(of_request(request, runtime.settings.trusted_proxies))
        await request_reset(runtime, data.email, ip=ip, locale=_locale(request))
        return ACCEPTED

    @post(
        "/reset",
        guards=[require_json],
        status_code=204,
        cache_control=NO_STORE,
        summary="Choose a new password with the token from a reset link",
        responses=problems(415, 422),
        description="Signs the user out everywhere (sessions and refresh tokens) and emails "
        "a notice. 400 invalid-reset-token, 422 password-mismatch or policy-violation.",
    )
    async def reset(
        self, request: Request[Any, Any, Any], runtime: RuntimeDep, data: JSONBody[ResetRequest]
    ) -> None:
        await complete_reset(
            runtime.db,
            runtime.store,
            runtime.passwords,
            data.token,
            data.password,
            data.password_confirm,
            origin=request_origin(request, runtime),
            product_name=runtime.settings.product_name,
            locale=_locale(request),
        )
        runtime.mail.wake()
