"""The firebase-admin app and the connection pool that pushes go through: one of each per process.

firebase-admin's async path (`messaging.send_each_async`) runs on an asyncio event loop. The loop
runs in a thread of its own, started with the first push, so callers stay synchronous and the
pool outlives each chunk: `send_each` hands a list to the loop and returns a future at once.

The app is rebuilt when the settings change (tests point it at fake servers). A forked child
(Celery's prefork pool) starts afresh: the parent's loop thread does not exist in it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from itertools import count
from urllib.parse import urlsplit

import firebase_admin
import google.auth.transport.requests
import google.oauth2.credentials
import httpx
from django.conf import settings
from firebase_admin import _http_client, credentials, messaging

# firebase-admin refuses a larger list in one send_each_async call.
SEND_EACH_LIMIT = 500

_lock = threading.Lock()
_state: dict[str, object] = {}
_app_numbers = count(1)


def _forget_after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    _state.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def send_each(messages: list[messaging.Message]) -> concurrent.futures.Future:
    """Start sending with send_each_async (500 a call); the future gives one response per message.

    It raises what send_each_async raises for the whole list: ValueError when firebase-admin
    refuses to encode one of the messages (then nothing was sent), a FirebaseError otherwise.
    """
    app, loop = _sender()
    return asyncio.run_coroutine_threadsafe(_send_each(app, messages), loop)


async def _send_each(
    app: firebase_admin.App, messages: list[messaging.Message]
) -> list[messaging.SendResponse]:
    lists = [messages[i : i + SEND_EACH_LIMIT] for i in range(0, len(messages), SEND_EACH_LIMIT)]
    answers = await asyncio.gather(
        *(messaging.send_each_async(part, dry_run=False, app=app) for part in lists)
    )
    return [response for answer in answers for response in answer.responses]


def _config() -> tuple:
    return (
        settings.FIREBASE_CREDENTIALS_FILE,
        settings.FCM_ACCESS_TOKEN,
        settings.FCM_ENDPOINT,
        settings.FCM_PROJECT_ID,
        settings.FCM_MAX_CONCURRENCY,
        settings.FCM_TIMEOUT_SECONDS,
    )


def _sender() -> tuple[firebase_admin.App, asyncio.AbstractEventLoop]:
    config = _config()
    with _lock:
        loop = _state.get("loop")
        if loop is None:
            loop = _state["loop"] = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="fcm-send", daemon=True).start()
        if _state.get("config") != config:
            old = _state.get("app")
            if old is not None:
                _close_app(old, loop)  # type: ignore[arg-type]
            _state["app"] = _build_app(loop)  # type: ignore[arg-type]
            _state["config"] = config
        return _state["app"], loop  # type: ignore[return-value]


def _run(coroutine, loop: asyncio.AbstractEventLoop):
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result()


def _build_app(loop: asyncio.AbstractEventLoop) -> firebase_admin.App:
    options: dict[str, object] = {"httpTimeout": settings.FCM_TIMEOUT_SECONDS}
    if settings.FCM_PROJECT_ID:
        options["projectId"] = settings.FCM_PROJECT_ID
    if settings.FIREBASE_CREDENTIALS_FILE:
        credential = credentials.Certificate(settings.FIREBASE_CREDENTIALS_FILE)
    else:
        # A fixed bearer token, never refreshed: for a stand-in server only.
        credential = google.oauth2.credentials.Credentials(token=settings.FCM_ACCESS_TOKEN)
        options.setdefault("projectId", "smartmeter-local")
    app = firebase_admin.initialize_app(
        credential, options, name=f"smartmeter-push-{next(_app_numbers)}"
    )
    endpoint = settings.FCM_ENDPOINT
    service_class = messaging._MessagingService
    default_url = service_class.FCM_URL
    if endpoint:
        # firebase-admin has no option for the endpoint; the service reads this class attribute
        # once, when it is built (under our lock), so set it for that moment only.
        service_class.FCM_URL = endpoint
    try:
        service = messaging._get_messaging_service(app)
    finally:
        service_class.FCM_URL = default_url
    # Nor has it one for the async path's connection pool: swap the httpx client its wrapper
    # holds for one with our policy, built on our loop (which owns its connections).
    wrapper = service._async_client
    wrapper._timeout = _timeout()  # passed with each request, overriding the client's
    http2 = urlsplit(service._fcm_url).scheme == "https"
    wrapper._async_client = _run(_pool_client(service._credential, http2=http2), loop)
    return app


def _close_app(app: firebase_admin.App, loop: asyncio.AbstractEventLoop) -> None:
    # Close the pool on the loop that owns it; firebase-admin's own close (asyncio.run on a new
    # loop) then finds the client closed and does nothing.
    _run(messaging._get_messaging_service(app)._async_client.aclose(), loop)
    firebase_admin.delete_app(app)


def _timeout() -> httpx.Timeout:
    # No pool timeout: a request waits its turn for as long as the requests before it take (the
    # caller sends a few times FCM_MAX_CONCURRENCY at once); once sent, it has its own limits.
    return httpx.Timeout(settings.FCM_TIMEOUT_SECONDS, pool=None)


async def _pool_client(credential, *, http2: bool) -> httpx.AsyncClient:
    connections = _Connections(size=max(settings.FCM_MAX_CONCURRENCY, 1), http2=http2)
    return httpx.AsyncClient(
        timeout=_timeout(),
        headers=_http_client.METRICS_HEADERS,
        auth=_CredentialFlow(credential),
        mounts={"http://": connections, "https://": connections},
    )


class _Connections(httpx.AsyncBaseTransport):
    """At most FCM_MAX_CONCURRENCY requests in flight, over one pool of connections.

    Over TLS (FCM itself) httpx negotiates HTTP/2 and carries every request as a stream of one
    connection. Over plain http (a local stand-in) nothing is negotiated: HTTP/1.1, one request per
    connection at a time. There each connection gets a transport of its own, lent to one request at
    a time, because httpcore's pool re-checks every connection (one system call each, and a scan
    of all of them for each idle one) whenever it places or frees a request: at 32 connections
    that cost more than the request. Requests beyond the limit wait here, in order, rather than in
    httpcore's queue, which is scanned the same way.

    Only a 500 is retried in place, twice. firebase-admin's own transport also retries a 503 four
    times, sleeping inside the request; here 429 and 503 come back at once, and the alert is
    rescheduled after Retry-After. Connection and read errors are not retried in place: a POST
    whose answer was lost may have been taken by FCM.
    """

    RETRIES_OF_500 = 2

    def __init__(self, *, size: int, http2: bool) -> None:
        self._slots = asyncio.Semaphore(size)
        self._shared = http2
        # Only a TLS endpoint uses a TLS context; one for all, rather than one per connection.
        verify = httpx.create_ssl_context()
        self._transports = [
            httpx.AsyncHTTPTransport(
                http2=http2,
                verify=verify,
                limits=httpx.Limits(max_connections=width, max_keepalive_connections=width),
            )
            for width in ([size] if http2 else [1] * size)
        ]
        self._idle = list(self._transports)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        async with self._slots:
            transport = self._transports[0] if self._shared else self._idle.pop()
            try:
                for attempt in range(self.RETRIES_OF_500 + 1):
                    if attempt:
                        await asyncio.sleep(0.5 * 2 ** (attempt - 1))
                    response = await transport.handle_async_request(request)
                    # The connection is free once the answer is read; FCM's answers are small.
                    await response.aread()
                    if response.status_code != 500:
                        break
            finally:
                if not self._shared:
                    self._idle.append(transport)
        return response

    async def aclose(self) -> None:
        for transport in self._transports:
            await transport.aclose()


class _CredentialFlow(_http_client.GoogleAuthCredentialFlow):
    """firebase-admin's credential flow (refresh the token and try again on a 401), with one
    google-auth transport for every request: its own builds a requests.Session per request, in
    case the token needs a refresh, and that was a fifth of the CPU a push cost."""

    def __init__(self, credential) -> None:
        super().__init__(credential)
        self._auth_request = google.auth.transport.requests.Request()

    def auth_flow(self, request: httpx.Request):
        headers = request.headers.copy()
        for attempt in range(self._max_refresh_attempts + 1):
            request.headers = headers.copy()
            self.apply_auth_headers(request, self._auth_request)
            response = yield request
            if (
                response.status_code not in self._refresh_status_codes
                or attempt == self._max_refresh_attempts
            ):
                return
            self._credential.refresh(self._auth_request)
