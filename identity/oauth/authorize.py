"""The authorization endpoint's rules: RFC 6749 §4.1, OIDC Core §3.1.2, RFC 7636, RFC 8707.

A request is parsed once into an ``AuthorizationRequest``; ``validate`` runs the named checks
in order and returns a ``ValidRequest``; ``must_sign_in`` and ``after_sign_in`` decide whether
the browser must sign in, consent, or can have its code. Nothing here touches SQL, HTML or HTTP.

Errors are Authlib's OAuth error classes. Until the redirect URI is verified an error carries
no ``redirect_uri`` and the caller renders a page (RFC 6749 §4.1.2.1: never redirect to an
unverified address); afterwards it carries the redirect URI and the state to send back.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from authlib.oauth2.rfc6749.util import scope_to_list

from identity.clients.models import OAuthClient
from identity.oauth import resources
from identity.oauth.errors import (
    AccessDeniedError,
    ConsentRequiredError,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    LoginRequiredError,
    OAuth2Error,
    RegistrationNotSupportedError,
    RequestNotSupportedError,
    RequestURINotSupportedError,
    UnauthorizedClientError,
    UnsupportedResponseTypeError,
)
from identity.oauth.parameters import CONTROL_CHARACTER
from identity.oauth.scopes import requested_at_authorize

# The parameters we read; any other is ignored (RFC 6749 §3.1). ``resource`` alone may repeat
# (RFC 8707 §2); every other parameter sent twice is an invalid_request (RFC 6749 §3.1).
PARAMETERS = frozenset(
    {
        "client_id",
        "redirect_uri",
        "response_type",
        "response_mode",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "prompt",
        "max_age",
        "login_hint",
        "id_token_hint",
        "ui_locales",
        "request",
        "request_uri",
        "registration",
        "account_id",  # identity.oauth.account_selection: the client pre-selects an account
    }
)
REPEATABLE = frozenset({"resource"})
# What the authorization response adds to the redirect URI's query (RFC 6749 §4.1.2 and
# §4.1.2.1, RFC 9207), with the names the OIDC Session Management response may carry: a
# redirect URI whose own query holds one would reach its client with the name twice.
RESPONSE_PARAMETERS = frozenset(
    {"code", "state", "iss", "error", "error_description", "error_uri", "session_state"}
)
# Larger values are refused: they would be echoed in redirects and stored with codes.
MAX_VALUE_LENGTH = 2048
# An ID token with profile claims and an RSA signature can pass 2 KB; it is never echoed.
MAX_HINT_LENGTH = 8192
PROMPTS = frozenset({"none", "login", "consent", "select_account"})
# RFC 7636 §4.2: BASE64URL(SHA256(verifier)) is 43 characters of the unreserved set.
_CODE_CHALLENGE = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """The parameters as sent: single values, the ``resource`` list, and what was malformed."""

    params: dict[str, str]
    resources: tuple[str, ...] = ()
    repeated: frozenset[str] = frozenset()
    too_long: frozenset[str] = frozenset()
    # With a control character: refused like the token side does (PostgreSQL cannot even
    # compare a text value holding NUL, so an unchecked client_id was a 500).
    control: frozenset[str] = frozenset()

    def get(self, name: str) -> str | None:
        return self.params.get(name)

    def sent(self, name: str) -> bool:
        """Whether ``name`` came with a value, well formed or not."""
        return name in self.params or name in self.repeated | self.too_long | self.control

    def to_json(self) -> dict[str, Any]:
        """For a pending flow; only requests that passed validation are stored."""
        return {"params": self.params, "resources": list(self.resources)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuthorizationRequest:
        return cls(params=dict(data["params"]), resources=tuple(data["resources"]))


def _too_long(name: str, value: str) -> bool:
    if name == "id_token_hint":
        return len(value) > MAX_HINT_LENGTH
    if name == "nonce":
        # The ID token carries it as a JSON string, UTF-8 encoded: 2048 characters of four
        # bytes, or of quotes JSON escapes as two, made ID tokens too long to come back as an
        # id_token_hint. Counted as carried, an ID token at its largest (longest name and
        # email too) stays within MAX_HINT_LENGTH.
        carried = json.dumps(value, ensure_ascii=False)[1:-1]
        return len(carried.encode(errors="surrogatepass")) > MAX_VALUE_LENGTH
    return len(value) > MAX_VALUE_LENGTH


def parse(items: Iterable[tuple[str, str]]) -> AuthorizationRequest:
    """Parameters from a query string or form body, in any order."""
    params: dict[str, str] = {}
    resources: list[str] = []
    repeated: set[str] = set()
    too_long: set[str] = set()
    control: set[str] = set()
    for name, value in items:
        # OIDC Core §3.1.2.1 / RFC 6749 §3.1: a parameter sent without a value is omitted.
        if value == "" or (name not in PARAMETERS and name not in REPEATABLE):
            continue
        if _too_long(name, value):
            too_long.add(name)
            continue
        if CONTROL_CHARACTER.search(value):
            control.add(name)
            continue
        if name in REPEATABLE:
            resources.append(value)
        elif name in params:
            repeated.add(name)
        else:
            params[name] = value
    for name in repeated:
        del params[name]
    return AuthorizationRequest(
        params, tuple(resources), frozenset(repeated), frozenset(too_long), frozenset(control)
    )


@dataclass(frozen=True, slots=True)
class ValidRequest:
    client: OAuthClient
    redirect_uri: str
    state: str | None
    scopes: tuple[str, ...]
    resources: tuple[str, ...]
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    prompt: frozenset[str]
    max_age: int | None
    login_hint: str | None
    id_token_hint: str | None
    ui_locales: str | None

    @property
    def scope(self) -> str:
        return " ".join(self.scopes)


def _malformed(request: AuthorizationRequest, name: str) -> str | None:
    if name in request.repeated:
        return f"The {name} parameter was sent more than once."
    if name in request.too_long:
        return f"The {name} parameter is too long."
    if name in request.control:
        return f"The {name} parameter contains a control character."
    return None


# --- checks made before the redirect URI is trusted: failures render a page ---------------


def check_client(request: AuthorizationRequest, client: OAuthClient | None) -> OAuthClient:
    """``client`` is what the repository found for ``client_id`` (None: unknown or disabled)."""
    if problem := _malformed(request, "client_id"):
        raise InvalidRequestError(problem)
    if not request.get("client_id"):
        raise InvalidRequestError("The client_id parameter is missing.")
    if client is None:
        raise unknown_client()
    return client


def unknown_client() -> InvalidClientError:
    """The client is not (or no longer) registered and enabled. Never redirected: its
    redirect URIs are not (or no longer) ones anybody vouches for, so the error is a page."""
    return InvalidClientError("The client is unknown or disabled.")


def check_redirect_uri(request: AuthorizationRequest, client: OAuthClient) -> str:
    """Exact string comparison with a registered URI (RFC 9700 §4.1.3): no prefix, no
    pattern; only the port of a native app's loopback redirect may differ (``_loopback_key``)."""
    if problem := _malformed(request, "redirect_uri"):
        raise InvalidRequestError(problem)
    redirect_uri = request.get("redirect_uri")
    # OIDC Core §3.1.2.1 makes redirect_uri required, so no default registered URI is assumed.
    if not redirect_uri:
        raise InvalidRequestError("The redirect_uri parameter is missing.")
    if not is_registered(redirect_uri, client):
        raise InvalidRequestError("The redirect_uri is not registered for this client.")
    return redirect_uri


