"""A pending sign-in (flow) as stored: its JSON, and flows stored by earlier versions."""

from __future__ import annotations

import json

from identity.oauth.authorize import AuthorizationRequest
from identity.oauth.interaction import Flow

EMOJI = "\U0001f600"


def _flow(**params: str) -> Flow:
    return Flow(AuthorizationRequest({"client_id": "webapp", **params}), id="f1")


def test_a_flow_is_stored_as_utf8_not_as_json_escapes() -> None:
    """JSON's \\ud83d\\ude00 spends 12 bytes on an emoji UTF-8 writes in 4: a flood of flows
    with the longest emoji login_hint held three times the store it needs."""
    plain = len(_flow(login_hint="").dumps())
    raw = _flow(login_hint=EMOJI * 2048).dumps()

    assert len(raw) - plain <= 4 * 2048 + 2
    assert EMOJI.encode() in raw


def test_a_flow_loads_as_it_was_saved() -> None:
    flow = _flow(login_hint=f"ana{EMOJI}é", state="s")
    flow.account_id = "a1"

    loaded = Flow.loads("f1", flow.dumps())

    assert loaded.request.params == flow.request.params
    assert loaded.account_id == "a1" and loaded.stored


def test_a_flow_saved_with_json_escapes_still_loads() -> None:
    """Flows stored before they were written as UTF-8, still pending during an upgrade."""
    old = json.dumps(
        {
            "request": {"params": {"login_hint": EMOJI}, "resources": []},
            "login_session_id": None,
        }
    ).encode()
    assert old.isascii()

    assert Flow.loads("f1", old).request.get("login_hint") == EMOJI


def test_a_value_with_an_unpaired_surrogate_is_still_stored() -> None:
    """UTF-8 cannot write half a surrogate pair; JSON's escape can, as before."""
    flow = _flow(state="\udc80")

    assert Flow.loads("f1", flow.dumps()).request.get("state") == "\udc80"
