"""A local stand-in for an SMS aggregator's HTTP API, as notifications.sms's http backend speaks it.

It records every accepted message and can be told to answer the next requests with errors.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeSmsGateway:
    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.messages: list[dict] = []
        self.requests = 0
        self.scripted: deque[tuple[int, dict[str, str]]] = deque()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length)
                with gateway._lock:
                    gateway.requests += 1
                    scripted = gateway.scripted.popleft() if gateway.scripted else None
                if scripted:
                    status, headers = scripted
                    return self._answer(status, {"error": "scripted"}, headers)
                if self.headers.get("Authorization") != f"Bearer {gateway.token}":
                    return self._answer(401, {"error": "bad token"})
                try:
                    message = json.loads(payload)
                    assert message["to"].startswith("+") and message["text"]
                except (ValueError, KeyError, AssertionError):
                    return self._answer(400, {"error": "bad message"})
                with gateway._arrived:
                    gateway.messages.append(message)
                    message_id = f"msg-{len(gateway.messages)}"
                    gateway._arrived.notify_all()
                return self._answer(200, {"id": message_id})

            def _answer(self, status, body, headers=None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/messages"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeSmsGateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self.scripted.extend([(status, headers or {})] * times)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict]:
        """Block until `count` messages have arrived; return them."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.messages) >= count, timeout=timeout):
                raise TimeoutError(f"{len(self.messages)} of {count} SMS arrived within {timeout}s")
            return list(self.messages)
