"""RP-initiated logout rules (OpenID Connect RP-Initiated Logout 1.0 §2 and §3).

The client sends the browser to the end_session_endpoint with an ``id_token_hint`` (an ID
token we issued; expired ones are welcome, since a logout often follows expiry), optionally
``client_id``, a ``post_logout_redirect_uri`` that must exactly match one registered for the
client, and a ``state`` to get back. Failures here render a page: we never redirect to an
address we could not tie to a client.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from identity.clients.models import OAuthClient
from identity.oauth.errors import InvalidRequestError
from identity.oauth.id_token_hint import issued_to
from identity.oauth.parameters import CONTROL_CHARACTER

PARAMETERS = frozenset(
    {"id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales"}
)


# What the logout answer adds to the post-logout redirect URI's query (§3).
RESPONSE_PARAMETERS = frozenset({"state"})


def parse(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in items:
        if name not in PARAMETERS or value == "":
            continue
        if name in params:
            raise InvalidRequestError(f"The {name} parameter was sent more than once.")
        if CONTROL_CHARACTER.search(value):
            raise InvalidRequestError(f"The {name} parameter contains a control character.")
        params[name] = value
    return params


def client_id_of(params: dict[str, str], claims: dict[str, Any] | None) -> str | None:
    """The client named by ``client_id`` and/or the client the hint was issued to; §2: they
    must be the same ("the one used when issuing the ID Token", not another audience)."""
    client_id = params.get("client_id")
    if claims is None:
        return client_id
    hinted = issued_to(claims)
    if client_id is not None and client_id != hinted:
        raise InvalidRequestError("client_id does not match the id_token_hint.")
    return hinted


@dataclass(frozen=True, slots=True)
class LogoutRequest:
    # The subject and session (``sid``) of a verified id_token_hint: the RP vouches for who
    # is signing out, and of which sign-in.
    subject: str | None
    sid: str | None
    client: OAuthClient | None
    post_logout_redirect_uri: str | None
    state: str | None


def check(
    params: dict[str, str], claims: dict[str, Any] | None, client: OAuthClient | None
) -> LogoutRequest:
    uri = params.get("post_logout_redirect_uri")
    if uri is not None:
        if client is None:
            raise InvalidRequestError("post_logout_redirect_uri needs a client to match it.")
        if uri not in client.post_logout_redirect_uris:
            raise InvalidRequestError("The post_logout_redirect_uri is not registered.")
    sid = claims.get("sid") if claims and client else None
    return LogoutRequest(
        # A hint vouches only while the client it was issued to is registered and enabled
        # (``client`` is None otherwise): one staff disabled or deleted, perhaps for being
        # taken over, must not sign users out unasked.
        subject=claims["sub"] if claims and client else None,
        sid=sid if isinstance(sid, str) else None,
        client=client,
        post_logout_redirect_uri=uri,
        state=params.get("state"),
    )


def vouches_for(request: LogoutRequest, user_id: str, sid: str | None) -> bool:
    """Whether the hint names the signed-in user's current session. §2: the OP must ask
    when the ID token "does not belong to the current OP session with the RP and/or currently
    logged in End-User": one from an earlier sign-in of the same user, left at an app or
    replayed by a page that got hold of it, must not end a newer session unasked."""
    return request.subject == user_id and sid is not None and request.sid == sid
