"""Sending pushes: the one place that talks to Firebase Cloud Messaging (HTTP v1, via firebase-admin).

One message per device, each with a notification and a data payload, Android/APNs/Web options set by
the alert's urgency (priority, time to live) and a collapse id (the alert's id) so that a message sent
again after a worker died replaces, rather than doubles, what the phone shows.

Messages go out through firebase-admin's async path (`messaging.send_each_async`) on one connection
pool per worker process (`client.py`): HTTP/2 where the endpoint offers it (FCM does, over TLS), so
one connection carries every request; keep-alive HTTP/1.1 to a plain-http stand-in; at most
FCM_MAX_CONCURRENCY requests in flight either way. `push_send_start` returns while they travel, so
the caller can write down the chunk before. Each result is classed for the caller:
- SENT;
- REMOVE: the token is dead (UNREGISTERED, a token FCM calls invalid, another sender's token): delete it;
- RETRY: FCM is busy or down (429, 500, 503, timeouts, no connection): try again later, after
  Retry-After if given;
- FAILED: refused for a reason retrying will not fix (APNs auth, a payload bug): record and stop;
- NOT_CONFIGURED: nothing was sent because this deployment has no FCM credentials.

A 500 is retried in place a couple of times; 429 and 503 come straight back as RETRY with their
Retry-After, and the caller reschedules the alert instead of waiting in the request. Without
FIREBASE_CREDENTIALS_FILE (or FCM_ACCESS_TOKEN for a stand-in server) nothing is sent: each push is
written to the log and comes back NOT_CONFIGURED, never SENT (staff read the state to answer "did
the consumer get it?").
"""

from __future__ import annotations

import concurrent.futures
import logging
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

from django.conf import settings
from django.utils import timezone
from firebase_admin import exceptions, messaging

from notifications.push import client

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER_SECONDS = 3600


class Outcome(StrEnum):
    SENT = "sent"
    REMOVE = "remove"
    RETRY = "retry"
    FAILED = "failed"
    NOT_CONFIGURED = "not_configured"


NOT_CONFIGURED_DETAIL = "no FCM credentials"


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
    # duration: the sending thread, which builds no messages, sees this one filter added meanwhile.)
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
    exceptions.UnavailableError,  # 503, and a connection that could not be made
    exceptions.InternalError,
    exceptions.DeadlineExceededError,
    exceptions.UnknownError,  # other transport failures (a connection reset) land here
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


def push_configured() -> bool:
    return bool(settings.FIREBASE_CREDENTIALS_FILE or settings.FCM_ACCESS_TOKEN)


class PushSending:
    """Messages on their way to FCM. results() waits for the answers: one per message, in order."""

    def __init__(self, messages: list[PushMessage]) -> None:
        self.messages = messages
        self._results: list[PushResult] | None = None
        if not messages:
            self._results = []
        elif not push_configured():
            for message in messages:
                logger.info(
                    "Push not sent (no FCM credentials) to device %s: %s: %s",
                    message.device_id,
                    message.title,
                    message.body,
                )
            self._results = [
                PushResult(m.device_id, Outcome.NOT_CONFIGURED, detail=NOT_CONFIGURED_DETAIL)
                for m in messages
            ]
        else:
            self._built = _build_all(messages)
            self._sendable = [item for item in self._built if not isinstance(item, Exception)]
            self._sending = client.send_each(self._sendable)

    def results(self) -> list[PushResult]:
        if self._results is None:
            answers = iter(_answers(self._sendable, self._sending))
            self._results = []
            for message, item in zip(self.messages, self._built, strict=True):
                answer = item if isinstance(item, Exception) else next(answers)
                if isinstance(answer, Exception):
                    logger.error("Push to device %s not built: %s", message.device_id, answer)
                    result = PushResult(message.device_id, Outcome.FAILED, detail=str(answer))
                elif answer.success:
                    result = PushResult(message.device_id, Outcome.SENT)
                else:
                    result = _classify(message.device_id, answer.exception)
                self._results.append(result)
        return self._results


def _answers(
    built: list[messaging.Message], sending: concurrent.futures.Future
) -> list[messaging.SendResponse | Exception]:
    """One answer per message: firebase-admin's response, or why it was not sent."""
    try:
        return sending.result()
    except (ValueError, TypeError):
        # send_each_async encodes every message before it sends any, so one payload it refuses
        # refuses the whole list and nothing went out. Find the culprits and send the others.
        refused: dict[int, Exception] = {}
        for index, message in enumerate(built):
            try:
                messaging._MessagingService.encode_message(message)
            except (ValueError, TypeError) as exc:
                refused[index] = exc
        good = [message for index, message in enumerate(built) if index not in refused]
        sent = iter(client.send_each(good).result())
        return [refused[index] if index in refused else next(sent) for index in range(len(built))]
    except exceptions.FirebaseError as exc:
        # The whole call failed (firebase-admin wraps what it did not expect as UnknownError).
        # Some messages may have gone; their collapse id keeps a resend from doubling them.
        return [messaging.SendResponse(None, exc)] * len(built)


def push_send_start(*, messages: list[PushMessage]) -> PushSending:
    """Start sending each message to its device; return at once, while they travel.

    1. Build firebase-admin messages here; one that cannot be built or encoded is FAILED, not sent.
    2. Hand the others to send_each_async on this process's event loop (`client.send_each`).
    3. PushSending.results() waits for the answers and classes each: SENT, REMOVE, RETRY (with its
       Retry-After) or FAILED; without credentials every message is NOT_CONFIGURED.
    """
    return PushSending(messages)


def push_send(*, messages: list[PushMessage]) -> list[PushResult]:
    """Send each message to its device and wait; one result per message, in order."""
    return push_send_start(messages=messages).results()
