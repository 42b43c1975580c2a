"""Fetching image URLs from imported datasets, safely.

Dataset rows are untrusted: a URL may point at this machine or the local network (cloud
metadata services, admin consoles). Every host is resolved and *every* address it resolves to
must be a public one; the connection then goes to that vetted address (so a second DNS answer
cannot swap in a private one), redirects are re-checked hop by hop, and the body is capped.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from annotate.errors import FetchRefused


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 20 * 2**20  # refuse bodies larger than this (20 MB)
    timeout_s: float = 15.0  # per connect and per read
    max_redirects: int = 3
    # Fetch from private and loopback addresses too: only for an intranet image server the
    # operator trusts (`serve --fetch-private-hosts`); never on a public Space.
    allow_private: bool = False


def fetch_bytes(url: str, limits: FetchLimits = FetchLimits()) -> bytes:
    """GET `url` and return the body, or raise `FetchRefused` saying why not."""
    for _ in range(limits.max_redirects + 1):
        status, location, body = _get_once(url, limits)
        if status in (301, 302, 303, 307, 308) and location:
            url = urljoin(url, location)
            continue
        if status != 200:
            raise FetchRefused(f"{_short(url)} answered HTTP {status}")
        return body
    raise FetchRefused(f"{_short(url)} redirects more than {limits.max_redirects} times")


def vetted_address(host: str, port: int, allow_private: bool = False) -> str:
    """One address of `host`, after checking that every address it resolves to is public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchRefused(f"cannot resolve {host!r}: {exc}") from exc
    addresses = [info[4][0] for info in infos]
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone index
        if not allow_private and not _is_public(ip):
            raise FetchRefused(f"refusing to fetch from {host!r}: it resolves to non-public address {ip}")
    if not addresses:
        raise FetchRefused(f"cannot resolve {host!r}")
    return addresses[0]


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(ip, "ipv4_mapped", None) or getattr(ip, "sixtofour", None)
    if mapped is not None and not _is_public(mapped):
        return False
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
                or ip.is_multicast or ip.is_unspecified) and ip.is_global


def _get_once(url: str, limits: FetchLimits) -> tuple[int, str | None, bytes]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchRefused(f"only http(s) image URLs can be fetched, not {_short(url)}")
    if parts.username or parts.password:
        raise FetchRefused(f"refusing a URL with credentials in it: {_short(url)}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = vetted_address(parts.hostname, port, limits.allow_private)
    conn_class = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    conn = conn_class(parts.hostname, port, timeout=limits.timeout_s, address=address)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("GET", path, headers={"User-Agent": "humanvlm-studio", "Accept": "image/*"})
        response = conn.getresponse()
        if response.status != 200:
            return response.status, response.getheader("Location"), b""
        return 200, None, _read_capped(response, url, limits.max_bytes)
    except (OSError, http.client.HTTPException) as exc:
        raise FetchRefused(f"could not fetch {_short(url)}: {exc}") from exc
    finally:
        conn.close()


def _read_capped(response: http.client.HTTPResponse, url: str, max_bytes: int) -> bytes:
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchRefused(f"{_short(url)} is larger than the {max_bytes // 2**20} MB limit")
    body = response.read(max_bytes + 1)  # +1: tells "at the limit" from "over it"
    if len(body) > max_bytes:
        raise FetchRefused(f"{_short(url)} is larger than the {max_bytes // 2**20} MB limit")
    return body


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the vetted address while sending the original Host header."""

    def __init__(self, host: str, port: int, *, timeout: float, address: str):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to the vetted address, with the certificate checked against the URL's host name."""

    def __init__(self, host: str, port: int, *, timeout: float, address: str):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _short(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."


def photo_for_review(store, item, limits: FetchLimits = FetchLimits()):
    """(item, note): the item with its photo stored locally, fetching a URL-only item's photo
    (safely, as above) so the reviewer sees what they approve. When that fails the item comes
    back as it was, with the reason in `note`; approving it stays refused."""
    if item is None or item.image.path is not None or not item.image.url:
        return item, ""
    try:
        return store.attach_photo(item.id, fetch_bytes(item.image.url, limits)), ""
    except (FetchRefused, ValueError) as exc:  # ValueError: the image gate (not an image, too big)
        return item, f"the photo could not be fetched ({exc}): reject or skip this item"
