"""The reference webhook receiver: what an operator's endpoint does, on a real loopback socket.

It verifies every delivery's Standard Webhooks signature with the ``standardwebhooks`` package
(against each configured secret: during a rotation the house signs with two), records it, and
answers 2xx, or what its switches say: fail the next N deliveries with 500, always answer a
status, sleep longer than the sender's timeout, or answer slowly. Used by the tests, the
benchmark and ``make run`` (``manage.py run_webhook_receiver``).

    receiver = ReferenceWebhookReceiver(secrets=["whsec_…"]); url = receiver.start()
    receiver.fail_next(2); ... receiver.deliveries ...; receiver.stop()

Over HTTP: ``POST /_control`` ``{"failNext": 2}`` / ``{"status": 500}`` / ``{"delaySeconds": 1.5}`` /
``{"secrets": [...]}`` / ``{"reset": true}``; ``GET /_state`` the deliveries seen (the last 200).
"""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass
class Delivery:
    msg_id: str
    timestamp: str
    signature: str
    request_id: str
    body: bytes
    verified_by: list[int]  # indexes of the configured secrets whose signature verified
    answered: int  # the status this receiver answered (0: it did not answer in time)
    at: float = field(default_factory=time.time)

    @property
    def verified(self) -> bool:
        return bool(self.verified_by)

    def json(self) -> dict:
        return json.loads(self.body)


class ReferenceWebhookReceiver:
    def __init__(self, *, secrets: list[str] | None = None, host: str = "127.0.0.1", port: int = 0, keep: int | None = None):
        self.secrets = list(secrets or [])
        self.host, self.port = host, port
        self.keep = keep  # keep only the last N deliveries (a long benchmark); None: all
        self.deliveries: list[Delivery] = []
        self.count = 0
        self.unique_ids: set[str] = set()
        self._lock = threading.Lock()
        self._fail_next = 0
        self._status = 200
        self._delay = 0.0
        self._server: ThreadingHTTPServer | None = None

    # --- switches ---------------------------------------------------------------------------
    def fail_next(self, count: int, status: int = 500) -> None:
        with self._lock:
            self._fail_next, self._fail_status = count, status

    def answer(self, status: int) -> None:
        """Answer every delivery with ``status`` (200 again to recover)."""
        with self._lock:
            self._status = status

    def delay(self, seconds: float) -> None:
        """Answer after ``seconds`` (longer than the sender's timeout: a timeout)."""
        with self._lock:
            self._delay = seconds

    def reset(self) -> None:
        with self._lock:
            self.deliveries.clear()
            self.unique_ids.clear()
            self.count, self._fail_next, self._status, self._delay = 0, 0, 200, 0.0

    # --- the server -------------------------------------------------------------------------
    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                return

            def _reply(self, status: int, body: bytes = b"{}") -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802 - http.server's name
                if self.path.startswith("/_state"):
                    self._reply(200, json.dumps(receiver.state()).encode())
                else:
                    self._reply(404)

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/_control"):
                    receiver.control(json.loads(body or b"{}"))
                    self._reply(200, json.dumps(receiver.state(limit=0)).encode())
                    return
                status, delay = receiver._receive(dict(self.headers.items()), body)
                if delay:
                    time.sleep(delay)
                try:
                    self._reply(status, b'{"ok":true}' if status < 300 else b'{"ok":false}')
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self._server.request_queue_size = 128
        threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/webhook"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- what it does with a delivery -------------------------------------------------------
    def _receive(self, headers: dict, body: bytes) -> tuple[int, float]:
        lowered = {k.lower(): v for k, v in headers.items()}
        verified_by = []
        for index, secret in enumerate(self.secrets):
            try:
                Webhook(secret).verify(body, lowered, json_parse=False)
                verified_by.append(index)
            except WebhookVerificationError:
                pass
        with self._lock:
            if self._fail_next > 0:
                self._fail_next -= 1
                status = self._fail_status
            elif not verified_by:
                status = 401
            else:
                status = self._status
            delay = self._delay
            self.count += 1
            msg_id = lowered.get("webhook-id", "")
            if 200 <= status < 300:
                self.unique_ids.add(msg_id)
            self.deliveries.append(
                Delivery(
                    msg_id=msg_id,
                    timestamp=lowered.get("webhook-timestamp", ""),
                    signature=lowered.get("webhook-signature", ""),
                    request_id=lowered.get("x-request-id", ""),
                    body=body,
                    verified_by=verified_by,
                    answered=status,
                )
            )
            if self.keep is not None and len(self.deliveries) > self.keep:
                del self.deliveries[: len(self.deliveries) - self.keep]
        return status, delay

    def control(self, command: dict) -> None:
        if command.get("reset"):
            self.reset()
        if "secrets" in command:
            self.secrets = list(command["secrets"])
        if "failNext" in command:
            self.fail_next(int(command["failNext"]), int(command.get("failStatus", 500)))
        if "status" in command:
            self.answer(int(command["status"]))
        if "delaySeconds" in command:
            self.delay(float(command["delaySeconds"]))

    def state(self, limit: int = 200) -> dict:
        with self._lock:
            recent = self.deliveries[-limit:] if limit else []
            return {
                "received": self.count,
                "uniqueDelivered": len(self.unique_ids),
                "deliveries": [
                    {
                        "webhookId": d.msg_id,
                        "verified": d.verified,
                        "answered": d.answered,
                        "requestId": d.request_id,
                        "body": json.loads(d.body) if d.body else None,
                    }
                    for d in recent
                ],
            }

    def delivered(self) -> list[Delivery]:
        """The deliveries it acknowledged (2xx), in arrival order."""
        with self._lock:
            return [d for d in self.deliveries if 200 <= d.answered < 300]
