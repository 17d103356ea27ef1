"""Which spellings of a webhook URL are one subscription."""

from __future__ import annotations

import pytest

from identity.webhooks.url_key import digest, normalised


@pytest.mark.parametrize(
    ("written", "compared"),
    [
        ("HTTPS://Billing.Example.COM/Hooks?A=B", "https://billing.example.com/Hooks?A=B"),
        ("https://billing.example.com:443/h", "https://billing.example.com/h"),
        ("http://localhost:80/h", "http://localhost/h"),
        ("https://billing.example.com:8443/h", "https://billing.example.com:8443/h"),
        ("http://billing.example.com:443/h", "http://billing.example.com:443/h"),
        ("https://bücher.example.com/ü", "https://xn--bcher-kva.example.com/%C3%BC"),
        ("https://[2001:DB8::1]:443/h", "https://[2001:db8::1]/h"),
        ("https://billing.example.com", "https://billing.example.com/"),
        # A trailing dot names the same host (the fully-qualified spelling).
        ("https://Billing.Example.COM.:443/h", "https://billing.example.com/h"),
        ("http://LOCALHOST.:8001/h", "http://localhost:8001/h"),
        ("http://127.0.0.1.:80/h", "http://127.0.0.1/h"),
        # RFC 3986 §6.2.2.1: the case of a percent-escape's hex digits means nothing.
        ("https://billing.example.com/a%2fb?to=%2f", "https://billing.example.com/a%2Fb?to=%2F"),
        ("https://billing.example.com/%c3%bc", "https://billing.example.com/%C3%BC"),
        # RFC 3986 §6.2.2.2: an escaped unreserved character is that character.
        (
            "https://billing.example.com/%7Eada?q=%41%2d%5f%2E",
            "https://billing.example.com/~ada?q=A-_.",
        ),
        # What is not an escape is left as sent.
        ("https://billing.example.com/%zz%2", "https://billing.example.com/%zz%2"),
    ],
)
def test_a_url_is_compared_as_the_client_sends_it(written: str, compared: str) -> None:
    assert normalised(written) == compared
    assert digest(written) == digest(compared)


def test_a_url_the_client_cannot_read_is_compared_as_written() -> None:
    # Stored before a rule refused it: the migration still gives it a digest.
    assert normalised("https://[::1/h") == "https://[::1/h"
