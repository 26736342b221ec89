"""Talking to a utility's head-end system: the one place that sends relay commands to meters.

Backends, chosen by HEADEND_BACKEND:
- ``log`` (default): writes the command to the log and reports it done, as a head-end would.
- ``http``: POSTs `{"command", "meter", "reference"}` to HEADEND_URL with a bearer token.
Errors are classed like SMS: TransientHeadEndError (timeouts, 5xx, 429: retry) and
PermanentHeadEndError (refused: record and stop).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import requests
from django.conf import settings

logger = logging.getLogger(__name__)


class HeadEndError(Exception):
    pass


class TransientHeadEndError(HeadEndError):
    pass


class PermanentHeadEndError(HeadEndError):
    pass


def _send_log(*, command: str, meter_serial: str, reference: str) -> None:
    logger.info("head-end: %s meter %s (ref %s)", command, meter_serial, reference)


def _send_http(*, command: str, meter_serial: str, reference: str) -> None:
    try:
        response = requests.post(
            settings.HEADEND_URL,
            json={"command": command, "meter": meter_serial, "reference": reference},
            headers={"Authorization": f"Bearer {settings.HEADEND_TOKEN}"},
            timeout=settings.HEADEND_TIMEOUT_SECONDS,
        )
    except requests.RequestException as exc:
        raise TransientHeadEndError(f"head-end unreachable: {exc.__class__.__name__}") from exc
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientHeadEndError(f"head-end answered {response.status_code}")
    if response.status_code >= 400:
        raise PermanentHeadEndError(
            f"head-end refused the command: {response.status_code} {response.text[:200]}"
        )


_BACKENDS = {"log": _send_log, "http": _send_http}


def relay_send_bound() -> timedelta:
    """The longest a relay_send may take to return or raise, so how long after a send the head-end
    may still act on it: the connect and the read timeouts, which requests applies one after the
    other. A disconnect goes out only if all of that time is allowed (billing.relay)."""
    return timedelta(seconds=2 * settings.HEADEND_TIMEOUT_SECONDS)


def relay_send(*, command: str, meter_serial: str, reference: str) -> None:
    """Send `disconnect` or `reconnect` for one meter; returns when the head-end has accepted it."""
    try:
        backend = _BACKENDS[settings.HEADEND_BACKEND]
    except KeyError:
        raise PermanentHeadEndError(
            f"Unknown HEADEND_BACKEND {settings.HEADEND_BACKEND!r}"
        ) from None
    backend(command=command, meter_serial=meter_serial, reference=reference)