def is_registered(redirect_uri: str, client: OAuthClient) -> bool:
    """Whether ``redirect_uri`` is one of the client's, as its registration stands now."""
    if redirect_uri in client.redirect_uris:
        return True
    key = _loopback_key(redirect_uri) if client.is_public else None
    return key is not None and key in {_loopback_key(uri) for uri in client.redirect_uris}


LOOPBACK_IPS = frozenset({"127.0.0.1", "::1"})


def _loopback_key(uri: str) -> str | None:
    """``uri`` without its port, when it is an http URI to a loopback IP literal; else None.

    RFC 8252 §7.3: a native app listens on a port the OS gives it at run time, so the
    server MUST accept any port on a loopback IP redirect URI; everything else still matches
    exactly. Only the IP literals: "localhost" may resolve elsewhere (RFC 8252 §8.3).
    """
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        return None
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_IPS:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return urlunsplit(parts._replace(netloc=host))


# --- checks after it: failures are sent back to the client -------------------------------


def check_parameters(request: AuthorizationRequest) -> None:
    """Every parameter we read is well formed; the unsupported ones are never read, and
    ``check_unsupported_parameters`` refuses them whatever their form."""
    malformed = request.repeated | request.too_long | request.control
    for name in sorted(malformed - UNSUPPORTED.keys()):
        raise InvalidRequestError(_malformed(request, name))


