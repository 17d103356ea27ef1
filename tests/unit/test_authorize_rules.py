"""identity.oauth.authorize without the app: parsing and the decision of the next step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from identity.clients.models import OAuthClient
from identity.oauth.authorize import (
    Interaction,
    Step,
    ValidRequest,
    after_sign_in,
    must_sign_in,
    parse,
    validate,
)
from identity.oauth.errors import OAuth2Error

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
REGISTRATION: dict[str, object] = {
    "client_id": "app",
    "name": "App",
    "is_public": True,
    "first_party": False,
    "require_pkce": True,
    "redirect_uris": ["https://app.example/cb"],
    "grant_types": ["authorization_code"],
    "scope": "openid profile",
    "resources": [],
}
CLIENT = OAuthClient(**REGISTRATION)
FIRST_PARTY = OAuthClient(**REGISTRATION | {"first_party": True})
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_parse_ignores_unknown_and_empty_parameters_and_notes_repeats() -> None:
    request = parse(
        [("client_id", "app"), ("foo", "bar"), ("state", ""), ("scope", "a"), ("scope", "b")]
    )
    assert request.params == {"client_id": "app"}
    assert request.repeated == {"scope"}


def test_parse_keeps_every_resource() -> None:
    request = parse([("resource", "https://a.example/"), ("resource", "https://b.example/")])
    assert request.resources == ("https://a.example/", "https://b.example/")
    assert not request.repeated


def valid(client: OAuthClient = CLIENT, **extra: str) -> ValidRequest:
    params = {
        "client_id": "app",
        "redirect_uri": "https://app.example/cb",
        "response_type": "code",
        "scope": "openid profile openid",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
    } | extra
    return validate(parse(params.items()), client)


def test_validate_deduplicates_scopes_in_order() -> None:
    assert valid().scopes == ("openid", "profile")


def test_errors_before_the_redirect_uri_carry_no_redirect() -> None:
    with pytest.raises(OAuth2Error) as caught:
        validate(parse([("client_id", "app"), ("redirect_uri", "https://evil.example/")]), CLIENT)
    assert caught.value.redirect_uri is None


def test_errors_after_it_carry_the_redirect_and_state() -> None:
    with pytest.raises(OAuth2Error) as caught:
        valid(response_type="token", state="xyz")
    assert (caught.value.redirect_uri, caught.value.state) == ("https://app.example/cb", "xyz")


def interaction(**fields: object) -> Interaction:
    values: dict[str, object] = {
        "auth_time": NOW - timedelta(minutes=5),
        "subject": "user-1",
        "hinted_subject": None,
        "signed_in_now": False,
        "consent_covers": True,
        "consent_given": None,
    } | fields
    return Interaction(**values)  # type: ignore[arg-type]


def next_step(request: ValidRequest, interaction: Interaction, now: datetime) -> Step:
    """The two halves as the authorization step runs them, with the account already picked."""
    if must_sign_in(request, interaction, now):
        return Step.LOGIN
    return after_sign_in(request, interaction)


@pytest.mark.parametrize(
    ("extra", "fields", "expected"),
    [
        ({}, {"auth_time": None}, Step.LOGIN),
        ({}, {}, Step.ISSUE),
        ({"prompt": "login"}, {}, Step.LOGIN),
        ({"prompt": "login"}, {"signed_in_now": True}, Step.ISSUE),
        ({"max_age": "600"}, {}, Step.ISSUE),
        ({"max_age": "60"}, {}, Step.LOGIN),
        ({"max_age": "0"}, {"signed_in_now": True}, Step.ISSUE),
        ({}, {"consent_covers": False}, Step.CONSENT),
        ({"prompt": "consent"}, {}, Step.CONSENT),
        ({"prompt": "consent"}, {"consent_given": True}, Step.ISSUE),
        ({}, {"hinted_subject": "user-1"}, Step.ISSUE),
        ({}, {"hinted_subject": "user-2"}, Step.LOGIN),
        ({}, {"hinted_subject": "user-2", "subject": "user-2", "signed_in_now": True}, Step.ISSUE),
    ],
)
def test_next_step(extra: dict[str, str], fields: dict[str, object], expected: Step) -> None:
    assert next_step(valid(**extra), interaction(**fields), NOW) is expected


@pytest.mark.parametrize("prompt", [{}, {"prompt": "consent"}])
def test_a_first_party_client_is_never_shown_the_consent_page(prompt: dict[str, str]) -> None:
    """``--first-party`` skips the consent screen (INTERFACE.md), ``prompt=consent`` too."""
    request = valid(client=FIRST_PARTY, **prompt)
    assert next_step(request, interaction(consent_covers=False), NOW) is Step.ISSUE


@pytest.mark.parametrize(
    ("extra", "fields", "error"),
    [
        ({"prompt": "none"}, {"auth_time": None}, "login_required"),
        ({"prompt": "none", "max_age": "1"}, {}, "login_required"),
        ({"prompt": "none"}, {"hinted_subject": "user-2"}, "login_required"),
        # OIDC Core §3.1.2.1: asked to sign in as the hinted user, they signed in as another.
        ({}, {"hinted_subject": "user-2", "signed_in_now": True}, "login_required"),
        (
            {"prompt": "login"},
            {"hinted_subject": "user-2", "signed_in_now": True},
            "login_required",
        ),
        ({"prompt": "none"}, {"consent_covers": False}, "consent_required"),
        ({}, {"consent_given": False}, "access_denied"),
    ],
)
def test_next_step_errors(extra: dict[str, str], fields: dict[str, object], error: str) -> None:
    with pytest.raises(OAuth2Error) as caught:
        next_step(valid(**extra), interaction(**fields), NOW)
    assert caught.value.error == error
    assert caught.value.redirect_uri == "https://app.example/cb"
