"""identity.web.authorization's answers to a client: the registered URI kept as written (RFC
6749 §3.1.2: its query is retained), our parameters after it."""

from __future__ import annotations

import pytest

from identity.web.authorization import with_fragment, with_query


@pytest.mark.parametrize(
    ("uri", "params", "expected"),
    [
        # A logout without state adds nothing: the client gets back exactly what it registered,
        # which RFC 3986 §6.2.3 does not make equivalent to the URI without its "?".
        ("https://app.example/cb?", {"state": None}, "https://app.example/cb?"),
        ("https://app.example/cb?", {"state": "s"}, "https://app.example/cb?state=s"),
        # Already separated: no empty parameter of nobody's between the two.
        ("https://app.example/cb?a=1&", {"code": "c"}, "https://app.example/cb?a=1&code=c"),
        ("https://app.example/cb?a=1&", {"state": None}, "https://app.example/cb?a=1&"),
        ("https://app.example/cb", {"code": "c d"}, "https://app.example/cb?code=c%20d"),
        (
            "https://app.example/cb?a=1;b=%2F",
            {"code": "c", "state": None},
            "https://app.example/cb?a=1;b=%2F&code=c",
        ),
        ("com.example.app:/cb?", {"state": None}, "com.example.app:/cb?"),
        ("/account/security", {"ui_locales": None}, "/account/security"),
    ],
)
def test_with_query_keeps_the_uri_as_written_and_adds_after_it(
    uri: str, params: dict[str, str | None], expected: str
) -> None:
    assert with_query(uri, params) == expected


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        # The query is not decoded and encoded again (index.php?/oauth/callback stays a route),
        # and an empty one keeps its "?": the answer starts with the URI registered.
        (
            "https://app.example/index.php?/oauth/callback",
            "https://app.example/index.php?/oauth/callback#error=e&state=s%20t",
        ),
        (
            "https://app.example/cb?a=1;b=%2F",
            "https://app.example/cb?a=1;b=%2F#error=e&state=s%20t",
        ),
        ("https://app.example/cb?", "https://app.example/cb?#error=e&state=s%20t"),
        ("https://app.example/cb", "https://app.example/cb#error=e&state=s%20t"),
    ],
)
def test_with_fragment_keeps_the_uri_as_written_and_answers_after_it(
    uri: str, expected: str
) -> None:
    assert with_fragment(uri, {"error": "e", "state": "s t", "iss": None}) == expected
