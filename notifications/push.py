"""Sending pushes: the one place that talks to Firebase Cloud Messaging (HTTP v1, via firebase-admin).

One request per device, each with a notification and a data payload, Android/APNs/Web options set by
the alert's urgency (priority, time to live) and a collapse id (the alert's id) so that a message sent
again after a worker died replaces, rather than doubles, what the phone shows.

Requests go out on a bounded thread pool (FCM_MAX_CONCURRENCY). Each result is classed for the caller:
- SENT;
- REMOVE: the token is dead (UNREGISTERED, a token FCM calls invalid, another sender's token): delete it;
- RETRY: FCM is busy or down (429, 500, 503, timeouts): try again later, after Retry-After if given;
- FAILED: refused for a reason retrying will not fix (APNs auth, a payload bug): record and stop.

A 500 is retried in place a couple of times; 429 and 503 come straight back as RETRY with their
Retry-After, and the caller reschedules the alert instead of parking a thread. Without FIREBASE_CREDENTIALS_FILE (or FCM_ACCESS_TOKEN for a stand-in
server) nothing is sent: each push is written to the log and counted as sent.
"""

from __future__ import annotations

import logging
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from itertools import count
from urllib.parse import urlsplit

import firebase_admin
import google.oauth2.credentials
import requests.adapters
from django.conf import settings
from django.utils import timezone
from firebase_admin import credentials, exceptions, messaging
from urllib3.util.retry import Retry

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER_SECONDS = 3600


class Outcome(StrEnum):
    SENT = "sent"
    REMOVE = "remove"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class PushMessage:
    device_id: int
    token: str
    platform: str
    title: str
    body: str
    data: dict[str, str]
    urgent: bool
    ttl: timedelta
    # The alert's id: Android's tag and collapse key, APNs' collapse id.
    collapse_id: str
    fid: str = ""


@dataclass(frozen=True)
class PushResult:
    device_id: int
    outcome: Outcome
    retry_after: int | None = None
    detail: str = field(default="", compare=False)


# --- The firebase-admin app, rebuilt when the settings change (tests point it at fake servers) ---

_lock = threading.Lock()
_app_state: dict[str, object] = {}
_app_numbers = count(1)


def _config() -> tuple:
    return (
        settings.FIREBASE_CREDENTIALS_FILE,
        settings.FCM_ACCESS_TOKEN,
        settings.FCM_ENDPOINT,
        settings.FCM_PROJECT_ID,
        settings.FCM_MAX_CONCURRENCY,
        settings.FCM_TIMEOUT_SECONDS,
    )


def push_configured() -> bool:
    return bool(settings.FIREBASE_CREDENTIALS_FILE or settings.FCM_ACCESS_TOKEN)


def _build_app() -> firebase_admin.App:
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
    # Our own transport policy on the endpoint's connection pool (firebase-admin's default sizes the
    # pool for 100 and sleeps out any Retry-After inside the request, which would park a sending
    # thread for as long as FCM asks). Here a 429 or 503 comes back to us at once and the alert is
    # rescheduled after Retry-After, while the thread moves on to other devices. A 500 is retried
    # in place; a POST whose answer was lost (read error) is not, since FCM may have taken it.
    parts = urlsplit(service._fcm_url)
    service._client.session.mount(
        f"{parts.scheme}://{parts.netloc}",
        requests.adapters.HTTPAdapter(
            pool_connections=4,
            pool_maxsize=settings.FCM_MAX_CONCURRENCY,
            max_retries=Retry(
                connect=2,
                read=0,
                status=2,
                status_forcelist=[500],
                backoff_factor=0.5,
                allowed_methods=None,
                respect_retry_after_header=False,
                raise_on_status=False,
            ),
        ),
    )
    return app


def _app() -> firebase_admin.App:
    config = _config()
    with _lock:
        if _app_state.get("config") != config:
            old = _app_state.get("app")
            if old is not None:
                firebase_admin.delete_app(old)
            _app_state["app"] = _build_app()
            _app_state["config"] = config
        return _app_state["app"]  # type: ignore[return-value]


# --- Messages -------------------------------------------------------------------------------


