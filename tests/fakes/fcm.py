"""A local stand-in for FCM's HTTP v1 API (`POST /v1/projects/{project}/messages:send`).

It answers as FCM does, closely enough for firebase-admin to raise its real exceptions: a message
name on success; google.rpc.Status errors with an FcmError detail (UNREGISTERED, INVALID_ARGUMENT,
QUOTA_EXCEEDED) on failure; 429 and 503 with Retry-After when told to. It checks the bearer token
and the message's shape (exactly one target, string-only data).

Besides the raw requests it keeps what each phone would show: Android replaces a notification with
the same tag and iOS one with the same apns-collapse-id, so `displayed[target]` holds one entry per
collapse id. `duplicates` counts messages accepted more than once for the same target and collapse id.

Run alone (for the benchmark): `python -m tests.fakes.fcm --port 0` prints its URL, then serves
`GET /_stats` and `POST /_reset` besides the API.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEND_PATH = re.compile(r"^/v1/projects/(?P<project>[^/]+)/messages:send$")
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_FCM_CODES = {
    404: "UNREGISTERED",
    400: "INVALID_ARGUMENT",
    429: "QUOTA_EXCEEDED",
    503: "UNAVAILABLE",
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: many workers connect at once

    def handle_error(self, request, client_address):
        # A client killed mid-request (the worker-kill test) is expected, not a server error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass
class Scripted:
    status: int
    retry_after: str | None
    target: str | None


class FakeFcmServer:
    def __init__(
        self,
        *,
        access_token: str = "fake-fcm-access-token",
        keep_bodies: bool = True,
        port: int = 0,
    ) -> None:
        self.access_token = access_token
        self.keep_bodies = keep_bodies
        self.unregistered: set[str] = set()
        self.invalid: set[str] = set()
        self.delay_seconds = 0.0
        self._scripted: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.reset()
        self.server = _Server(("127.0.0.1", port), self._handler())
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # What firebase-admin formats with the project id (its FCM_URL template).
        self.endpoint = self.base_url + "/v1/projects/{0}/messages:send"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- control -------------------------------------------------------------------------------
    def start(self) -> FakeFcmServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.accepted: list[dict] = []  # the messages FCM took, in order (bodies if kept)
            self.refused: list[tuple[int, str]] = []  # (status, target)
            self.deliveries: Counter[tuple[str, str]] = Counter()  # (target, collapse id)
            self.displayed: dict[str, dict[str, dict]] = {}
            self.first_at: float | None = None
            self.last_at: float | None = None

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: int | str | None = None,
        target: str | None = None,
    ) -> None:
        """Answer the next `times` requests (for `target`, if given) with `status`."""
        with self._lock:
            self._scripted.extend(
                [Scripted(status, None if retry_after is None else str(retry_after), target)]
                * times
            )

    def wait_for(self, predicate, timeout: float = 30.0):
        """Block until `predicate(self)` holds (checked as messages arrive)."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self), timeout=timeout):
                raise TimeoutError(
                    f"not reached within {timeout}s: {self.requests} requests, "
                    f"{len(self.accepted)} accepted"
                )

    @property
    def duplicates(self) -> int:
        with self._lock:
            return sum(n - 1 for n in self.deliveries.values() if n > 1)

    def stats(self) -> dict:
        with self._lock:
            return {
                "requests": self.requests,
                "accepted": sum(self.deliveries.values()),
                "distinct": len(self.deliveries),
                "duplicates": sum(n - 1 for n in self.deliveries.values() if n > 1),
                "refused": len(self.refused),
                "first_at": self.first_at,
                "last_at": self.last_at,
            }

    def messages_to(self, target: str) -> list[dict]:
        with self._lock:
            return [m for m in self.accepted if m.get("token", m.get("fid")) == target]

    # --- protocol ------------------------------------------------------------------------------
    def _take_scripted(self, target: str) -> Scripted | None:
        for index, scripted in enumerate(self._scripted):
            if scripted.target in (None, target):
                del self._scripted[index]
                return scripted
        return None

    def _handle_send(self, headers, payload: bytes) -> tuple[int, dict, dict]:
        if headers.get("Authorization") != f"Bearer {self.access_token}":
            return _error(401, "Request had invalid authentication credentials.")
        try:
            message = json.loads(payload)["message"]
            targets = [k for k in ("token", "fid", "topic", "condition") if k in message]
            assert len(targets) == 1, "exactly one target"
            data = message.get("data", {})
            assert all(isinstance(v, str) for v in data.values()), "data values must be strings"
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            return _error(400, f"Invalid JSON payload received. {exc}")
        target = message[targets[0]]
        with self._changed:
            self.requests += 1
            scripted = self._take_scripted(target)
            if scripted is None and target in self.unregistered:
                scripted = Scripted(404, None, target)
            elif scripted is None and target in self.invalid:
                scripted = Scripted(400, None, target)
            if scripted is not None:
                self.refused.append((scripted.status, target))
                self._changed.notify_all()
            else:
                collapse = message.get("android", {}).get("collapse_key") or data.get(
                    "notification_id", ""
                )
                self.deliveries[(target, collapse)] += 1
                self.accepted.append(message if self.keep_bodies else {"token": target})
                if self.keep_bodies:
                    tag = message.get("android", {}).get("notification", {}).get("tag") or collapse
                    self.displayed.setdefault(target, {})[tag] = message
                now = time.monotonic()
                self.first_at = self.first_at or now
                self.last_at = now
                number = sum(self.deliveries.values())
                self._changed.notify_all()
        if scripted is not None:
            extra = {"Retry-After": scripted.retry_after} if scripted.retry_after else {}
            message_text = {
                404: "Requested entity was not found.",
                400: "The registration token is not a valid FCM registration token",
            }.get(scripted.status, "The service is currently unavailable.")
            status, body, _ = _error(scripted.status, message_text)
            return status, body, extra
        return 200, {"name": f"projects/fake/messages/{number}"}, {}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as FCM and real clients use

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length)
                if self.path == "/_reset":
                    fake.reset()
                    return self._answer(200, {}, {})
                if not SEND_PATH.match(self.path):
                    return self._answer(*_error(404, "Not Found"))
                if fake.delay_seconds:
                    time.sleep(fake.delay_seconds)
                self._answer(*fake._handle_send(self.headers, payload))

            def do_GET(self):
                if self.path == "/_stats":
                    return self._answer(200, fake.stats(), {})
                return self._answer(*_error(404, "Not Found"))

            def _answer(self, status, body, headers):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _error(status: int, message: str) -> tuple[int, dict, dict]:
    error = {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")}
    if status in _FCM_CODES:
        error["details"] = [{"@type": FCM_ERROR, "errorCode": _FCM_CODES[status]}]
    return status, {"error": error}, {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--access-token", default="fake-fcm-access-token")
    args = parser.parse_args()
    fake = FakeFcmServer(access_token=args.access_token, keep_bodies=False, port=args.port)
    print(fake.base_url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        fake.server.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
