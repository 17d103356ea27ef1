"""identity.web.client_ip: X-Forwarded-For believed only as far as our own proxies wrote it."""

from __future__ import annotations

import ipaddress

import pytest

from identity.web.client_ip import client_ip, rate_subject

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
        # Entries with the client's port (Azure Application Gateway writes these): the address.
        ("10.0.0.2", ["198.51.100.1:5678"], "198.51.100.1"),
        ("10.0.0.2", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("10.0.0.2", ["[2001:db8::1]"], "2001:db8::1"),
        ("10.0.0.2", ["[::ffff:198.51.100.1]:80"], "198.51.100.1"),
        ("10.0.0.2", [" 198.51.100.1:5678 "], "198.51.100.1"),
        # Our own proxies with ports are skipped like the ones without.
        ("10.0.0.2", ["6.6.6.6, 198.51.100.1:5678, 10.0.0.3:443"], "198.51.100.1"),
        ("fd00::1", ["[2001:db8::7]:5678, [fd00::2]:443"], "2001:db8::7"),
        # Unbracketed, the last group is part of the IPv6 address, not a port.
        ("10.0.0.2", ["2001:db8::1:443"], "2001:db8::1:443"),
    ],
)
def test_client_ip(peer: str, headers: list[str], expected: str) -> None:
    assert client_ip(peer, headers, PROXIES) == expected


def test_no_trusted_proxies_means_the_peer_always() -> None:
    assert client_ip("10.0.0.2", ["198.51.100.1"], ()) == "10.0.0.2"


def test_unparseable_or_missing_peer_is_kept_as_is() -> None:
    assert client_ip("testclient", ["198.51.100.1"], PROXIES) == "testclient"
    assert client_ip(None, [], PROXIES) == "unknown"


@pytest.mark.parametrize(
    "entry",
    [
        "198.51.100.1:",
        "198.51.100.1:http",
        "198.51.100.1:65536",
        "198.51.100.1:123456",
        "198.51.100.1:80:80",
        "[198.51.100.1]:80",
        "[2001:db8::1]:",
        "[2001:db8::1]x",
        "[2001:db8::1",
        "2001:db8::1]:443",
        "[]:443",
        "host.example:443",
    ],
)
def test_an_entry_with_a_malformed_port_stops_the_walk_like_any_garbage(entry: str) -> None:
    assert client_ip("10.0.0.2", [f"198.51.100.1, {entry}, 10.0.0.3"], PROXIES) == "10.0.0.3"


@pytest.mark.parametrize(
    ("address", "subject"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:0:1:ffff:ffff:ffff:ffff", "2001:db8:0:1::/64"),
        ("2001:db8:0:1::1", "2001:db8:0:1::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        # 6to4 hands one IPv4 address a /48 of 65,536 /64s; Teredo puts every client of one
        # server in one /64. Each is counted by the IPv4 address it embeds.
        ("2002:c633:6407:1::1", "198.51.100.7"),
        ("2002:c633:6407:2::1", "198.51.100.7"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),
        # Behind a translator (SIIT-DC, RFC 7755) every IPv4 client shares 64:ff9b::/64, where
        # one guesser would lock all of them out: counted by the IPv4 address, as before /64s.
        ("64:ff9b::c633:6407", "198.51.100.7"),
        ("64:ff9b::c000:22d", "192.0.2.45"),
        ("unknown", "unknown"),
    ],
)
def test_a_rate_limit_counts_an_ipv6_client_by_its_64(address: str, subject: str) -> None:
    assert rate_subject(address) == subject