def _fcm_message(message: PushMessage) -> messaging.Message:
    ttl_seconds = int(message.ttl.total_seconds())
    expires = int((timezone.now() + message.ttl).timestamp())
    common = {
        "notification": messaging.Notification(title=message.title, body=message.body),
        "data": message.data,
        "android": messaging.AndroidConfig(
            priority="high" if message.urgent else "normal",
            ttl=message.ttl,
            collapse_key=message.collapse_id,
            notification=messaging.AndroidNotification(
                tag=message.collapse_id, channel_id="urgent" if message.urgent else "alerts"
            ),
        ),
        "apns": messaging.APNSConfig(
            headers={
                "apns-priority": "10" if message.urgent else "5",
                "apns-expiration": str(expires),
                "apns-collapse-id": message.collapse_id,
                "apns-push-type": "alert",
            },
            payload=messaging.APNSPayload(
                aps=messaging.Aps(
                    sound="default" if message.urgent else None,
                    thread_id=message.data.get("type"),
                )
            ),
        ),
        "webpush": messaging.WebpushConfig(
            headers={"TTL": str(ttl_seconds), "Urgency": "high" if message.urgent else "normal"}
        ),
    }
    if message.fid:
        return messaging.Message(fid=message.fid, **common)
    return messaging.Message(token=message.token, **common)


def _build_all(messages: list[PushMessage]) -> list[messaging.Message | Exception]:
    built: list[messaging.Message | Exception] = []
    # firebase-admin 7.5 deprecated Message(token=…) for Message(fid=…), the Firebase installation
    # ID. That is another identifier, not a new name for the registration token our apps register,
    # and FCM still accepts tokens; so devices that sent their FID are addressed by it, and for the
    # others we silence this one warning, here only. (catch_warnings is process-wide for its
    # duration; messages are built before the sending threads start.)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"Message\.token is deprecated", category=DeprecationWarning
        )
        for message in messages:
            try:
                built.append(_fcm_message(message))
            except (ValueError, TypeError) as exc:
                built.append(exc)
    return built


def _retry_after(exc: exceptions.FirebaseError) -> int | None:
    response = getattr(exc, "http_response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(int(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, min(int((when - timezone.now()).total_seconds()), MAX_RETRY_AFTER_SECONDS))


_TRANSIENT = (
    messaging.QuotaExceededError,
    exceptions.ResourceExhaustedError,
    exceptions.UnavailableError,
    exceptions.InternalError,
    exceptions.DeadlineExceededError,
    exceptions.UnknownError,  # transport failures (connection refused, reset) land here
    # Our credentials, not the device: retrying lets a fixed key deliver what is waiting.
    exceptions.UnauthenticatedError,
    exceptions.PermissionDeniedError,
)


def _classify(device_id: int, exc: Exception) -> PushResult:
    if isinstance(exc, messaging.UnregisteredError | messaging.SenderIdMismatchError):
        return PushResult(device_id, Outcome.REMOVE, detail=exc.__class__.__name__)
    if isinstance(exc, exceptions.InvalidArgumentError):
        text = str(exc).lower()
        # INVALID_ARGUMENT names either the target (a bad token: drop it) or the payload (our bug:
        # keep the token, record the failure).
        if "registration token" in text or "installation id" in text:
            return PushResult(device_id, Outcome.REMOVE, detail="invalid token")
        return PushResult(device_id, Outcome.FAILED, detail=str(exc)[:200])
    if isinstance(exc, _TRANSIENT):
        return PushResult(
            device_id, Outcome.RETRY, retry_after=_retry_after(exc), detail=exc.__class__.__name__
        )
    return PushResult(device_id, Outcome.FAILED, detail=f"{exc.__class__.__name__}: {exc}"[:200])


def _send_one(app: firebase_admin.App, device_id: int, built: messaging.Message) -> PushResult:
    try:
        messaging.send(built, app=app)
    except exceptions.FirebaseError as exc:
        return _classify(device_id, exc)
    except requests.RequestException as exc:  # defensive: the library wraps these, but be sure
        return PushResult(device_id, Outcome.RETRY, detail=exc.__class__.__name__)
    return PushResult(device_id, Outcome.SENT)


def push_send(*, messages: list[PushMessage]) -> list[PushResult]:
    """Send each message to its device; return one result per message, in order."""
    if not messages:
        return []
    if not push_configured():
        for message in messages:
            logger.info(
                "Push not sent (no FCM credentials) to device %s: %s: %s",
                message.device_id,
                message.title,
                message.body,
            )
        return [PushResult(m.device_id, Outcome.SENT, detail="logged") for m in messages]

    app = _app()
    built = _build_all(messages)
    results: list[PushResult | None] = [None] * len(messages)
    jobs = []
    with ThreadPoolExecutor(max_workers=min(settings.FCM_MAX_CONCURRENCY, len(messages))) as pool:
        for index, (message, item) in enumerate(zip(messages, built, strict=True)):
            if isinstance(item, Exception):
                logger.error("Push to device %s not built: %s", message.device_id, item)
                results[index] = PushResult(message.device_id, Outcome.FAILED, detail=str(item))
            else:
                jobs.append((index, pool.submit(_send_one, app, message.device_id, item)))
        for index, job in jobs:
            results[index] = job.result()
    return results  # type: ignore[return-value]
