"""Password policy, live check and generator for front ends: /api/v1/password/...

Passwords arrive in request bodies only, are never logged, and answers that hold one are
marked ``no-store``.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, Request, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import JSONBody, Parameter

from identity.accounts.password_generator import DEFAULT_LENGTH
from identity.accounts.password_messages import texts
from identity.accounts.password_policy import REASON_IDS, Verdict
from identity.store.rate_limit import Limit
from identity.web.client_ip import of_request, rate_subject
from identity.web.dependencies import RuntimeDep
from identity.web.openapi import problems

# A live strength meter checks as the user types (debounced): a few per second at most.
CHECK_LIMIT = Limit("password-check", max=60, window=60)
GENERATE_LIMIT = Limit("password-generate", max=30, window=60)
NO_STORE = CacheControlHeader(no_store=True)


class Text(msgspec.Struct):
    """A rule or a refusal reason: its stable id and its text in every language."""

    id: str
    messages: dict[str, str]


class PolicyDocument(msgspec.Struct):
    preset: str
    min_length: int
    max_length: int
    require: list[str]
    min_score: int
    dictionary: str
    rules: list[Text]
    reasons: dict[str, dict[str, str]]


class CheckRequest(msgspec.Struct):
    password: str
    email: Annotated[str, msgspec.Meta(max_length=320)] = ""
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""


class CheckResult(msgspec.Struct):
    accepted: bool
    score: int
    reasons: list[Text]


class GeneratedPassword(msgspec.Struct):
    password: str


def require_json(
    connection: ASGIConnection[Any, Any, Any, Any], route_handler: BaseRouteHandler
) -> None:
    """415 for a body sent as anything but JSON, which it would be parsed as all the same.
    A handler that takes no body (a GET, a resend) takes any request."""
    if "data" not in route_handler.parsed_fn_signature.parameters:
        return
    media_type = connection.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(status_code=415, detail="Send the body as application/json.")


async def _count(request: Request[Any, Any, Any], runtime: RuntimeDep, limit: Limit) -> None:
    client = rate_subject(of_request(request, runtime.settings.trusted_proxies))
    await runtime.limiter.spend(limit, client, "Too many requests; try again later.")


def _result(verdict: Verdict) -> CheckResult:
    reasons = [Text(r.id, r.messages) for r in verdict.reasons]
    return CheckResult(accepted=verdict.accepted, score=verdict.score, reasons=reasons)


class PasswordController(Controller):
    path = "/api/v1/password"
    tags = ["passwords"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("/policy", summary="The password policy in force, in English and Spanish")
    async def policy(self, runtime: RuntimeDep) -> PolicyDocument:
        policy = runtime.passwords.policy
        rules = policy.rules
        params = {"min": rules.min_length, "max": rules.max_length, "min_score": rules.min_score}
        return PolicyDocument(
            preset=policy.preset,
            min_length=rules.min_length,
            max_length=rules.max_length,
            require=list(rules.require),
            min_score=rules.min_score,
            dictionary=rules.dictionary,
            rules=[Text(text_id, texts(text_id, **p)) for text_id, p in policy.describe()],
            reasons={reason_id: texts(reason_id, **params) for reason_id in REASON_IDS},
        )

    @post(
        "/check",
        guards=[require_json],
        status_code=200,
        cache_control=NO_STORE,
        summary="The policy's verdict and a strength score (0-4) for a password",
        responses=problems(415, 429),
    )
    async def check(
        self, request: Request[Any, Any, Any], runtime: RuntimeDep, data: JSONBody[CheckRequest]
    ) -> CheckResult:
        await _count(request, runtime, CHECK_LIMIT)
        verdict = await runtime.passwords.check(data.password, email=data.email, name=data.name)
        return _result(verdict)

    @get(
        "/generate",
        cache_control=NO_STORE,
        summary="A random password that passes the policy, without look-alike characters",
        responses=problems(422, 429),
    )
    async def generate(
        self,
        request: Request[Any, Any, Any],
        runtime: RuntimeDep,
        length: Annotated[
            int | None,
            Parameter(
                ge=1,
                le=1024,
                description=f"characters, within the policy's lengths; by default "
                f"{DEFAULT_LENGTH}, or the policy's minimum when that is longer",
            ),
        ] = None,
    ) -> GeneratedPassword:
        await _count(request, runtime, GENERATE_LIMIT)
        password = await anyio.to_thread.run_sync(runtime.passwords.generate, length)
        return GeneratedPassword(password)
