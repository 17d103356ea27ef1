"""A pending authorization request, saved while the browser signs in or consents.

Like a kratos flow: the validated parameters are kept in the shared store under a random id
with a time to live, and /login?flow=ID and /consent?flow=ID resume them. The store is
Redis when configured, so a flow begun on one server process finishes on any other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from identity.crypto import random_token
from identity.oauth.authorize import AuthorizationRequest
from identity.store.base import Store

# Long enough to type a password and read a consent page; short enough that a stale link
# fails with "start again" rather than resuming hours later.
FLOW_TTL = 15 * 60
_PREFIX = "flow:"


@dataclass(slots=True)
class Flow:
    request: AuthorizationRequest
    id: str = field(default_factory=random_token)
    # The browser session created by signing in during this flow: it satisfies prompt=login
    # and max_age when the flow resumes.
    login_session_id: str | None = None
    # The account picked on /login/account during this flow (checked again on resume).
    account_id: str | None = None
    # The user answered /login/account during this flow: prompt=select_account is satisfied.
    user_chose: bool = False
    # The account the consent page asks about (None: tokens without one). An answer counts
    # only for the account the page named: the one picked may have changed since.
    consent_account_id: str | None = None
    # A flow with no authorization request: after sign-in the browser goes back to this
    # local path (a hosted page such as /account/users that needed a signed-in user).
    return_to: str | None = None
    # Read from the store (not written with it): saving it again stores no new flow, which is
    # what a client address is limited in (web/authorization.py NEW_FLOWS).
    stored: bool = False
    # In the store now: read or saved, and not taken out since. A flow that is not has
    # nothing to delete when it ends (a code given at once, or one given after the login or
    # code post took the flow): one store round trip fewer.
    in_store: bool = False

    def dumps(self) -> bytes:
        data = {
            "request": self.request.to_json(),
            "login_session_id": self.login_session_id,
            "account_id": self.account_id,
            "user_chose": self.user_chose,
            "consent_account_id": self.consent_account_id,
            "return_to": self.return_to,
        }
        # UTF-8, not JSON's \uXXXX escapes: those spend 12 bytes on an emoji (6 on any other
        # letter beyond ASCII) that UTF-8 writes in 4, and a flood of flows holds the store.
        # Half a surrogate pair has no UTF-8: only an escape carries it, as before. ``loads``
        # reads both, so flows saved by an earlier version still resume.
        try:
            return json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            return json.dumps(data).encode()

    @classmethod
    def loads(cls, flow_id: str, raw: bytes) -> Flow:
        data = json.loads(raw)
        return cls(
            request=AuthorizationRequest.from_json(data["request"]),
            id=flow_id,
            login_session_id=data["login_session_id"],
            # Flows saved by a process that predates these fields have none.
            account_id=data.get("account_id"),
            user_chose=data.get("user_chose", False),
            consent_account_id=data.get("consent_account_id"),
            return_to=data.get("return_to"),
            stored=True,
            in_store=True,
        )


class FlowStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def save(self, flow: Flow) -> None:
        await self._store.set(_PREFIX + flow.id, flow.dumps(), FLOW_TTL)
        flow.in_store = True

    async def load(self, flow_id: str | None) -> Flow | None:
        if not flow_id:
            return None
        raw = await self._store.get(_PREFIX + flow_id)
        return Flow.loads(flow_id, raw) if raw is not None else None

    async def consume(self, flow_id: str | None) -> Flow | None:
        """Take the flow out of the store: of two racing submissions only one gets it."""
        if not flow_id:
            return None
        raw = await self._store.consume(_PREFIX + flow_id)
        if raw is None:
            return None
        flow = Flow.loads(flow_id, raw)
        flow.in_store = False
        return flow

    async def end(self, flow: Flow) -> None:
        """The sign-in is over (answered, failed, or gone back to its page): nothing
        resumes the flow."""
        if flow.in_store:
            await self.delete(flow.id)

    async def delete(self, flow_id: str) -> None:
        await self._store.delete(_PREFIX + flow_id)
