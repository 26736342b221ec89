"""Sending SMS: the one place that talks to an SMS gateway.

Backends, chosen by the SMS_BACKEND setting:
- ``console`` (default): writes the message to the log. For development and demos.
- ``http``: POSTs JSON to SMS_HTTP_URL with a bearer token; the generic shape most aggregators take.
- ``locmem``: appends to ``outbox`` in this process, for tests that run tasks eagerly.

Errors are classed for the caller's retry policy: TransientSmsError (timeouts, 429, 5xx: retry with
backoff) and PermanentSmsError (a 4xx the gateway will refuse again: record and stop).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests
from django.conf import settings

from core import metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmsMessage:
    to: str
    body: str


outbox: list[SmsMessage] = []


class SmsError(Exception):
    pass


class TransientSmsError(SmsError):
    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentSmsError(SmsError):
    pass


def _send_console(message: SmsMessage) -> str:
    # Development only: the console backend is where a developer reads sign-in codes.
    logger.info("SMS to %s: %s", message.to, message.body)
    return "console"


def _send_locmem(message: SmsMessage) -> str:
    outbox.append(message)
    return f"locmem-{len(outbox)}"


def _send_http(message: SmsMessage) -> str:
    if not settings.SMS_HTTP_URL:
        raise PermanentSmsError("SMS_BACKEND is http but SMS_HTTP_URL is not set")
    try:
        response = requests.post(
            settings.SMS_HTTP_URL,
            json={"to": message.to, "from": settings.SMS_HTTP_SENDER, "text": message.body},
            headers={"Authorization": f"Bearer {settings.SMS_HTTP_TOKEN}"},
            timeout=settings.SMS_HTTP_TIMEOUT_SECONDS,
        )
    except requests.RequestException as exc:
        raise TransientSmsError(f"SMS gateway unreachable: {exc.__class__.__name__}") from exc
    if response.status_code == 429 or response.status_code >= 500:
        retry_after = response.headers.get("Retry-After")
        raise TransientSmsError(
            f"SMS gateway answered {response.status_code}",
            retry_after=int(retry_after) if retry_after and retry_after.isdigit() else None,
        )
    if response.status_code >= 400:
        raise PermanentSmsError(f"SMS gateway refused the message: {response.status_code}")
    try:
        return str(response.json().get("id", ""))
    except ValueError:
        return ""


_BACKENDS = {"console": _send_console, "http": _send_http, "locmem": _send_locmem}


def sms_send(*, to: str, body: str, utility: str | None = None) -> str:
    """Send one SMS through the configured backend; return the gateway's message id. `utility`:
    the code of the utility it is about, for the metrics (None for a sign-in code)."""
    try:
        backend = _BACKENDS[settings.SMS_BACKEND]
    except KeyError:
        raise PermanentSmsError(f"Unknown SMS_BACKEND {settings.SMS_BACKEND!r}") from None
    return metrics.sms_sending(
        to=to, utility=utility, send=lambda: backend(SmsMessage(to=to, body=body))
    )
