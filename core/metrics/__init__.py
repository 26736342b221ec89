"""Metrics in the Prometheus format (docs/metrics.md).

- registry: the counters and histograms every process writes (prometheus_client's multiprocess
  mode), and the page a scrape reads.
- middleware: HTTP requests by view and status, and their latency.
- worker: Celery task outcomes, counted from Celery's signals in the worker processes.
- queues, figures: what is read at scrape time (queue depths; per utility the readings, the
  charging backlog, top-ups; replica lag), kept in the cache a few seconds.
- apis: the /metrics endpoint, refused to anyone without the token or an allowed address.

The functions below are what the apps call where something happens (a top-up credited, a push
answered, an SMS handed over): one line each at the call site.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import phonenumbers
from django.db import transaction

from core.metrics import worker  # noqa: F401  (connects the Celery signal receivers)
from core.metrics.registry import PUSHES, SMS, TOPUPS_CREDITED


def topup_credited(*, utility: str, channel: str) -> None:
    """A top-up credited: counted once its transaction commits (a rolled-back credit never was)."""
    transaction.on_commit(lambda: TOPUPS_CREDITED.labels(utility, channel).inc())


# notifications.push.Outcome, said as an operator reads it.
_PUSH_OUTCOMES = {"remove": "token_removed"}


def push_results(results: Iterable[tuple[str | None, str]]) -> None:
    """Each push message's answer, as (the alert's utility code or None, its
    notifications.push.Outcome)."""
    for (utility, outcome), count in Counter(results).items():
        label = _PUSH_OUTCOMES.get(str(outcome), str(outcome))
        PUSHES.labels(utility or "none", label).inc(count)


def sms_sending(*, to: str, utility: str | None, send: Callable[[], str]) -> str:
    """Send one SMS by `send` and count it, under the utility code it is about (None: about no
    utility, a sign-in code): sent, or failed when the gateway raised (the caller retries a
    transient failure: each attempt is counted)."""
    try:
        message_id = send()
    except Exception:
        SMS.labels(utility or "none", _country(to), "failed").inc()
        raise
    SMS.labels(utility or "none", _country(to), "sent").inc()
    return message_id


def _country(number: str) -> str:
    """The ISO region of an E.164 number: bounded (a few hundred), unlike the numbers."""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return "unknown"
    return region if region and region != "ZZ" else "unknown"
