"""A stand-in for a utility head-end's command API on 127.0.0.1, as billing.headend's http
backend speaks it: the relay tests drive the real sending code against it."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.utils import timezone


class FakeHeadEnd:
    """A head-end's command API on 127.0.0.1, as billing.headend's http backend speaks it.

    It records every command it accepts with the time it arrived (`at`, the test's pinned clock)
    and the time it answered (`done_at`). `fail_next` makes the next requests answer an error
    status; `during` runs while a command is being carried out, in the server's thread (the clock
    moving on, a payment arriving meanwhile).
    """

    def __init__(self, token: str = "head-end-token") -> None:
        self.token = token
        self.received: list[dict] = []
        self.refused: list[dict] = []
        self.scripted: deque[int] = deque()
        self.during: Callable[[dict], None] | None = None
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                message = json.loads(self.rfile.read(length))
                message["at"] = timezone.now()
                with fake._lock:
                    status = fake.scripted.popleft() if fake.scripted else None
                if status is None and self.headers.get("Authorization") != f"Bearer {fake.token}":
                    status = 401
                if status is not None:
                    fake.refused.append({**message, "status": status})
                    return self._answer(status, {"error": "scripted"})
                if fake.during is not None:
                    fake.during(message)
                message["done_at"] = timezone.now()
                fake.received.append(message)
                return self._answer(200, {"accepted": message["reference"]})

            def _answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/commands"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeHeadEnd:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, status: int, times: int = 1) -> None:
        with self._lock:
            self.scripted.extend([status] * times)

    def commands(self, command: str | None = None) -> list[dict]:
        return [m for m in self.received if command is None or m["command"] == command]


def head_end_started(settings) -> FakeHeadEnd:
    """A FakeHeadEnd, with the settings pointing billing.headend at it. Stop it after the test."""
    fake = FakeHeadEnd().start()
    settings.HEADEND_BACKEND = "http"
    settings.HEADEND_URL = fake.url
    settings.HEADEND_TOKEN = fake.token
    return fake