def check_response_type(request: AuthorizationRequest, client: OAuthClient) -> None:
    response_type = request.get("response_type")
    if not response_type:
        raise InvalidRequestError("The response_type parameter is missing.")
    if response_type != "code":
        raise UnsupportedResponseTypeError(
            response_type, description="Only the code response type is supported."
        )
    if "authorization_code" not in client.grant_types:
        raise UnauthorizedClientError("The client may not use the authorization code grant.")
    if request.get("response_mode") not in (None, "query"):
        raise InvalidRequestError("Only the query response mode is supported.")


def check_scope(request: AuthorizationRequest, client: OAuthClient) -> tuple[str, ...]:
    """Requested scopes, de-duplicated in order, offline_access dropped: openid first, all
    within the client's own."""
    scopes = tuple(requested_at_authorize(request.get("scope") or ""))
    if "openid" not in scopes:
        raise InvalidScopeError("The openid scope is required.")
    allowed = set(scope_to_list(client.scope))
    if not set(scopes) <= allowed:
        raise InvalidScopeError("The client may not request some of these scopes.")
    return scopes


def check_resources(request: AuthorizationRequest, client: OAuthClient) -> tuple[str, ...]:
    return tuple(resources.check_resources(request.resources, client.resources))


def check_pkce(request: AuthorizationRequest, client: OAuthClient) -> tuple[str | None, str | None]:
    """S256 only; required for public clients and, unless relaxed per client, for all."""
    challenge = request.get("code_challenge")
    method = request.get("code_challenge_method")
    if challenge is None:
        if method is not None:
            raise InvalidRequestError("code_challenge_method was sent without code_challenge.")
        if client.is_public or client.require_pkce:
            raise InvalidRequestError("PKCE is required: send code_challenge with S256.")
        return None, None
    # A missing method means "plain" (RFC 7636 §4.3), which we refuse like an explicit one.
    if method != "S256":
        raise InvalidRequestError("Only the S256 code_challenge_method is supported.")
    if not _CODE_CHALLENGE.match(challenge):
        raise InvalidRequestError("The code_challenge is malformed.")
    return challenge, method


# OIDC Core §3.1.2.6: parameters we do not support, each refused with its own error rather
# than ignored (the client would otherwise believe its request object or registration data
# was honoured).
UNSUPPORTED: dict[str, type[OAuth2Error]] = {
    "request": RequestNotSupportedError,
    "request_uri": RequestURINotSupportedError,
    "registration": RegistrationNotSupportedError,
}


def check_unsupported_parameters(request: AuthorizationRequest) -> None:
    """Runs first: OIDC Core §6.1 lets a client put any parameter but ``client_id``,
    ``response_type`` and ``scope`` only in the request object, so a missing
    ``code_challenge`` (say) would be a misleading answer to a request that holds one there.
    Sent at all is enough, malformed too: an encrypted request object is longer than any
    value we echo, and "too long" would tell its client to shorten what we never read.
    """
    for name, error in UNSUPPORTED.items():
        if request.sent(name):
            raise error(f"The {name} parameter is not supported.")


def check_prompt(request: AuthorizationRequest) -> frozenset[str]:
    prompt = frozenset(scope_to_list(request.get("prompt") or ""))
    if not prompt <= PROMPTS:
        raise InvalidRequestError("prompt may only hold none, login, consent and select_account.")
    if "none" in prompt and len(prompt) > 1:
        raise InvalidRequestError("prompt=none cannot be combined with other values.")
    return prompt


def check_max_age(request: AuthorizationRequest) -> int | None:
    raw = request.get("max_age")
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit():
        raise InvalidRequestError("max_age must be a whole number of seconds.")
    return int(raw)


def validate(request: AuthorizationRequest, client: OAuthClient | None) -> ValidRequest:
    """Run every check in order; raise the first failure."""
    verified_client = check_client(request, client)
    redirect_uri = check_redirect_uri(request, verified_client)
    # From here on the client gets its errors at its redirect URI, with its state.
    state = None if "state" in request.repeated | request.too_long else request.get("state")
    try:
        check_parameters(request)
        check_unsupported_parameters(request)
        check_response_type(request, verified_client)
        scopes = check_scope(request, verified_client)
        resources = check_resources(request, verified_client)
        challenge, method = check_pkce(request, verified_client)
        prompt = check_prompt(request)
        max_age = check_max_age(request)
    except OAuth2Error as exc:
        raise redirectable(
            exc, redirect_uri, state, fragment=answers_in_fragment(request)
        ) from None
    return ValidRequest(
        client=verified_client,
        redirect_uri=redirect_uri,
        state=state,
        scopes=scopes,
        resources=resources,
        nonce=request.get("nonce"),
        code_challenge=challenge,
        code_challenge_method=method,
        prompt=prompt,
        max_age=max_age,
        login_hint=request.get("login_hint"),
        id_token_hint=request.get("id_token_hint"),
        ui_locales=request.get("ui_locales"),
    )


