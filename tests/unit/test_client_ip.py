"""identity.web.client_ip: X-Forwarded-For believed only as far as our own proxies wrote it."""

from __future__ import annotations

import ipaddress

import pytest

from identity.web.client_ip import client_ip

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # An untrusted peer: its header, whatever it says, changes nothing.
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),
        ("203.0.113.5", ["10.0.0.1"], "203.0.113.5"),
        # One trusted proxy: the address it appended.
        ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        # The client's own spoofed entries sit left of the real one: never reached.
        ("10.0.0.2", ["1.2.3.4, 198.51.100.1"], "198.51.100.1"),
        # Two proxies of ours: skip both, take the right-most untrusted address.
        ("10.0.0.2", ["6.6.6.6, 198.51.100.1, 10.0.0.3"], "198.51.100.1"),
        # The header split over several lines reads as one list.
        ("10.0.0.2", ["6.6.6.6", "198.51.100.1, 10.0.0.3"], "198.51.100.1"),
        # A trusted peer without the header is itself the client.
        ("10.0.0.2", [], "10.0.0.2"),
        # Every hop trusted: the left-most one we could read.
        ("10.0.0.2", ["10.0.0.9, 10.0.0.3"], "10.0.0.9"),
        # Garbage written by someone: stop at the last address a proxy of ours vouched for.
        ("10.0.0.2", ["198.51.100.1, not-an-ip, 10.0.0.3"], "10.0.0.3"),
        ("10.0.0.2", ["unknown"], "10.0.0.2"),
        # IPv6, and IPv4 seen through an IPv6 socket.
        ("fd00::1", ["2001:db8::7"], "2001:db8::7"),
        ("::ffff:10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        ("::ffff:203.0.113.5", ["198.51.100.1"], "203.0.113.5"),
        (" 10.0.0.2", [" 198.51.100.1 "], "198.51.100.1"),
    ],
)
def test_client_ip(peer: str, headers: list[str], expected: str) -> None:
    assert client_ip(peer, headers, PROXIES) == expected


def test_no_trusted_proxies_means_the_peer_always() -> None:
    assert client_ip("10.0.0.2", ["198.51.100.1"], ()) == "10.0.0.2"


def test_unparseable_or_missing_peer_is_kept_as_is() -> None:
    assert client_ip("testclient", ["198.51.100.1"], PROXIES) == "testclient"
    assert client_ip(None, [], PROXIES) == "unknown"
