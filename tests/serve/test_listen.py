"""Where ``ferlab serve`` listens (``ferlab.serve.listen``): bound before anything is said, and a
URL a browser on this machine opens."""

from __future__ import annotations

import socket

import pytest

from ferlab.errors import FerlabError
from ferlab.serve.listen import open_listener, page_url, reachable_from_elsewhere


def test_the_printed_url_opens_in_a_browser_here():
    assert page_url("127.0.0.1", 8000) == "http://127.0.0.1:8000/"
    assert page_url("localhost", 8000) == "http://localhost:8000/"
    assert page_url("::1", 8000) == "http://[::1]:8000/"  # was http://::1:8000/
    assert page_url("0.0.0.0", 8000) == "http://127.0.0.1:8000/"  # every network: this machine by its own address
    assert page_url("::", 8000) == "http://[::1]:8000/"
    assert page_url("fe80::1", 8000) == "http://[fe80::1]:8000/"


def test_only_the_loopback_addresses_are_private():
    assert not any(reachable_from_elsewhere(host) for host in ("127.0.0.1", "localhost", "::1"))
    assert all(reachable_from_elsewhere(host) for host in ("0.0.0.0", "::", "192.168.1.4"))


def test_an_empty_host_is_refused_rather_than_bound_to_every_network():
    with pytest.raises(FerlabError, match=r"^--host '': name an address \(127.0.0.1: this machine only; 0.0.0.0: every network\)$"):
        open_listener("", 8000)
    with pytest.raises(FerlabError, match=r"^--host '': "):
        open_listener("  ", 8000)


def test_a_listener_is_bound_and_a_taken_port_or_unknown_host_is_one_line():
    listener = open_listener("127.0.0.1", 0)
    with listener:
        host, port = listener.getsockname()
        assert host == "127.0.0.1" and port > 0
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            with pytest.raises(FerlabError, match=rf"^cannot serve on 127.0.0.1:{taken.getsockname()[1]} \(Address already in use\)$"):
                open_listener("127.0.0.1", taken.getsockname()[1])
    with pytest.raises(FerlabError, match=r"^cannot serve on 8.8.8.8:0 \(Cannot assign requested address\)$"):
        open_listener("8.8.8.8", 0)
    with pytest.raises(FerlabError, match=r"^cannot serve on x{300}:0 \("):  # an IDNA label over 63 characters
        open_listener("x" * 300, 0)
