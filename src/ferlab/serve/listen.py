"""Where ``ferlab serve`` listens. The socket is bound before anything is said, so a port in use
or an address this machine does not have is one line and exit 2, never a "serving" line and then
a crash; the URL printed is one a browser on this machine opens."""

from __future__ import annotations

import socket

from ferlab.errors import FerlabError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")  # addresses only this machine reaches
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # every network; this machine opens them by its own address


def open_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (IPv6 where the host is an IPv6 literal)."""
    if not host.strip():  # '' binds every network without a word, and printed http://:8765/
        raise FerlabError("--host '': name an address (127.0.0.1: this machine only; 0.0.0.0: every network)")
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except (OSError, OverflowError, UnicodeError) as error:
        listener.close()
        raise FerlabError(f"cannot serve on {host}:{port} ({getattr(error, 'strerror', None) or error})") from None
    return listener


def reachable_from_elsewhere(host: str) -> bool:
    return host not in LOCAL_HOSTS


def page_url(host: str, port: int) -> str:
    """The page's address for a browser here: a wildcard by this machine's own address, an IPv6
    literal in brackets (http://::1:8765/ opened nothing)."""
    shown = WILDCARDS.get(host, host)
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"
