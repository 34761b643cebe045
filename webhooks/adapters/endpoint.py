"""The wire to an operator's webhook endpoint (SPEC §14): Standard Webhooks signing, the HTTP
call with its timeouts, and the guard against server-side request forgery.

    url_check(url)            at creation: https, and every address the host resolves to is public
    WebhookClient.send_many   at delivery: each host resolved and checked again, the request sent to
                              the address that was checked (TLS still verifies the host name), many
                              at once on a thread pool, no database transaction open

``WEBHOOK_ALLOW_INSECURE_URLS=1`` lifts both rules (development, tests, the benchmark).
"""

import ipaddress
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.db import connection
from standardwebhooks import Webhook

from core.errors import HouseError

log = logging.getLogger("house.webhooks")


class UrlRefused(HouseError):
    def __init__(self, reason: str):
        super().__init__(f"Webhook URL refused: {reason}", code="webhook_url_refused")
        self.reason = reason


def insecure_allowed() -> bool:
    return settings.WEBHOOK_ALLOW_INSECURE_URLS


def _address_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_reserved)


def url_parse(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL shape, else UrlRefused."""
    if not isinstance(url, str) or not (1 <= len(url) <= 2000):
        raise UrlRefused("not a URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRefused("not a URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UrlRefused("not an http(s) URL")
    if parts.username or parts.password:
        raise UrlRefused("credentials in the URL")
    if parts.scheme != "https" and not insecure_allowed():
        raise UrlRefused("https only")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def host_resolve_public(host: str, port: int) -> str:
    """The address to connect to: every address ``host`` resolves to must be public (a name that
    also resolves to a private one is refused), else UrlRefused."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise UrlRefused("host does not resolve") from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise UrlRefused("host does not resolve")
    for address in addresses:
        if not _address_public(address):
            raise UrlRefused("host resolves to a loopback, private, link-local or reserved address")
    return addresses[0]


def url_check(url: str) -> None:
    """At creation: https, and the host resolves only to public addresses (unless insecure URLs are allowed)."""
    _, host, port = url_parse(url)
    if not insecure_allowed():
        host_resolve_public(host, port)


@dataclass(frozen=True)
class Outgoing:
    """One delivery attempt: the event (its public id is the webhook-id), the body, who signs it."""

    key: object  # the caller's id for the attempt
    url: str
    msg_id: str
    body: str
    secrets: tuple[str, ...]  # the current secret, and the previous one during a rotation
    request_id: str = ""


@dataclass(frozen=True)
class Sent:
    key: object
    ok: bool
    status_code: int | None
    error: str


def signature_header(*, msg_id: str, timestamp: datetime, body: str, secrets: tuple[str, ...]) -> str:
    """``v1,<base64>``, space-separated when two secrets sign (a rotation)."""
    return " ".join(Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=body) for secret in secrets)


def signed_headers(*, msg_id: str, body: str, secrets: tuple[str, ...], now: datetime | None = None) -> dict:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature_header(msg_id=msg_id, timestamp=now, body=body, secrets=secrets),
    }


class WebhookClient:
    """Sends many attempts at once; one per process (keeps connections alive between batches)."""

    def __init__(self, *, timeout: float | None = None, concurrency: int | None = None):
        self.timeout = timeout if timeout is not None else settings.WEBHOOK_TIMEOUT_SECONDS
        self.concurrency = concurrency or settings.WEBHOOK_CONCURRENCY
        limits = httpx.Limits(max_connections=self.concurrency * 2, max_keepalive_connections=self.concurrency)
        self._http = httpx.Client(
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 3.0)),
            # Headers and body leave in separate writes: without TCP_NODELAY each request can wait for a delayed ACK.
            transport=httpx.HTTPTransport(limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]),
            follow_redirects=False,  # a redirect could lead anywhere, past the address check
            headers={"user-agent": "house-webhooks/1"},
        )
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="webhook")

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._http.close()

    def send_many(self, attempts: list[Outgoing]) -> list[Sent]:
        assert not connection.in_atomic_block, "no webhook call inside a database transaction"
        resolved: dict[tuple[str, int], str | UrlRefused] = {}
        lock = threading.Lock()

        def one(attempt: Outgoing) -> Sent:
            return self._send(attempt, resolved, lock)

        return list(self._pool.map(one, attempts))

    def _target(self, url: str, resolved: dict, lock) -> tuple[str, dict, dict]:
        """The URL to request, extra headers and extensions: pinned to the checked address."""
        scheme, host, port = url_parse(url)
        if insecure_allowed():
            return url, {}, {}
        with lock:
            address = resolved.get((host, port))
        if address is None:
            try:
                address = host_resolve_public(host, port)
            except UrlRefused as exc:
                address = exc
            with lock:
                resolved[(host, port)] = address
        if isinstance(address, UrlRefused):
            raise address
        parts = urlsplit(url)
        netloc_host = f"[{address}]" if ":" in address else address
        pinned = urlunsplit((scheme, f"{netloc_host}:{port}", parts.path or "/", parts.query, ""))
        host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        return pinned, {"host": host_header}, {"sni_hostname": host}

    def _send(self, attempt: Outgoing, resolved: dict, lock) -> Sent:
        try:
            url, extra, extensions = self._target(attempt.url, resolved, lock)
        except UrlRefused as exc:
            return Sent(attempt.key, False, None, exc.message[:500])
        headers = signed_headers(msg_id=attempt.msg_id, body=attempt.body, secrets=attempt.secrets)
        headers.update(extra)
        if attempt.request_id:
            headers["x-request-id"] = attempt.request_id
        try:
            response = self._http.post(url, content=attempt.body.encode(), headers=headers, extensions=extensions)
        except httpx.TimeoutException:
            return Sent(attempt.key, False, None, "timeout")
        except httpx.HTTPError as exc:
            return Sent(attempt.key, False, None, f"{type(exc).__name__}: {exc}"[:500])
        ok = 200 <= response.status_code < 300
        return Sent(attempt.key, ok, response.status_code, "" if ok else f"HTTP {response.status_code}")
