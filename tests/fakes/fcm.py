"""A local stand-in for FCM's HTTP v1 API (`POST /v1/projects/{project}/messages:send`).

It answers as FCM does, closely enough for firebase-admin to raise its real exceptions: a message
name on success; google.rpc.Status errors with an FcmError detail (UNREGISTERED, INVALID_ARGUMENT,
QUOTA_EXCEEDED) on failure; 429 and 503 with Retry-After when told to. It checks the bearer token
and the message's shape (exactly one target, string-only data).

Besides the raw requests it keeps what each phone would show: Android replaces a notification with
the same tag and iOS one with the same apns-collapse-id, so `displayed[target]` holds one entry per
collapse id. `duplicates` counts messages accepted more than once for the same target and collapse id.

It speaks keep-alive HTTP/1.1 over plain http; with `tls=True` it serves https with a certificate
of its own (`ca_file`) and offers HTTP/2 by ALPN as FCM does, answering the streams of one
connection side by side. `protocols` counts the connections made with each.

Run alone (for the benchmark): `python -m tests.fakes.fcm --port 0 [--delay-ms 40]` prints its URL,
then serves `GET /_stats` and `POST /_reset` besides the API.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import heapq
import ipaddress
import json
import re
import select
import shutil
import signal
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h2.config
import h2.connection
import h2.events

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
    tls: ssl.SSLContext | None = None

    def get_request(self):
        sock, address = super().get_request()
        if self.tls is not None:
            # The handshake happens in the connection's own thread (Handler.setup).
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request, client_address):
        # A client killed mid-request (the worker-kill test) is expected, not a server error.
        if isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            return
        super().handle_error(request, client_address)


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that signs itself: the client trusts it as its only CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake FCM")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


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
        tls: bool = False,
    ) -> None:
        self.access_token = access_token
        self.keep_bodies = keep_bodies
        self.unregistered: set[str] = set()
        self.invalid: set[str] = set()
        # How long FCM takes to answer each request.
        self.delay_seconds = 0.0
        self._scripted: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.reset()
        self.server = _Server(("127.0.0.1", port), self._handler())
        self._directory: Path | None = None
        self.ca_file: str | None = None
        if tls:
            self._directory = Path(tempfile.mkdtemp(prefix="fake-fcm-"))
            cert_file, key_file = _self_signed_certificate(self._directory)
            self.ca_file = str(cert_file)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert_file, key_file)
            context.set_alpn_protocols(["h2", "http/1.1"])
            self.server.tls = context
        scheme = "https" if tls else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
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
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.accepted: list[dict] = []  # the messages FCM took, in order (bodies if kept)
            self.refused: list[tuple[int, str]] = []  # (status, target)
            self.deliveries: Counter[tuple[str, str]] = Counter()  # (target, collapse id)
            self.displayed: dict[str, dict[str, dict]] = {}
            self.first_at: float | None = None
            self.last_at: float | None = None
            self.in_flight = 0  # send requests being answered now
            self.max_in_flight = 0
            self.protocols: Counter[str] = Counter()  # connections by protocol
            self._accepted_count = 0  # sum(deliveries.values())

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
            return self._accepted_count - len(self.deliveries)

    def stats(self) -> dict:
        with self._lock:
            return {
                "requests": self.requests,
                # Counted as they come: the benchmark asks every second, over 150,000 messages.
                "accepted": self._accepted_count,
                "distinct": len(self.deliveries),
                "duplicates": self._accepted_count - len(self.deliveries),
                "refused": len(self.refused),
                "first_at": self.first_at,
                "last_at": self.last_at,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
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

    def _answer_send(self, authorization: str | None, payload: bytes) -> tuple[int, dict, dict]:
        """Answer one send request after delay_seconds, counting it in flight meanwhile."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_seconds:
                time.sleep(self.delay_seconds)
            return self._handle_send(authorization, payload)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _handle_send(self, authorization: str | None, payload: bytes) -> tuple[int, dict, dict]:
        if authorization != f"Bearer {self.access_token}":
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
                self._accepted_count += 1
                self.accepted.append(message if self.keep_bodies else {"token": target})
                if self.keep_bodies:
                    tag = message.get("android", {}).get("notification", {}).get("tag") or collapse
                    self.displayed.setdefault(target, {})[tag] = message
                now = time.monotonic()
                self.first_at = self.first_at or now
                self.last_at = now
                number = self._accepted_count
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

    def _serve_h2(self, sock: ssl.SSLSocket) -> None:
        """One HTTP/2 connection. Its streams are answered side by side, each delay_seconds after
        it arrived, from this one thread (an SSL socket is not for two threads at once)."""
        connection = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        connection.initiate_connection()
        sock.sendall(connection.data_to_send())
        started: dict[int, tuple[dict, bytearray]] = {}
        due: list[tuple[float, int, dict, bytes]] = []  # a heap: (when, stream, headers, body)
        in_flight_here = 0
        try:
            while True:
                wait = max(0.0, due[0][0] - time.monotonic()) if due else None
                if sock.pending() or select.select([sock], [], [], wait)[0]:
                    data = sock.recv(65536)
                    if not data:
                        break
                    for event in connection.receive_data(data):
                        if isinstance(event, h2.events.RequestReceived):
                            started[event.stream_id] = (dict(event.headers), bytearray())
                        elif isinstance(event, h2.events.DataReceived):
                            started[event.stream_id][1].extend(event.data)
                            connection.acknowledge_received_data(
                                event.flow_controlled_length, event.stream_id
                            )
                        elif isinstance(event, h2.events.StreamEnded):
                            headers, body = started.pop(event.stream_id)
                            with self._lock:
                                self.in_flight += 1
                                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                            in_flight_here += 1
                            heapq.heappush(
                                due,
                                (
                                    time.monotonic() + self.delay_seconds,
                                    event.stream_id,
                                    headers,
                                    bytes(body),
                                ),
                            )
                        elif isinstance(event, h2.events.ConnectionTerminated):
                            due.clear()
                while due and due[0][0] <= time.monotonic():
                    _, stream_id, headers, body = heapq.heappop(due)
                    if SEND_PATH.match(headers.get(":path", "")):
                        status, payload, extra = self._handle_send(
                            headers.get("authorization"), body
                        )
                    else:
                        status, payload, extra = _error(404, "Not Found")
                    with self._lock:
                        self.in_flight -= 1
                    in_flight_here -= 1
                    data = json.dumps(payload).encode()
                    connection.send_headers(
                        stream_id,
                        [
                            (":status", str(status)),
                            ("content-type", "application/json; charset=UTF-8"),
                            ("content-length", str(len(data))),
                            *((key.lower(), value) for key, value in extra.items()),
                        ],
                    )
                    connection.send_data(stream_id, data, end_stream=True)
                sock.sendall(connection.data_to_send())
        finally:
            with self._lock:
                self.in_flight -= in_flight_here

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as FCM and real clients use
            # The status line and headers go out in one write and the body in another. With Nagle's
            # algorithm on, the body then waits for the client's delayed ACK of the headers (40 ms
            # on Linux): every request took ~43 ms, and that, not the work, set the fake's speed.
            # The latency a benchmark wants is set on purpose instead (delay_seconds).
            disable_nagle_algorithm = True

            def setup(self):
                if isinstance(self.request, ssl.SSLSocket):
                    self.request.do_handshake()
                super().setup()

            def handle(self):
                protocol = "http/1.1"
                if isinstance(self.request, ssl.SSLSocket):
                    protocol = self.request.selected_alpn_protocol() or protocol
                with fake._lock:
                    fake.protocols[protocol] += 1
                if protocol == "h2":
                    return fake._serve_h2(self.request)
                return super().handle()

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
                self._answer(*fake._answer_send(self.headers.get("Authorization"), payload))

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
    parser.add_argument("--delay-ms", type=float, default=0, help="time to answer each request")
    parser.add_argument("--tls", action="store_true", help="https, offering HTTP/2 (prints the CA)")
    args = parser.parse_args()
    fake = FakeFcmServer(
        access_token=args.access_token, keep_bodies=False, port=args.port, tls=args.tls
    )
    fake.delay_seconds = args.delay_ms / 1000
    print(fake.base_url, flush=True)
    if args.tls:
        print(fake.ca_file, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # how the benchmark stops it
    try:
        with contextlib.suppress(KeyboardInterrupt):
            fake.server.serve_forever()
    finally:
        fake.server.server_close()
        if fake.ca_file:
            shutil.rmtree(Path(fake.ca_file).parent, ignore_errors=True)


if __name__ == "__main__":
    main()