def answers_in_fragment(request: AuthorizationRequest) -> bool:
    """Whether the client reads its answer from the fragment, where its refusal must go too:
    asked with response_mode, else the default of its response type (a token or ID token in
    it, OAuth 2.0 Multiple Response Type Encoding Practices §2.1; RFC 6749 §4.2.2.1), as
    node-oidc-provider decides. Only ``code`` is supported, so this matters only for errors.
    """
    mode = request.get("response_mode")
    if mode in ("query", "fragment"):
        return mode == "fragment"
    return not {"token", "id_token"}.isdisjoint((request.get("response_type") or "").split())


def redirectable(
    exc: OAuth2Error, redirect_uri: str, state: str | None, *, fragment: bool = False
) -> OAuth2Error:
    exc.redirect_uri = redirect_uri
    exc.state = state
    exc.redirect_fragment = fragment
    return exc


# --- what the browser must do next --------------------------------------------------------


class Step(enum.Enum):
    LOGIN = "login"
    # Picking a customer account (identity.oauth.account_selection): after login, before consent.
    ACCOUNT = "account"
    CONSENT = "consent"
    ISSUE = "issue"


@dataclass(frozen=True, slots=True)
class Interaction:
    """What is known about the browser when deciding the next step."""

    # auth_time of the browser's signed-in session, None when it has none.
    auth_time: datetime | None
    # The signed-in user, and the user a verified id_token_hint names (None: no hint).
    subject: str | None
    hinted_subject: str | None
    # True when that session was created by signing in during this very request's flow,
    # which satisfies prompt=login and max_age however they are set.
    signed_in_now: bool
    # The user's remembered consent covers the requested scopes and the account picked (or
    # the client needs none).
    consent_covers: bool
    # The user's answer on the consent page during this flow, if asked.
    consent_given: bool | None


def must_sign_in(request: ValidRequest, interaction: Interaction, now: datetime) -> bool:
    """Whether the browser must sign in first; ``login_required`` if it must but may not
    (OIDC Core §3.1.2.1 prompt and max_age, §3.1.2.6 errors for prompt=none). Then, once the
    caller has picked the customer account the consent is for, ``after_sign_in``."""
    # OIDC Core §3.1.2.1: a hint naming someone else than the signed-in user.
    other_user = interaction.hinted_subject not in (None, interaction.subject)
    if interaction.auth_time is None:
        needs_login = True
    elif interaction.signed_in_now:
        if other_user:
            # Asked to sign in as the hinted user, they signed in as someone else: the
            # client asked about one user and must not silently get a code for another.
            raise redirectable(
                LoginRequiredError("The user who signed in is not the one id_token_hint names."),
                request.redirect_uri,
                request.state,
            )
        needs_login = False
    else:
        # OIDC Core §3.1.2.1: max_age=0 is prompt=login, however recent the sign-in looks by
        # this process's clock (another's may run ahead of it, or both read the same tick).
        too_old = request.max_age is not None and (
            request.max_age == 0 or (now - interaction.auth_time).total_seconds() > request.max_age
        )
        needs_login = "login" in request.prompt or too_old or other_user
    if needs_login and "none" in request.prompt:
        raise redirectable(
            LoginRequiredError("The user is not signed in."), request.redirect_uri, request.state
        )
    return needs_login


def check_not_denied(request: ValidRequest, interaction: Interaction) -> None:
    """The user's "Deny" ends the request, whatever else has changed since the page."""
    if interaction.consent_given is False:
        raise redirectable(
            AccessDeniedError("The user denied the request."), request.redirect_uri, request.state
        )


def after_sign_in(request: ValidRequest, interaction: Interaction) -> Step:
    """Consent, or the code, for a signed-in user (with their account picked)."""
    check_not_denied(request, interaction)
    if request.client.first_party or interaction.consent_given:
        return Step.ISSUE
    if "consent" in request.prompt or not interaction.consent_covers:
        if "none" in request.prompt:
            raise redirectable(
                ConsentRequiredError("The user has not consented to this client."),
                request.redirect_uri,
                request.state,
            )
        return Step.CONSENT
    return Step.ISSUE
