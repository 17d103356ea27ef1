"""Which origin a redirect URI's page has, and which origins a client serves (CORS)."""

from __future__ import annotations

import pytest

from identity.clients.models import OAuthClient
from identity.oauth.origins import OriginNotAllowed, check_origin, origin_of


@pytest.mark.parametrize(
    ("uri", "origin"),
    [
        ("https://app.example.com/callback?x=1#f", "https://app.example.com"),
        ("HTTPS://App.Example.COM:443/cb", "https://app.example.com"),
        ("http://localhost:80/cb", "http://localhost"),
        ("http://localhost:5173/cb", "http://localhost:5173"),
        ("https://app.example.com:8443/cb", "https://app.example.com:8443"),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:8080"),
        ("http://[::1]:8080/cb", "http://[::1]:8080"),
        ("https://user:pw@app.example.com/cb", "https://app.example.com"),
        ("https://bücher.example/cb", "https://xn--bcher-kva.example"),
        # As the WHATWG URL standard maps hosts (UTS #46, non-transitional), not IDNA2003:
        # strasse.example is another site, which must not be allowed for this client.
        ("https://straße.example/cb", "https://xn--strae-oqa.example"),
    ],
)
def test_origin_of_a_web_redirect_uri_is_what_a_browser_sends(uri: str, origin: str) -> None:
    assert origin_of(uri) == origin


@pytest.mark.parametrize(
    "uri", ["com.example.app:/callback", "file:///tmp/x.html", "https://", "http://h:99999/"]
)
def test_a_uri_with_no_web_origin_has_none(uri: str) -> None:
    assert origin_of(uri) is None


def _client(*, public: bool, uris: list[str]) -> OAuthClient:
    return OAuthClient(client_id="c1", name="App", is_public=public, redirect_uris=uris)


def test_a_request_without_an_origin_is_not_cors() -> None:
    check_origin(_client(public=False, uris=[]), None)


def test_a_confidential_client_serves_no_origin_but_at_userinfo() -> None:
    client = _client(public=False, uris=["https://app.example.com/cb"])

    check_origin(client, "https://app.example.com", bearer=True)
    with pytest.raises(OriginNotAllowed):
        check_origin(client, "https://app.example.com")


def test_an_origin_that_could_break_the_error_text_is_not_shown() -> None:
    with pytest.raises(OriginNotAllowed) as refused:
        check_origin(_client(public=True, uris=[]), 'https://x"\\y', bearer=True)

    assert '"' not in refused.value.description
    assert "\\" not in refused.value.description
